"""Shared callback machinery: resumable state files and strength targets."""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
import warnings
from typing import Optional

import keras

from augpipe.callbacks.order import Stage, Staged


def file_mode() -> int:
    """The mode a plain `open()` would give a new file under this process's umask (0o644 for umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename; the file follows the umask.

    (`mkstemp` makes its files 0600, so a teammate could not read half of a
    shared run directory; the mode is set as `open()` would have.)
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, file_mode())
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def atomic_save_figure(figure, path, **savefig) -> pathlib.Path:
    """Saves a matplotlib figure as PNG through a temporary file and a rename; the file follows the umask."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(handle)
    try:
        os.chmod(temporary, file_mode())  # as open() would: mkstemp makes 0600
        figure.savefig(temporary, format="png", **savefig)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def at_least_as_good(value: float, best, mode: str = "max") -> bool:
    """Whether an epoch's `value` takes the best model's place: the rule `BestModelCheckpoint` keeps.

    A finite value that is better than `best`, or equal to it: a tie goes to
    the later epoch, which has trained longer, at a lower learning rate under
    a decaying schedule. (A validation split of a few hundred images ties
    often once it saturates; keeping the first of the tied epochs picked a
    model from the middle of the schedule.)
    """
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value >= best if mode == "max" else value <= best


def best_position(values, mode: str = "max"):
    """The position of the best model in a sequence of per-epoch values, by `at_least_as_good`; None if none is finite."""
    best, found = None, None
    for position, value in enumerate(values):
        if value is not None and at_least_as_good(float(value), best, mode):
            best, found = float(value), position
    return found


class StatefulCallback(Staged, keras.callbacks.Callback):
    """A callback whose decisions survive an interrupted run.

    With `state_dir` set (use the `BackupAndRestore` backup directory), the
    callback writes its state to `state_dir/<state_name>.json` atomically at
    the end of every epoch. When a later `fit` starts at epoch `k > 0` (as
    `BackupAndRestore` makes it do) and the file says it was saved at the end
    of epoch `k - 1`, the state is restored before the callback decides
    anything. A `fit` that starts at epoch 0 always starts fresh.

    Subclasses implement `get_state()`, `set_state(state)` and `reset()`.
    """

    def __init__(self, state_dir=None, state_name: Optional[str] = None):
        super().__init__()
        self.state_dir = None if state_dir is None else pathlib.Path(state_dir)
        self.state_name = state_name or type(self).__name__
        self._state_checked = False

    # Subclass API
    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def reset(self) -> None:
        pass

    @property
    def state_path(self) -> Optional[pathlib.Path]:
        if self.state_dir is None:
            return None
        return self.state_dir / f"{self.state_name}.json"

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._state_checked = False

    def restore_for_epoch(self, epoch: int) -> bool:
        """Called at the first epoch of each `fit`; returns True if state was restored."""
        if self._state_checked:
            return False
        self._state_checked = True
        path = self.state_path
        if epoch == 0 or path is None or not path.is_file():
            self.reset()
            return False
        saved = _from_json(json.loads(path.read_text()))
        previous = saved.get("previous") or {}
        if saved.get("epoch") != epoch and previous.get("epoch") == epoch:
            # The run was killed after this file was written for an epoch that was never
            # committed; the committed epoch's state is the one kept beside it.
            saved = previous
        if saved.get("epoch") != epoch:
            warnings.warn(
                f"{self.state_name}: state in {str(path)!r} was saved at epoch "
                f"{saved.get('epoch')}, but training resumes at epoch {epoch}; "
                "starting this callback fresh.",
                RuntimeWarning,
                stacklevel=2,
            )
            self.reset()
            return False
        self.set_state(saved["state"])
        return True

    def save_state(self, next_epoch: int) -> None:
        """Writes the state for a resume at `next_epoch`, keeping the one before it.

        The file holds the state after this epoch and, as `previous`, the
        state after the epoch before, so a run killed between this write and
        the epoch's commit marker (`callbacks.EpochCommit`) resumes from the
        committed epoch with that epoch's state.
        """
        path = self.state_path
        if path is None:
            return
        previous = None
        if path.is_file():
            try:
                existing = json.loads(path.read_text())
            except ValueError:
                existing = {}
            if existing.get("epoch") == int(next_epoch):  # rewritten within the same epoch
                previous = existing.get("previous")
            elif "epoch" in existing:
                previous = {"epoch": existing["epoch"], "state": existing.get("state")}
        payload = {"epoch": int(next_epoch), "state": _json_safe(self.get_state()), "previous": previous}
        atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True))


TEST_PREFIX = "test_"


