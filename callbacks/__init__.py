"""Keras callbacks: strength schedules and control, LR control, scheduled evaluation, monitors, plots."""

from augpipe.callbacks.base import RandomStateBackup, StatefulCallback, atomic_write_text
from augpipe.callbacks.commit import (
    BestModelCheckpoint,
    EpochBackup,
    EpochCommit,
    committed_epoch,
    resumable,
    roll_back_to_commit,
)
from augpipe.callbacks.curves import TrainingCurves
from augpipe.callbacks.evaluation import ScheduledEvaluation, check_no_test_monitor
from augpipe.callbacks.lr import LearningRateControl, MultiplierSchedule, install_multiplier
from augpipe.callbacks.order import Stage, in_working_order, working_order_moves
from augpipe.callbacks.monitors import AugmentationImages, ThroughputMonitor
from augpipe.callbacks.safety import EpochLine, GracefulInterrupt, NonFiniteLossError, StopOnNonFiniteLoss
from augpipe.callbacks.schedules import Schedule, constant, cosine, linear, parse_schedule, step
from augpipe.callbacks.stopping import EarlyStopping
from augpipe.callbacks.strength import AdaptiveStrength, StrengthSchedule, StrengthSpec, parse_strength

__all__ = [
    "AdaptiveStrength",
    "AugmentationImages",
    "BestModelCheckpoint",
    "EpochBackup",
    "EpochCommit",
    "EarlyStopping",
    "EpochLine",
    "GracefulInterrupt",
    "LearningRateControl",
    "MultiplierSchedule",
    "NonFiniteLossError",
    "RandomStateBackup",
    "Schedule",
    "ScheduledEvaluation",
    "Stage",
    "StatefulCallback",
    "StopOnNonFiniteLoss",
    "StrengthSchedule",
    "StrengthSpec",
    "ThroughputMonitor",
    "TrainingCurves",
    "atomic_write_text",
    "check_no_test_monitor",
    "committed_epoch",
    "constant",
    "cosine",
    "in_working_order",
    "install_multiplier",
    "linear",
    "parse_schedule",
    "parse_strength",
    "resumable",
    "roll_back_to_commit",
    "step",
    "working_order_moves",
]
