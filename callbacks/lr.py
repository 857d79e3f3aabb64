"""Learning-rate control that composes warmup, cosine decay and plateau cuts with any schedule."""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np

from augpipe.callbacks.base import StatefulCallback, check_not_test_key
from augpipe.validation import check_int


@keras.saving.register_keras_serializable(package="augpipe")
class MultiplierSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`base(step) * multiplier`, where `multiplier` is a variable.

    `base` is a float or any `LearningRateSchedule`; it is never modified.
    Assigning the multiplier changes the learning rate at once, with no
    retrace. `LearningRateControl` installs one on the optimizer if the
    optimizer does not have one yet.

    Example:

    >>> schedule = MultiplierSchedule(keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9))
    >>> optimizer = keras.optimizers.Adam(learning_rate=schedule)
    >>> _ = schedule.multiplier.assign(0.5)
    >>> round(float(schedule(0)), 7)
    0.0005
    """

    def __init__(self, base, multiplier: float = 1.0):
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        self.base = base
        self.multiplier = keras.Variable(float(multiplier), trainable=False, dtype="float32", name="lr_multiplier")

    def base_value(self, step):
        if isinstance(self.base, keras.optimizers.schedules.LearningRateSchedule):
            return self.base(step)
        return keras.ops.convert_to_tensor(float(self.base), dtype="float32")

    def __call__(self, step):
        return keras.ops.cast(self.base_value(step), "float32") * self.multiplier

    def get_config(self):
        base = self.base
        if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            base = keras.optimizers.schedules.serialize(base)
        return {"base": base, "multiplier": float(np.asarray(self.multiplier.numpy()))}


def install_multiplier(optimizer) -> MultiplierSchedule:
    """Wraps the optimizer's learning rate in a `MultiplierSchedule` (once)."""
    current = optimizer._learning_rate
    if isinstance(current, MultiplierSchedule):
        return current
    if isinstance(current, keras.optimizers.schedules.LearningRateSchedule):
        base = current
    elif callable(current) and not hasattr(current, "assign"):
        raise ValueError(
            "LearningRateControl cannot wrap a plain callable learning rate. "
            "Use a float or a keras LearningRateSchedule."
        )
    else:
        base = float(np.asarray(keras.ops.convert_to_numpy(current)))
    schedule = MultiplierSchedule(base)
    optimizer.learning_rate = schedule
    return schedule


