"""Callback order, declared once: every augpipe callback states its stage, one function sorts a list.

Keras runs callbacks in list order, and several of augpipe's need others
before or after them: the learning-rate control installs its schedule before
the backup restores the optimizer, controllers decide before the loggers
record their keys, the scheduled evaluation runs after early stopping (so it
knows the last epoch), and the epoch commit comes after every file of the
epoch. Each augpipe callback names its `Stage`; Keras' own callbacks get one
from `KERAS_STAGES`; a callback of yours takes the stage of the nearest
staged callback before it, so it keeps its place among its neighbours.

`in_working_order(callbacks)` sorts a list by stage (stably: callbacks of one
stage keep their order), says what it moved, and hands each callback that
checks its siblings (the scheduled evaluation, the learning-rate control, the
epoch commit) the list it will run in. `resumable`, run-mnist's
`build_callbacks` and the experiment's `fit` all use it. A list passed to
`fit` unsorted is checked at `on_train_begin`: two augpipe callbacks in the
wrong order raise an error that names the fix.
"""

from __future__ import annotations

import enum
import weakref
from typing import Callable, Optional, Sequence

import keras


class Stage(enum.IntEnum):
    """Where a callback runs in an epoch's list, first to last."""

    EPOCH_SYNC = 0  # the training pipeline's epoch counter (pipelines.EpochSync)
    LEARNING_RATE = 10  # installs its schedule before the backup restores the optimizer
    BACKUP = 20  # restores weights, optimizer and random states on a resume
    WEIGHTS = 22  # swaps the averaged (EMA) weights in at an epoch end, after the backup kept the trained ones
    PROBE = 25  # measures the model on the probe, before the controllers read it
    CONTROL = 30  # strength controllers and schedules: restored state, then decisions
    SAFETY = 40  # non-finite loss, Ctrl-C
    STOPPING = 50  # early stopping
    CHECKPOINT = 60  # the best model (its threshold in its state)
    EVALUATION = 70  # the held-out test set: after stopping, so it knows the last epoch
    MONITOR = 80  # throughput, augmentation images
    LOGGER = 90  # CSV, TensorBoard, curves, progress lines: they record every key written above
    COMMIT = 100  # the epoch's commit marker, after every file of the epoch


# Keras' own callbacks, by class: where they belong among augpipe's.
KERAS_STAGES = (
    (keras.callbacks.BackupAndRestore, Stage.BACKUP),
    (keras.callbacks.SwapEMAWeights, Stage.WEIGHTS),
    (keras.callbacks.TerminateOnNaN, Stage.SAFETY),
    (keras.callbacks.EarlyStopping, Stage.STOPPING),
    (keras.callbacks.ModelCheckpoint, Stage.CHECKPOINT),
    (keras.callbacks.CSVLogger, Stage.LOGGER),
    (keras.callbacks.TensorBoard, Stage.LOGGER),
)


def stage_of(callback) -> Optional[int]:
    """A callback's stage: its `stage` attribute, Keras' table, or None (a callback of yours)."""
    stage = getattr(callback, "stage", None)
    if stage is not None:
        return int(stage)
    for cls, keras_stage in KERAS_STAGES:
        if isinstance(callback, cls):
            return int(keras_stage)
    return None


def _stage_name(stage: int) -> str:
    try:
        return Stage(stage).name.lower().replace("_", " ")
    except ValueError:
        return f"stage {stage}"


def in_working_order(callbacks: Sequence, *, verbose: int = 0,
                     log: Optional[Callable[[str], None]] = None) -> list:
    """Returns `callbacks` sorted into working order, and wires the callbacks that check their siblings.

    The sort is stable: callbacks of one stage keep the order you gave them,
    and a callback with no stage (one of yours) takes the stage of the
    nearest staged callback before it (the first stage if none), so it
    stays next to the callbacks it followed. Nested lists are flattened and
    None entries dropped; the given list is not changed. What moved is
    said one line per callback (`working_order_moves` returns the lines).

    Args:
        callbacks: the callbacks of one `fit`.
        verbose: 1 prints what moved.
        log: receives each line of what moved.

    Example:

    >>> ordered = in_working_order([keras.callbacks.CSVLogger("log.csv"), keras.callbacks.EarlyStopping()])
    >>> [type(c).__name__ for c in ordered]
    ['EarlyStopping', 'CSVLogger']
    """
    ordered, moved = _sort(callbacks)
    for line in moved:
        if log is not None:
            log(line)
        if verbose:
            print(line)
    for callback in ordered:
        if isinstance(callback, Staged):
            callback.attach_callbacks(ordered)
    return ordered


