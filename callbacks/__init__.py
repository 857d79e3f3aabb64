"""Keras callbacks: strength schedules and control, LR control, scheduled evaluation, monitors, plots."""

from augpipe.callbacks.base import RandomStateBackup, StatefulCallback
from augpipe.callbacks.commit import BestModelCheckpoint, EpochBackup, EpochCommit, resumable
from augpipe.callbacks.curves import TrainingCurves
from augpipe.callbacks.evaluation import ScheduledEvaluation, check_no_test_monitor
from augpipe.callbacks.lr import LearningRateControl, MultiplierSchedule, install_multiplier
from augpipe.callbacks.probe import ProbeEvaluation, probe_figures
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
    "ProbeEvaluation",
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
    "check_no_test_monitor",
    "constant",
    "cosine",
    "in_working_order",
    "install_multiplier",
    "linear",
    "parse_schedule",
    "parse_strength",
    "probe_figures",
    "resumable",
    "step",
    "working_order_moves",
]


# Names that moved off this face; the old spelling still works, with a warning.
_MOVED = {
    "atomic_write_text": ("augpipe.callbacks.base", "augpipe.callbacks.base.atomic_write_text"),
    "committed_epoch": ("augpipe.callbacks.commit", "augpipe.callbacks.commit.committed_epoch"),
    "roll_back_to_commit": ("augpipe.callbacks.commit", "augpipe.callbacks.commit.roll_back_to_commit "
                            "(resumable() calls it for you)"),
}


def __getattr__(name):
    if name in _MOVED:
        import importlib
        import warnings

        module, new = _MOVED[name]
        warnings.warn(f"augpipe.callbacks.{name} is deprecated: use {new}.", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'augpipe.callbacks' has no attribute {name!r}")
