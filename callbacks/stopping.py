"""Early stopping that resumes exactly: Keras' `EarlyStopping` with its wait count and best value saved."""

from __future__ import annotations

import keras

from augpipe.callbacks.base import StatefulCallback, check_not_test_key
from augpipe.callbacks.order import Stage, Staged


class _EarlyStoppingState(StatefulCallback):
    """The state file of an `EarlyStopping` (composition: Keras' class keeps its own hooks)."""

    def __init__(self, owner, state_dir):
        super().__init__(state_dir=state_dir, state_name="early_stopping")
        self.owner = owner

    def get_state(self):
        owner = self.owner
        best = None if owner.best is None else float(owner.best)
        return {"wait": int(owner.wait), "best": best, "best_epoch": int(owner.best_epoch)}

    def set_state(self, state):
        self.owner.wait = int(state["wait"])
        self.owner.best = state["best"]
        self.owner.best_epoch = int(state["best_epoch"])


class EarlyStopping(Staged, keras.callbacks.EarlyStopping):
    """Keras' `EarlyStopping`, whose wait count and best value survive a resume.

    Keras' own callback restarts from zero when `fit` resumes from
    `BackupAndRestore`, so a resumed run stops later than an uninterrupted
    one. With `state_dir` (the backup directory), this one saves its state
    at every epoch end and restores it when `fit` resumes at the next epoch.
    It refuses to monitor a `test_*` key.

    Args:
        monitor, mode, patience, min_delta, baseline, start_from_epoch,
            verbose: as in `keras.callbacks.EarlyStopping`.
        state_dir: where to keep resumable state.

    `restore_best_weights` is not supported with `state_dir` (the best
    weights would have to be saved too); keep the best model with
    `ModelCheckpoint(save_best_only=True)` instead.

    Example:

    >>> stop = EarlyStopping(monitor="val_accuracy", mode="max", patience=3, state_dir="runs/demo/backup")
    """

    stage = Stage.STOPPING

    def __init__(self, monitor: str = "val_loss", *, state_dir=None, **kwargs):
        check_not_test_key(monitor, "EarlyStopping")
        if state_dir is not None and kwargs.get("restore_best_weights"):
            raise ValueError(
                "EarlyStopping(restore_best_weights=True) cannot resume the best weights with state_dir. "
                "Keep the best model with keras.callbacks.ModelCheckpoint(save_best_only=True) instead."
            )
        super().__init__(monitor=monitor, **kwargs)
        self._state = _EarlyStoppingState(self, state_dir)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._state.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._state.restore_for_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._state.save_state(epoch + 1)
