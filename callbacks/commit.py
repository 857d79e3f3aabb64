"""An epoch is committed whole: per-epoch backups, a best-model candidate, and one commit marker last.

Everything that describes epoch `k` is written first (weights and optimizer
to `backup/weights-<k+1>.weights.h5`, every callback's state file, the log
row, the curves, a best-model candidate), each through a temporary name and
a rename. `EpochCommit`, the last callback of the list, then publishes
`backup/commit.json` (`{"epoch": k + 1, ...}`), and only after that promotes
the candidate to `best.keras`. A run killed at any moment resumes from the
epoch in `commit.json`: `roll_back_to_commit` drops what a later, unfinished
epoch left (log rows, weights, a candidate) and finishes a promotion the
marker already promised; the state files keep the committed epoch's state
next to a newer one (`StatefulCallback.save_state`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import re
import sys
from typing import Optional

import keras

from augpipe.callbacks.base import (RandomStateBackup, StatefulCallback, at_least_as_good, atomic_write_text,
                                   check_not_test_key)
from augpipe.callbacks.order import Stage, Staged, in_working_order
from augpipe.callbacks.stopping import EarlyStopping

COMMIT = "commit.json"
_WEIGHTS = re.compile(r"^weights-(\d+)\.weights\.h5$")
_CANDIDATE = re.compile(r"^best-candidate-(\d+)\.keras$")


def candidate_path(backup_dir, epoch: int) -> pathlib.Path:
    """Where the best-model candidate of `epoch` waits for its commit."""
    return pathlib.Path(backup_dir) / f"best-candidate-{epoch}.keras"


def committed_epoch(backup_dir) -> int:
    """The epoch a resume starts at: the last committed one (0 without a commit)."""
    path = pathlib.Path(backup_dir) / COMMIT
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text())["epoch"])


def _weights_path(backup_dir, epoch: int) -> pathlib.Path:
    return pathlib.Path(backup_dir) / f"weights-{epoch}.weights.h5"


def _replace_atomically(write, path: pathlib.Path) -> None:
    """`write(temporary)` then rename over `path`: a kill never leaves half a file under `path`."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".weights.h5") else path.suffix
    temporary = path.with_name(f".{path.name}.tmp{suffix}")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def roll_back_to_commit(run_dir, log_name: str = "log.csv", best_name: str = "best.keras") -> int:
    """Makes the run directory describe exactly its last committed epoch; returns that epoch.

    Drops log rows of later epochs, weights of later epochs and a candidate
    best model that was never committed; promotes a committed candidate
    that a kill left unpromoted.
    """
    run_dir = pathlib.Path(run_dir)
    backup = run_dir / "backup"
    epoch = committed_epoch(backup)
    commit = json.loads((backup / COMMIT).read_text()) if (backup / COMMIT).is_file() else {}
    log = run_dir / log_name
    if log.is_file():
        with open(log, newline="") as handle:
            rows = list(csv.reader(handle))
        if rows:
            header, body = rows[0], rows[1:]
            kept = [row for row in body if row and row[0].isdigit() and int(row[0]) < epoch]
            if len(kept) != len(body):
                out = io.StringIO()
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(kept)
                atomic_write_text(log, out.getvalue())
    promised = commit.get("best_candidate_epoch") if commit.get("best_promoted") is False else None
    if backup.is_dir():
        for path in sorted(backup.iterdir()):
            weights, candidate = _WEIGHTS.match(path.name), _CANDIDATE.match(path.name)
            if path.name.startswith(".") and ".tmp" in path.name:
                path.unlink()  # a write that a kill interrupted before its rename
            elif weights and int(weights.group(1)) > epoch:
                path.unlink()
            elif candidate and promised is not None and int(candidate.group(1)) == promised:
                os.replace(path, run_dir / best_name)  # committed, but the kill came before the promotion
            elif candidate:
                path.unlink()  # from an epoch that was never committed
    return epoch


class EpochBackup(Staged, keras.callbacks.Callback):
    """Weights and optimizer state of every epoch end, restored from the last committed epoch.

    Replaces Keras' `BackupAndRestore`, which writes one file in place (a
    kill during the write leaves a truncated backup) and knows nothing of
    the other files of an epoch. Put it first in the callback list (before
    the loggers) and `EpochCommit` last.

    Args:
        backup_dir: the run's backup directory.

    Example:

    >>> backup = EpochBackup("runs/demo/backup")
    """

    stage = Stage.BACKUP

    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        epoch = committed_epoch(self.backup_dir)
        if epoch == 0:
            return
        path = _weights_path(self.backup_dir, epoch)
        if not path.is_file():
            raise FileNotFoundError(f"The commit marker names epoch {epoch}, but {str(path)!r} is missing.")
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(str(path))
        # The same hand-over as keras.callbacks.BackupAndRestore: fit starts at this epoch.
        self.model._initial_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        path = _weights_path(self.backup_dir, epoch + 1)
        _replace_atomically(lambda temporary: self.model.save_weights(temporary), path)