class LearningRateControl(StatefulCallback):
    """Warmup, cosine decay and plateau reduction, all at once, on top of any schedule.

    The optimizer's learning rate becomes `base(step) * multiplier`, where
    `base` is whatever the optimizer had (a float or a `LearningRateSchedule`,
    left untouched) and

        multiplier = warmup(epoch) * cosine(epoch) * plateau_factor

    - warmup: linear from `1 / (warmup_epochs + 1)` to 1 over `warmup_epochs`;
    - cosine: from 1 down to `min_multiplier` between the end of warmup and
      `total_epochs` (the `epochs` of `fit` if None); `decay=None` turns it off;
    - plateau: when `monitor` has not improved by `min_delta` for `patience`
      epochs, `plateau_factor *= factor` (not below `min_lr`), then
      `cooldown` epochs without counting.

    Keras' own `ReduceLROnPlateau` refuses to run on an optimizer that has a
    schedule; this callback composes with it.

    Coordination with augmentation (`strength_controller`, an
    `AdaptiveStrength`): on a plateau, if the strength is below its max it is
    raised by `strength_step` first and the patience count starts again; the
    learning rate is cut only if the plateau persists.

    Writes `learning_rate` (the effective rate at the end of the epoch),
    `lr_multiplier` and `lr_plateau_wait` to `logs`. With `state_dir` the
    plateau counters and factor resume exactly.

    Put it before `BackupAndRestore` in the callback list, or build the
    optimizer with a `MultiplierSchedule`, so the optimizer's variables look
    the same when a backup is written and when it is restored.

    Args:
        warmup_epochs: linear warmup length (0 for none).
        decay: `"cosine"` or None.
        total_epochs: the cosine horizon (the `fit` epochs if None).
        min_multiplier: the cosine floor.
        monitor: the plateau metric; never a `test_*` key.
        mode: `"min"`, `"max"` or `"auto"` (max for accuracy-like names).
        patience, factor, min_delta, cooldown, min_lr: as in `ReduceLROnPlateau`.
            `patience=None` turns plateau reduction off.
        strength_controller: an `AdaptiveStrength` to raise before cutting.
        strength_step: how much to raise the strength on a plateau.
        state_dir: where to keep resumable state.
        verbose: 1 prints each decision.

    Example:

    >>> control = LearningRateControl(warmup_epochs=2, decay="cosine", patience=3)
    """

    def __init__(
        self,
        warmup_epochs: int = 0,
        decay: Optional[str] = "cosine",
        total_epochs: Optional[int] = None,
        min_multiplier: float = 0.0,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: Optional[int] = None,
        factor: float = 0.5,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        strength_controller=None,
        strength_step: float = 0.1,
        state_dir=None,
        verbose: int = 0,
    ):
        super().__init__(state_dir=state_dir, state_name="learning_rate_control")
        check_int("warmup_epochs", warmup_epochs, minimum=0)
        check_int("cooldown", cooldown, minimum=0)
        if decay not in (None, "cosine"):
            raise ValueError(f"Received: decay={decay!r}. Expected 'cosine' or None.")
        if patience is not None:
            check_int("patience", patience)
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"Received: factor={factor!r}. Expected a float in (0, 1).")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"Received: mode={mode!r}. Expected 'auto', 'min' or 'max'.")
        if total_epochs is not None:
            check_int("total_epochs", total_epochs)
        self.monitor = check_not_test_key(monitor, "LearningRateControl")
        self.warmup_epochs = warmup_epochs
        self.decay = decay
        self.total_epochs = total_epochs
        self.min_multiplier = float(min_multiplier)
        if mode == "auto":
            mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
        self.mode = mode
        self.patience = patience
        self.factor = float(factor)
        self.min_delta = abs(float(min_delta))
        self.cooldown = cooldown
        self.min_lr = float(min_lr)
        self.strength_controller = strength_controller
        self.strength_step = float(strength_step)
        self.verbose = verbose
        self.schedule = None
        self.reset()

    def reset(self):
        self.plateau_factor = 1.0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0
        self.raised_this_plateau = False
        self.num_cuts = 0
        self.num_raises = 0

    def get_state(self):
        return {
            "plateau_factor": self.plateau_factor,
            "best": self.best,
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
            "raised_this_plateau": self.raised_this_plateau,
            "num_cuts": self.num_cuts,
            "num_raises": self.num_raises,
        }

    def set_state(self, state):
        for key, value in state.items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ math

    def multiplier_for(self, epoch: int, total_epochs: int) -> float:
        """The epoch's multiplier: warmup * cosine * plateau factor (pure given the state)."""
        warm = 1.0
        if epoch < self.warmup_epochs:
            warm = (epoch + 1) / (self.warmup_epochs + 1)
        cos = 1.0
        if self.decay == "cosine":
            span = max(1, total_epochs - self.warmup_epochs)
            progress = min(max(epoch - self.warmup_epochs, 0), span) / span
            cos = self.min_multiplier + (1.0 - self.min_multiplier) * 0.5 * (1 + math.cos(math.pi * progress))
        return warm * cos * self.plateau_factor

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def plateau_step(self, value: float, base_lr: float = 1.0) -> str:
        """Updates the plateau state with one epoch's `value`; returns the decision."""
        if value is None or not math.isfinite(value):
            return "none"
        if self._improved(value):
            self.best = value
            self.wait = 0
            self.raised_this_plateau = False
            return "improved"
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
            return "cooldown"
        self.wait += 1
        if self.patience is None or self.wait < self.patience:
            return "wait"
        self.wait = 0
        controller = self.strength_controller
        if controller is not None and not self.raised_this_plateau and controller.raise_strength(self.strength_step):
            self.raised_this_plateau = True
            self.num_raises += 1
            return "raise_strength"
        floor = self.min_lr / base_lr if base_lr > 0 else 0.0
        new_factor = max(self.plateau_factor * self.factor, floor)
        self.raised_this_plateau = False
        if new_factor >= self.plateau_factor:
            return "at_min_lr"
        self.plateau_factor = new_factor
        self.cooldown_counter = self.cooldown
        self.num_cuts += 1
        return "cut_lr"

    # ------------------------------------------------------------- callbacks

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError("LearningRateControl needs a compiled model with an optimizer.")
        already = isinstance(optimizer._learning_rate, MultiplierSchedule)
        self.schedule = install_multiplier(optimizer)
        if not already and getattr(self.model, "train_function", None) is not None:
            # The train step may have been traced with the old learning rate.
            self.model.make_train_function(force=True)

    def _total_epochs(self):
        return self.total_epochs or (self.params or {}).get("epochs") or 1

    def _base_lr_now(self) -> float:
        step = self.model.optimizer.iterations
        return float(np.asarray(keras.ops.convert_to_numpy(self.schedule.base_value(step))))

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_for_epoch(epoch)
        self.schedule.multiplier.assign(self.multiplier_for(epoch, self._total_epochs()))

    def on_epoch_end(self, epoch, logs=None):
        base_lr = self._base_lr_now()
        multiplier = float(np.asarray(self.schedule.multiplier.numpy()))
        if logs is not None:
            logs["learning_rate"] = base_lr * multiplier
            logs["lr_multiplier"] = multiplier
        decision = "none"
        if self.patience is not None:
            if logs is None or self.monitor not in logs:
                raise ValueError(
                    f"LearningRateControl monitors {self.monitor!r}, which is not in the epoch logs "
                    f"(they have {sorted(logs or {})}). Pass validation_data to fit or change `monitor`."
                )
            decision = self.plateau_step(float(logs[self.monitor]), base_lr)
            if logs is not None:
                logs["lr_plateau_wait"] = self.wait
        if self.verbose and decision in ("cut_lr", "raise_strength"):
            print(f"Epoch {epoch + 1}: {self.monitor} plateaued: {decision.replace('_', ' ')}")
        self.save_state(epoch + 1)
