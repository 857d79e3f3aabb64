"""Learning-rate control that composes warmup, cosine decay and plateau cuts with any schedule."""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np

from augpipe.callbacks.base import (
    StatefulCallback,
    check_not_test_key,
    without_test_keys,
)
from augpipe.callbacks.order import Stage
from augpipe.validation import check_int


@keras.saving.register_keras_serializable(package="augpipe")
class MultiplierSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`base(step) * scale * multiplier`, where `scale` and `multiplier` are variables.

    `base` is a float or any `LearningRateSchedule`; it is never modified.
    `base(step) * scale` is the *base rate*: what Keras' own
    `LearningRateScheduler` and `ReduceLROnPlateau` read and set when they
    run beside `LearningRateControl` (`set_base_rate` changes `scale`).
    `multiplier` is augpipe's warmup, cosine and plateau factor. Assigning
    either changes the learning rate at once, with no retrace.
    `LearningRateControl` installs one on the optimizer if the optimizer
    does not have one yet.

    Example:

    >>> schedule = MultiplierSchedule(keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9))
    >>> optimizer = keras.optimizers.Adam(learning_rate=schedule)
    >>> _ = schedule.multiplier.assign(0.5)
    >>> round(float(schedule(0)), 7)
    0.0005
    """

    def __init__(self, base, multiplier: float = 1.0, scale: float = 1.0):
        if isinstance(base, dict):
            base = keras.optimizers.schedules.deserialize(base)
        self.base = base
        self.multiplier = keras.Variable(float(multiplier), trainable=False, dtype="float32", name="lr_multiplier")
        self.scale = keras.Variable(float(scale), trainable=False, dtype="float32", name="lr_base_scale")

    def base_value(self, step):
        """`base(step)`, without the scale or the multiplier."""
        if isinstance(self.base, keras.optimizers.schedules.LearningRateSchedule):
            return self.base(step)
        return keras.ops.convert_to_tensor(float(self.base), dtype="float32")

    def base_rate(self, step):
        """`base(step) * scale`: the rate before augpipe's multiplier."""
        return keras.ops.cast(self.base_value(step), "float32") * self.scale

    def set_base_rate(self, rate, step) -> None:
        """Makes the base rate at `step` equal `rate` (by setting `scale`)."""
        unscaled = float(np.asarray(keras.ops.convert_to_numpy(self.base_value(step))))
        if not unscaled > 0:
            raise ValueError(f"Cannot set the base rate to {rate!r}: base(step) is {unscaled!r}, not > 0.")
        self.scale.assign(float(rate) / unscaled)

    def __call__(self, step):
        return self.base_rate(step) * self.multiplier

    def get_config(self):
        base = self.base
        if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
            base = keras.optimizers.schedules.serialize(base)
        return {
            "base": base,
            "multiplier": float(np.asarray(self.multiplier.numpy())),
            "scale": float(np.asarray(self.scale.numpy())),
        }


class _BaseRateOptimizerView:
    """The optimizer as Keras' LR callbacks see it beside `LearningRateControl`: `learning_rate` is the base rate."""

    def __init__(self, optimizer, schedule: MultiplierSchedule):
        object.__setattr__(self, "_optimizer", optimizer)
        object.__setattr__(self, "_schedule", schedule)

    @property
    def learning_rate(self):
        return self._schedule.base_rate(self._optimizer.iterations)

    @learning_rate.setter
    def learning_rate(self, rate):
        self._schedule.set_base_rate(rate, self._optimizer.iterations)

    def __getattr__(self, name):
        return getattr(self._optimizer, name)

    def __setattr__(self, name, value):
        if name == "learning_rate":  # a custom __setattr__ bypasses the property's setter
            type(self).learning_rate.fset(self, value)
        else:
            setattr(self._optimizer, name, value)


class _ModelView:
    """The model, with its optimizer seen through `_BaseRateOptimizerView`; everything else forwarded."""

    def __init__(self, model, optimizer_view):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "optimizer", optimizer_view)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __setattr__(self, name, value):
        setattr(self._model, name, value)