class BestModelCheckpoint(StatefulCallback):
    """Keeps the best model by a `val_*` metric; its threshold is part of the resumable state.

    On an improvement it saves a candidate (`backup/best-candidate.keras`,
    through a temporary name); `EpochCommit` promotes it to `path` once the
    epoch is committed. On an epoch without the monitored key (no
    validation that epoch) nothing changes.

    Args:
        path: the best model's file (`best.keras`).
        monitor: a `val_*` metric, never `test_*`.
        mode: `"max"` or `"min"`.
        state_dir: the backup directory.

    Example:

    >>> checkpoint = BestModelCheckpoint("runs/demo/best.keras", state_dir="runs/demo/backup")
    """

    def __init__(self, path, monitor: str = "val_accuracy", mode: str = "max", state_dir=None):
        super().__init__(state_dir=state_dir, state_name="best_model")
        if mode not in ("max", "min"):
            raise ValueError(f"Received: mode={mode!r}. Expected 'max' or 'min'.")
        self.path = pathlib.Path(path)
        self.monitor = check_not_test_key(monitor, "BestModelCheckpoint")
        self.mode = mode
        self.reset()

    def reset(self):
        self.best = None
        self.best_epoch = None
        self.candidate_epoch = None

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]

    def candidate_path(self, epoch: int) -> pathlib.Path:
        return candidate_path(self.state_dir or self.path.parent, epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_for_epoch(epoch)
        self.candidate_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and at_least_as_good(float(value), self.best, self.mode):
            self.best, self.best_epoch = float(value), epoch
            path = self.candidate_path(epoch)
            path.parent.mkdir(parents=True, exist_ok=True)
            _replace_atomically(lambda temporary: self.model.save(temporary), path)
            self.candidate_epoch = epoch
        self.save_state(epoch + 1)


class EpochCommit(Staged, keras.callbacks.Callback):
    """The commit marker: the last callback of the list; epoch `k` exists once it has run.

    Writes `backup/commit.json` after every other callback has written its
    files for the epoch, then promotes a best-model candidate of that epoch
    and removes backups older than the previous epoch.

    Args:
        backup_dir: the run's backup directory.
        checkpoint: the run's `BestModelCheckpoint`, if any.

    Example:

    >>> commit = EpochCommit("runs/demo/backup")
    """

    stage = Stage.COMMIT

    def __init__(self, backup_dir, checkpoint: Optional[BestModelCheckpoint] = None):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.checkpoint = checkpoint


    def on_epoch_end(self, epoch, logs=None):
        candidate = None
        if self.checkpoint is not None and self.checkpoint.candidate_epoch == epoch:
            candidate = epoch
        marker = {"epoch": epoch + 1, "best_candidate_epoch": candidate, "best_promoted": False}
        atomic_write_text(self.backup_dir / COMMIT, json.dumps(marker))
        if candidate is not None:
            os.replace(self.checkpoint.candidate_path(epoch), self.checkpoint.path)
            marker["best_promoted"] = True
            atomic_write_text(self.backup_dir / COMMIT, json.dumps(marker))
        for path in self.backup_dir.iterdir():
            match = _WEIGHTS.match(path.name)
            if match and int(match.group(1)) < epoch:
                path.unlink()


def resumable(
    run_dir,
    *callbacks,
    epoch_sync=None,
    monitor: str = "val_accuracy",
    mode: str = "max",
    patience: Optional[int] = None,
    verbose: int = 1,
) -> list:
    """The callbacks of a run that survives any kill, in a working order, around your own.

    Returns your callbacks and the run's own (`EpochBackup`,
    `RandomStateBackup`, `EarlyStopping` with `patience`,
    `BestModelCheckpoint`, `CSVLogger` appending to `log.csv`, `EpochCommit`)
    sorted by `in_working_order`, with every stateful callback of yours
    writing its state into `run_dir/backup`.
    Pass the result to `fit(callbacks=...)`. Calling it on a directory that
    holds a committed epoch resumes: it first rolls the directory back to
    that epoch (`roll_back_to_commit`), and `fit` then starts there with the
    weights, optimizer, random states, data order, controllers, best-model
    threshold and early-stopping counts of that epoch. A callback you put
    after the returned list that writes per-epoch files is refused by
    `EpochCommit` at `on_train_begin`.

    Args:
        run_dir: the run's directory (made if missing).
        *callbacks: your callbacks (controllers, `ScheduledEvaluation`,
            `TensorBoard`, ...).
        epoch_sync: `pipelines.EpochSync(epoch)` of the training pipeline.
        monitor, mode: the metric that picks `best.keras` (never `test_*`).
        patience: early stopping on `monitor` (None: off).
        verbose: 1 says on stderr when it continues an old run (the
            directory and the epoch), so a forgotten directory is not
            continued silently; 0 says nothing.

    Example:

    >>> run = resumable("runs/demo", monitor="val_loss", mode="min")
    >>> [type(c).__name__ for c in run]
    ['EpochBackup', 'RandomStateBackup', 'BestModelCheckpoint', 'CSVLogger', 'EpochCommit']
    """
    run_dir = pathlib.Path(run_dir)
    backup = run_dir / "backup"
    backup.mkdir(parents=True, exist_ok=True)
    committed = roll_back_to_commit(run_dir)
    if committed and verbose:
        print(f"augpipe: resuming the run in {str(run_dir)!r} from epoch {committed + 1} ({committed} committed)",
              file=sys.stderr)
    for callback in callbacks:
        if isinstance(callback, StatefulCallback) and callback.state_dir is None:
            callback.state_dir = backup
    found = ([epoch_sync] if epoch_sync is not None else []) + list(callbacks)
    found += [EpochBackup(backup), RandomStateBackup(backup)]
    if patience is not None:
        found.append(EarlyStopping(monitor=monitor, mode=mode, patience=patience, state_dir=backup))
    checkpoint = BestModelCheckpoint(run_dir / "best.keras", monitor=monitor, mode=mode, state_dir=backup)
    found += [checkpoint, keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
              EpochCommit(backup, checkpoint)]
    return in_working_order(found)