class LogsWithoutTestKeys(dict):
    """Epoch logs with the held-out `test_*` keys taken out; asking for one raises a clear error."""

    prefix = TEST_PREFIX

    def __missing__(self, key):
        if str(key).startswith(self.prefix):
            raise ValueError(
                f"{key!r} is a held-out test key, and augpipe hides those from every function it calls "
                "with the logs (strength signals, plateau monitors), so the test set cannot steer "
                f"training. Use the matching 'val_{str(key)[len(self.prefix):]}' instead."
            )
        raise KeyError(key)


def without_test_keys(logs, prefix: str = TEST_PREFIX) -> dict:
    """A copy of `logs` without the held-out `prefix*` keys: what augpipe hands any user callable.

    >>> view = without_test_keys({"loss": 0.3, "val_loss": 0.4, "test_loss": 0.5})
    >>> dict(view)
    {'loss': 0.3, 'val_loss': 0.4}
    >>> view["test_loss"]
    Traceback (most recent call last):
    ...
    ValueError: 'test_loss' is a held-out test key, and augpipe hides those ...
    """
    return LogsWithoutTestKeys({key: value for key, value in (logs or {}).items() if not str(key).startswith(prefix)})


def strength_variable(target):
    """The strength variable of an `Augment` layer, or the variable itself."""
    variable = getattr(target, "strength", target)
    if not (hasattr(variable, "assign") and hasattr(variable, "numpy")):
        raise ValueError(
            f"Received: target={target!r}. Expected an augment.Augment layer or its "
            "strength variable (anything with `assign`)."
        )
    return variable


def check_not_test_key(key: str, owner: str, prefix: str = "test_") -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{owner}: Received: monitor={key!r}. Expected a metric name such as 'val_loss'.")
    if key.startswith(prefix):
        raise ValueError(
            f"{owner} cannot monitor {key!r}: '{prefix}*' keys come from the held-out "
            "test set, which must never steer training. Monitor a 'val_*' key instead."
        )
    return key


class RandomStateBackup(StatefulCallback):
    """Saves and restores the model's random-generator states for an exact resume.

    Keras' `BackupAndRestore` saves the weights, which do not include the
    `SeedGenerator` states of layers such as `Dropout`; without them a
    resumed run draws different dropout masks than an uninterrupted one.
    This callback keeps those states (every non-trainable variable whose
    path has `seed_generator`) in `state_dir`.

    Args:
        state_dir: the backup directory.

    Example:

    >>> backup = RandomStateBackup("runs/demo/backup")
    """

    stage = Stage.BACKUP

    def __init__(self, state_dir):
        super().__init__(state_dir=state_dir, state_name="random_state")

    def _variables(self):
        return [v for v in self.model.non_trainable_variables if "seed_generator" in v.path]

    def get_state(self):
        # By position: variable paths carry global name counters
        # ("seed_generator_2") that differ between two builds of one model.
        return {"states": [v.numpy().tolist() for v in self._variables()]}

    def set_state(self, state):
        variables = self._variables()
        if len(variables) != len(state["states"]):
            raise ValueError(
                f"RandomStateBackup: the backup holds {len(state['states'])} generator states "
                f"but the model has {len(variables)}. Resume with the same model architecture."
            )
        for variable, value in zip(variables, state["states"]):
            variable.assign(value)

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_for_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.save_state(epoch + 1)


# ----------------------------------------------------------------------------
# The order checks of earlier versions, for code that called them (deprecated: see callbacks.order).


def _deprecated(name: str, new: str) -> None:
    import warnings

    warnings.warn(f"augpipe.callbacks.base.{name} is deprecated: {new}", DeprecationWarning, stacklevel=3)


def find_sibling_callbacks(callback) -> Optional[list]:
    """Deprecated: the list `in_working_order` gave the callback (None if it gave none)."""
    _deprecated("find_sibling_callbacks", "use the callback's fit_callbacks, set by callbacks.in_working_order.")
    return getattr(callback, "fit_callbacks", None)


def check_order(callback, siblings, *, after=(), before=(), why: str = "") -> None:
    """Deprecated: raises when `callback` is not after every `after` and before every `before` type in `siblings`."""
    _deprecated("check_order", "declare a stage (callbacks.Stage) and sort with callbacks.in_working_order.")
    if siblings is None or callback not in siblings:
        return
    position = siblings.index(callback)
    for index, other in enumerate(siblings):
        late = index > position and bool(after) and isinstance(other, tuple(after))
        early = index < position and bool(before) and isinstance(other, tuple(before))
        if late or early:
            relation = "after" if late else "before"
            raise ValueError(
                f"{type(callback).__name__} must come {relation} {type(other).__name__} in the callback list"
                f"{': ' + why if why else ''}. Move it {relation} {type(other).__name__}."
            )