KERAS_LR_CALLBACKS = (keras.callbacks.LearningRateScheduler, keras.callbacks.ReduceLROnPlateau)


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

    Keras' own `LearningRateScheduler` and `ReduceLROnPlateau` keep working
    beside it, in any position in the callback list: while this callback is
    installed they read and set the *base rate* (`base(step) * scale`, see
    `MultiplierSchedule`), which the multiplier then scales. So a scheduler's
    steps and a plateau's cuts change the base, warmup and cosine shape it,
    and `learning_rate` in the logs is the rate actually used in the epoch
    (this callback corrects the value those callbacks log). Their `min_lr`
    bounds the base rate. On their own (without this callback) augpipe does
    not touch them. The plain Keras route fails here: an optimizer whose
    rate is a schedule refuses `optimizer.learning_rate = x`
    (tensorflow/tensorflow#36612).

    Coordination with augmentation (`strength_controller`, an
    `AdaptiveStrength`): on a plateau, if the strength is below its max it is
    raised by `strength_step` first and the patience count starts again; the
    learning rate is cut only if the plateau persists.

    Writes `learning_rate` (the rate used in the epoch), `lr_multiplier` and
    `lr_plateau_wait` to `logs`. On an epoch without validation
    (`validation_freq > 1`) a `val_*` monitor is absent: the plateau state
    holds and `lr_plateau_wait` is NaN. With `state_dir` the plateau
    counters and factor resume exactly.

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

    stage = Stage.LEARNING_RATE

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
        self._adapted = []
        self._rate_epoch = None
        self._rate = None
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
            # The base-rate scale that Keras' LearningRateScheduler/ReduceLROnPlateau set, if any.
            "base_scale": float(np.asarray(self.schedule.scale.numpy())) if self.schedule is not None else 1.0,
            "plateau_factor": self.plateau_factor,
            "best": self.best,
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
            "raised_this_plateau": self.raised_this_plateau,
            "num_cuts": self.num_cuts,
            "num_raises": self.num_raises,
        }

    def set_state(self, state):
        state = dict(state)
        scale = state.pop("base_scale", 1.0)
        if self.schedule is not None:
            self.schedule.scale.assign(float(scale))
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
        # A backup restored before the schedule is installed would not match the optimizer it
        # restores: its stage puts it before the backups (checked at on_train_begin).
        self.schedule = install_multiplier(optimizer)
        if not already and getattr(self.model, "train_function", None) is not None:
            # The train step may have been traced with the old learning rate.
            self.model.make_train_function(force=True)
        self._rate_epoch = None
        self._adapt_keras_lr_callbacks(self.fit_callbacks or [])

    def _adapt_keras_lr_callbacks(self, siblings) -> None:
        """Lets Keras' LearningRateScheduler and ReduceLROnPlateau read and set the base rate."""
        self._release_keras_lr_callbacks()
        view = _ModelView(self.model, _BaseRateOptimizerView(self.model.optimizer, self.schedule))
        for callback in siblings:
            if not isinstance(callback, KERAS_LR_CALLBACKS):
                continue
            original = callback.on_epoch_end

            def on_epoch_end(epoch, logs=None, _original=original):
                rate = self._rate_used(epoch)
                _original(epoch, logs)
                if logs is not None:
                    logs["learning_rate"] = rate  # they logged the base rate

            callback.on_epoch_end = on_epoch_end
            callback.set_model(view)
            self._adapted.append(callback)

    def _release_keras_lr_callbacks(self) -> None:
        for callback in self._adapted:
            callback.__dict__.pop("on_epoch_end", None)
            callback.set_model(self.model)
        self._adapted = []

    def on_train_end(self, logs=None):
        self._release_keras_lr_callbacks()

    def _rate_used(self, epoch: int) -> float:
        """The epoch's learning rate, read once at its end, before any plateau cut changes it."""
        if self._rate_epoch != epoch:
            step = self.model.optimizer.iterations
            self._rate = float(np.asarray(keras.ops.convert_to_numpy(self.schedule(step))))
            self._rate_epoch = epoch
        return self._rate

    def _total_epochs(self):
        return self.total_epochs or (self.params or {}).get("epochs") or 1

    def _base_lr_now(self) -> float:
        step = self.model.optimizer.iterations
        return float(np.asarray(keras.ops.convert_to_numpy(self.schedule.base_rate(step))))

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_for_epoch(epoch)
        self.schedule.multiplier.assign(self.multiplier_for(epoch, self._total_epochs()))

    def on_epoch_end(self, epoch, logs=None):
        base_lr = self._base_lr_now()
        multiplier = float(np.asarray(self.schedule.multiplier.numpy()))
        if logs is not None:
            logs["learning_rate"] = self._rate_used(epoch)
            logs["lr_multiplier"] = multiplier
        decision = "none"
        if self.patience is not None:
            visible = without_test_keys(logs)
            validated = any(key.startswith("val_") for key in visible)
            if self.monitor not in visible and self.monitor.startswith("val_") and not validated:
                # No validation this epoch (validation_freq > 1): hold the plateau state.
                if logs is not None:
                    logs["lr_plateau_wait"] = float("nan")
                self.save_state(epoch + 1)
                return
            if self.monitor not in visible:
                raise ValueError(
                    f"LearningRateControl monitors {self.monitor!r}, which is not in the epoch logs "
                    f"(they have {sorted(visible)}). Pass validation_data to fit or change `monitor`."
                )
            decision = self.plateau_step(float(visible[self.monitor]), base_lr)
            if logs is not None:
                logs["lr_plateau_wait"] = self.wait
        if self.verbose and decision in ("cut_lr", "raise_strength"):
            print(f"Epoch {epoch + 1}: {self.monitor} plateaued: {decision.replace('_', ' ')}")
        self.save_state(epoch + 1)