def working_order_moves(callbacks: Sequence) -> tuple:
    """What `in_working_order` would move, one line per callback (empty when the order already works).

    >>> working_order_moves([keras.callbacks.CSVLogger("log.csv"), keras.callbacks.EarlyStopping()])
    ('EarlyStopping: moved before CSVLogger (stopping runs before logger)',)
    """
    return _sort(callbacks)[1]


def _sort(callbacks: Sequence) -> tuple:
    flat = [c for c in _flatten(callbacks) if c is not None]
    stages, current = [], int(min(Stage))
    for callback in flat:
        stage = stage_of(callback)
        current = current if stage is None else stage
        stages.append(current)
    order = sorted(range(len(flat)), key=lambda i: stages[i])
    moved = []
    for new_position, old_position in enumerate(order):
        passed = [i for i in order[new_position + 1:] if i < old_position]
        if passed:
            first = min(passed)  # the earliest callback it was put before
            moved.append(
                f"{type(flat[old_position]).__name__}: moved before {type(flat[first]).__name__} "
                f"({_stage_name(stages[old_position])} runs before {_stage_name(stages[first])})"
            )
    return [flat[i] for i in order], tuple(moved)


def _flatten(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


# The orders that matter, checked when a list reaches fit unsorted: (earlier, later) -> why.
_WRITERS = (Stage.LEARNING_RATE, Stage.PROBE, Stage.CONTROL, Stage.EVALUATION, Stage.MONITOR)
RULES = {
    (Stage.LEARNING_RATE, Stage.BACKUP): "it installs its schedule on the optimizer, which the backup restores",
    (Stage.STOPPING, Stage.EVALUATION): "the evaluation must know when early stopping ends the run",
    (Stage.PROBE, Stage.CONTROL): "the strength controller reads the probe's figures",
    (Stage.BACKUP, Stage.WEIGHTS): "the backup keeps the trained weights, not the averaged ones it swaps in",
    **{(Stage.WEIGHTS, later): "it swaps in the averaged weights that the epoch end measures and keeps"
       for later in (Stage.PROBE, Stage.CHECKPOINT, Stage.EVALUATION)},
    **{(writer, Stage.LOGGER): "the loggers record the keys it writes" for writer in _WRITERS},
    **{(stage, Stage.COMMIT): "the commit marker comes after every file of the epoch"
       for stage in Stage if stage != Stage.COMMIT},
}


def rule(earlier: int, later: int) -> Optional[str]:
    """Why a callback of stage `earlier` must run before one of stage `later`, or None if either order works."""
    try:
        return RULES.get((Stage(earlier), Stage(later)))
    except ValueError:
        return None


# The stages already seen in each running fit, by model (each fit's params dict tells fits apart).
_RUNNING: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def check_stage_order(callback) -> None:
    """At `on_train_begin`: raises if an augpipe callback that must follow this one (`RULES`) ran before it.

    Keras calls `on_train_begin` in list order and hands every callback of
    one `fit` the same `params` dict, so the stages seen so far in this fit
    are known without looking at the list.
    """
    model = getattr(callback, "_model", None)
    stage = stage_of(callback)
    if model is None or stage is None:
        return
    try:
        entry = _RUNNING.get(model)
    except TypeError:  # a model that cannot be weakly referenced: nothing to compare with
        return
    params = getattr(callback, "params", None)
    if entry is None or entry[0] is not params:
        entry = (params, [])
        _RUNNING[model] = entry
    later = [(other, rule(stage, stage_of(other))) for other in entry[1]]
    later = [(other, why) for other, why in later if why]
    entry[1].append(callback)
    if later:
        other, why = later[0]
        raise ValueError(
            f"{type(callback).__name__} must come before {type(other).__name__} in the callback list: "
            f"{why}. Pass the list through "
            "augpipe.callbacks.in_working_order([...]), which sorts it and says what it moved, or move "
            f"{type(callback).__name__} yourself."
        )


class Staged:
    """Mixin of every augpipe callback: a `stage`, the order check, and the siblings `in_working_order` gave.

    `fit_callbacks` is the list the callback runs in when that list went
    through `in_working_order` (None otherwise).
    """

    stage: Stage = Stage.CONTROL
    fit_callbacks: Optional[list] = None

    def attach_callbacks(self, callbacks: list) -> None:
        self.fit_callbacks = callbacks

    def on_train_begin(self, logs=None):
        check_stage_order(self)
        super().on_train_begin(logs)
