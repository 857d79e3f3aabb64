"""Scheduled evaluation of a held-out set that never steers training."""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Optional

import keras

from augpipe.callbacks.base import StatefulCallback
from augpipe.callbacks.order import Stage
from augpipe.validation import check_int

_NAN = float("nan")
# Callbacks that only record the logs: they may hold `test_*` names.
_RECORDERS = (
    keras.callbacks.CSVLogger,
    keras.callbacks.TensorBoard,
    keras.callbacks.History,
    keras.callbacks.ProgbarLogger,
)


def monitored_keys(callback, prefix: str = "test_") -> list:
    """The log keys a callback may make decisions on.

    Its `monitor` and `monitored_keys`, and every other attribute whose value
    is a `prefix*` string (or a list or tuple holding one): a custom callback
    that keeps its key under another name (`self.key = "test_accuracy"`) is
    caught too. A callback that reads `logs["test_..."]` with the name
    written in its code cannot be seen; see docs/callbacks.md.
    """
    keys = []
    monitor = getattr(callback, "monitor", None)
    if isinstance(monitor, str):
        keys.append(monitor)
    keys.extend(getattr(callback, "monitored_keys", []) or [])
    if isinstance(callback, (ScheduledEvaluation,) + _RECORDERS):
        return keys
    for name, value in vars(callback).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        keys.extend(
            v for v in values
            # A metric name, not a file name that happens to start with the prefix.
            if isinstance(v, str) and v.startswith(prefix) and "." not in v and "/" not in v and v not in keys
        )
    return keys


def check_no_test_monitor(callbacks: Iterable, prefix: str = "test_") -> None:
    """Raises if any callback monitors a `prefix*` key."""
    for callback in callbacks:
        for key in monitored_keys(callback, prefix):
            if isinstance(key, str) and key.startswith(prefix):
                raise ValueError(
                    f"{type(callback).__name__} monitors {key!r}, a held-out test key. The test "
                    "set must never steer training (early stopping, checkpoint choice, LR). "
                    f"Monitor the matching 'val_{key[len(prefix):]}' instead."
                )


class ScheduledEvaluation(StatefulCallback):
    """Evaluates a held-out dataset every `every` epochs and after the last one.

    The results go into `logs` as `test_loss`, `test_accuracy`, ... on **every**
    epoch, NaN on epochs without an evaluation, so `CSVLogger` and
    `TensorBoard` see stable columns. The training metrics the epoch reports
    are not touched: evaluation runs after they were computed, and `fit`
    resets the metrics at the start of the next epoch anyway.

    At `on_train_begin` it refuses to run if any callback of the same `fit`
    monitors a `test_*` key (`EarlyStopping`, `ModelCheckpoint`,
    `ReduceLROnPlateau`, ours): the held-out set must never steer training.

    Put it after `EarlyStopping` (so it can tell the last epoch and evaluate
    it) and before `CSVLogger`, `TensorBoard` and `TrainingCurves` (so they
    see its keys).

    Args:
        dataset: the held-out dataset, batched `(x, y)`.
        every: evaluate every N epochs.
        at_end: also evaluate after the last epoch (including an early stop).
        prefix: the key prefix.
        state_dir: where to keep the evaluation history for a resume.
        verbose: 1 prints each evaluation.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> test = tf.data.Dataset.from_tensor_slices((np.zeros((8, 4)), np.zeros(8))).batch(4)
    >>> evaluation = ScheduledEvaluation(test, every=3)
    """

    stage = Stage.EVALUATION

    def __init__(self, dataset, every: int = 5, at_end: bool = True, prefix: str = "test_", state_dir=None, verbose: int = 0):
        super().__init__(state_dir=state_dir, state_name="scheduled_evaluation")
        check_int("every", every)
        if not isinstance(prefix, str) or not prefix or prefix.startswith("val_"):
            raise ValueError(f"Received: prefix={prefix!r}. Expected a non-empty prefix such as 'test_'.")
        self.dataset = dataset
        self.every = every
        self.at_end = at_end
        self.prefix = prefix
        self.verbose = verbose
        self.reset()

    def reset(self):
        self.history = []  # [{"epoch": int, "loss": float, ...}]
        self.keys = None

    def get_state(self):
        return {"history": self.history, "keys": self.keys}

    def set_state(self, state):
        self.history = list(state["history"])
        self.keys = state["keys"]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        siblings = self.fit_callbacks
        if siblings is None:
            warnings.warn(
                "ScheduledEvaluation cannot see the other callbacks of this fit, so it cannot check that none "
                f"of them monitors a '{self.prefix}*' key. Pass the list through "
                "augpipe.callbacks.in_working_order([...]) (resumable() does), which also sorts it.",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            check_no_test_monitor(siblings, self.prefix)

    def should_evaluate(self, epoch: int) -> bool:
        last = epoch + 1 >= (self.params or {}).get("epochs", math.inf) or bool(
            getattr(self.model, "stop_training", False)
        )
        return (epoch + 1) % self.every == 0 or (self.at_end and last)

    def evaluate(self) -> dict:
        results = self.model.evaluate(self.dataset, verbose=0, return_dict=True)
        return {key: float(value) for key, value in results.items()}

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_for_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        results = None
        if self.should_evaluate(epoch):
            results = self.evaluate()
            if self.keys is None:
                self.keys = sorted(results)
            self.history.append({"epoch": epoch, **results})
            if self.verbose:
                shown = ", ".join(f"{self.prefix}{k} {v:.4f}" for k, v in sorted(results.items()))
                print(f"Epoch {epoch + 1}: {shown}")
        if self.keys is None:
            self.keys = self._expected_keys(logs or {})
        if logs is not None:
            for key in self.keys:
                logs[self.prefix + key] = results.get(key, _NAN) if results else _NAN
        self.save_state(epoch + 1)

    def _expected_keys(self, logs: dict) -> list:
        # Before the first evaluation, name the columns after the validation
        # keys (what evaluate returns), or the training metrics.
        val = sorted(k[4:] for k in logs if k.startswith("val_"))
        if val:
            return val
        return sorted(self.model.get_metrics_result().keys())

    @property
    def last_results(self) -> Optional[dict]:
        return dict(self.history[-1]) if self.history else None
