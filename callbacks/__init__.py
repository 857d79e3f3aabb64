"""Keras callbacks: strength schedules and control, LR control, scheduled evaluation, monitors, plots."""

from callbacks.base import RandomStateBackup, StatefulCallback, atomic_write_text
from callbacks.curves import TrainingCurves
from callbacks.evaluation import ScheduledEvaluation, check_no_test_monitor
from callbacks.lr import LearningRateControl, MultiplierSchedule, install_multiplier
from callbacks.monitors import ThroughputMonitor
from callbacks.schedules import Schedule, constant, cosine, linear, parse_schedule, step
from callbacks.strength import AdaptiveStrength, StrengthSchedule

__all__ = [
    "AdaptiveStrength",
    "LearningRateControl",
    "MultiplierSchedule",
    "RandomStateBackup",
    "Schedule",
    "ScheduledEvaluation",
    "StatefulCallback",
    "StrengthSchedule",
    "ThroughputMonitor",
    "TrainingCurves",
    "atomic_write_text",
    "check_no_test_monitor",
    "constant",
    "cosine",
    "install_multiplier",
    "linear",
    "parse_schedule",
    "step",
]
