"""Keras callbacks: strength schedules and control, LR control, scheduled evaluation, monitors, plots.

The names below load their module (and Keras) when first used, so that a
command's `--help` does not import TensorFlow; `import augpipe` imports them
all at once (which registers the Keras objects), as before.
"""

import importlib
import importlib.util

# name -> the module that defines it
_HOME = {
    "RandomStateBackup": "base",
    "StatefulCallback": "base",
    "best_position": "base",
    "BestModelCheckpoint": "commit",
    "EpochBackup": "commit",
    "EpochCommit": "commit",
    "resumable": "commit",
    "TrainingCurves": "curves",
    "ScheduledEvaluation": "evaluation",
    "check_no_test_monitor": "evaluation",
    "LearningRateControl": "lr",
    "MultiplierSchedule": "lr",
    "install_multiplier": "lr",
    "ProbeEvaluation": "probe",
    "probe_figures": "probe",
    "Stage": "order",
    "in_working_order": "order",
    "working_order_moves": "order",
    "AugmentationImages": "monitors",
    "ThroughputMonitor": "monitors",
    "EpochLine": "safety",
    "GracefulInterrupt": "safety",
    "NonFiniteLossError": "safety",
    "StopOnNonFiniteLoss": "safety",
    "Schedule": "schedules",
    "constant": "schedules",
    "cosine": "schedules",
    "linear": "schedules",
    "parse_schedule": "schedules",
    "step": "schedules",
    "EarlyStopping": "stopping",
    "AdaptiveStrength": "strength",
    "ShapedStrength": "strength",
    "StrengthSchedule": "strength",
    "StrengthSpec": "strength",
    "parse_strength": "strength",
}


__all__ = [
    "AdaptiveStrength",
    "ShapedStrength",
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
    "best_position",
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
    if name in _HOME:
        value = getattr(importlib.import_module(f"augpipe.callbacks.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    if name in _MOVED:
        import warnings

        module, new = _MOVED[name]
        warnings.warn(f"augpipe.callbacks.{name} is deprecated: use {new}.", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    if importlib.util.find_spec(f"augpipe.callbacks.{name}") is not None:  # a submodule not imported yet
        return importlib.import_module(f"augpipe.callbacks.{name}")
    raise AttributeError(f"module 'augpipe.callbacks' has no attribute {name!r}")
