"""Strength control: open-loop schedules and a closed-loop (ADA-style) controller."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Union

import keras

from augpipe.validation import check_int, check_unit, did_you_mean
from augpipe.callbacks.base import (
    StatefulCallback,
    check_not_test_key,
    strength_variable,
    without_test_keys,
)
from augpipe.callbacks.grammar import (  # noqa: F401  (re-exported)
    ADAPTIVE_INITIAL_STRENGTH,
    ADAPTIVE_WARMUP_EPOCHS,
    SHAPED_INITIAL_CEILING,
    SHAPED_SIGNAL,
    SIGNALS,
    STRENGTH_HELP,
)
from augpipe.callbacks.order import Stage, Staged
from augpipe.callbacks.schedules import Schedule, constant, parse_schedule

ACCURACY_KEYS = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy", "acc")
# The built-in signals: the log keys each reads (accuracy_gap finds its accuracy key), and the default targets.
SIGNAL_KEYS = {
    "loss_ratio": ("loss", "val_loss"),
    "probe_gap": ("probe_accuracy", "val_accuracy"),
    "probe_loss_gap": ("probe_loss", "val_loss"),
    "probe_confidence": ("probe_confident",),
}
# accuracy_gap: see the class docstring. The probe signals' targets are provisional until the strength study.
DEFAULT_TARGETS = {"accuracy_gap": -0.02, "loss_ratio": 1.0, "probe_gap": 0.01, "probe_loss_gap": 0.02,
                   "probe_confidence": 0.6}
# A dead band around the target: a probe's gap is the difference of two small samples' figures, and a
# sign integrator would walk on their noise (provisional, like the probe targets).
DEFAULT_TOLERANCES = {"probe_gap": 0.02, "probe_loss_gap": 0.05, "probe_confidence": 0.05}




class StrengthSchedule(Staged, keras.callbacks.Callback):
    """Sets the augmentation strength from a pure `schedule(epoch)` each epoch.

    The value is assigned at the start of each epoch (no retrace, no dataset
    rebuild) and written to `logs["aug_strength"]`. It depends on the epoch
    only, so a resumed run needs no saved state.

    Args:
        target: an `augment.Augment` layer or its strength variable.
        schedule: a callable `epoch -> float` in [0, 1], or a spec string
            such as `"linear:0.1:0.8:20"` (see `callbacks.schedules`).
        verbose: 1 prints each new value.

    Example:

    >>> from augpipe import augment
    >>> layer = augment.Augment("mnist", strength=0.0, seed=0)
    >>> callback = StrengthSchedule(layer, "linear:0.0:0.8:10")
    >>> callback.on_epoch_begin(5); round(float(layer.strength.numpy()), 2)
    0.4
    """

    def __init__(self, target, schedule: Union[str, Callable[[int], float]], verbose: int = 0):
        super().__init__()
        self.variable = strength_variable(target)
        if isinstance(schedule, str):
            schedule = parse_schedule(schedule)
        if not callable(schedule):
            raise ValueError(f"Received: schedule={schedule!r}. Expected a callable epoch -> float or a spec string.")
        self.schedule = schedule
        self.verbose = verbose
        self.current = None

    def on_epoch_begin(self, epoch, logs=None):
        value = self.schedule(epoch)
        if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
            raise ValueError(
                f"StrengthSchedule: schedule({epoch}) returned {value!r}. Expected a float in [0, 1]."
            )
        self.current = float(value)
        self.variable.assign(self.current)
        if self.verbose:
            print(f"Epoch {epoch + 1}: augmentation strength {self.current:.3f}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.current is not None:
            logs["aug_strength"] = self.current


class AdaptiveStrength(StatefulCallback):
    """Closed-loop strength control from an overfitting signal, like StyleGAN2-ADA.

    The rule, applied at the end of every epoch after `warmup_epochs`:

        strength <- clip(strength + speed * sign(signal - target_value),
                         min_strength, max_strength)

    The strength is the integral of the sign of the error, as in ADA: the
    controller pushes augmentation up while the model overfits more than the
    target allows and down while it underfits, at a fixed rate that noise in
    one epoch cannot amplify.

    Signals:
        - `"accuracy_gap"`: train accuracy - val accuracy. Train accuracy is
          measured on augmented batches, so stronger augmentation closes the
          gap.
        - `"loss_ratio"`: val loss / train loss.
        - `"probe_gap"`: probe accuracy - val accuracy, both clean and in
          inference mode (`callbacks.ProbeEvaluation` before this callback);
          `"probe_loss_gap"`: val loss - probe loss.
        - `"probe_confidence"`: the share of probe images known with high
          confidence (StyleGAN2-ADA's r_t); needs no validation.
        - a callable `logs -> float`.

    Defaults and why: `target_value=-0.02` for the accuracy gap. Train
    accuracy is a running mean over an epoch of a still-improving model, with
    dropout on, so it reads about a point below a clean measurement; a gap of
    0 already means mild overfitting, and -0.02 asks for the strength at which
    augmented training is somewhat harder than clean validation (on
    run-mnist, -0.02 matched the best constant strength; 0 and -0.01 fell
    short by 0.1-0.15 points). (`1.0` for
    the loss ratio.) `speed=0.05` crosses the whole [0, 1] range in 20 epochs:
    slow enough that one noisy epoch moves the strength by a twentieth, fast
    enough to settle within a short MNIST run. `warmup_epochs=2` waits until
    the first epochs' rapid gains, in which train and val move together, are
    over. These were tuned on `run-mnist` (README, Results).

    Writes `aug_strength` (the strength used in the epoch) and `aug_signal` to
    `logs`. On an epoch without validation (`fit(..., validation_freq=N)`)
    the signal is NaN and the strength holds. A callable `signal` receives
    the logs without any `test_*` key, so the held-out set cannot steer it.
    With `state_dir`, the integrator resumes exactly.

    Args:
        target: an `augment.Augment` layer or its strength variable.
        signal: `"accuracy_gap"`, `"loss_ratio"`, or a callable.
        target_value: the signal value the controller steers to.
        speed: strength change per epoch.
        min_strength, max_strength: clamps.
        warmup_epochs: epochs at the initial strength before control starts.
        tolerance: a dead band: the strength holds while the signal is
            within `tolerance` of the target (default 0, and 0.02-0.05 for
            the probe signals).
        initial_strength: the starting strength (the target's value if None).
        state_dir: where to keep resumable state (the backup directory).
        verbose: 1 prints each decision.

    Example:

    >>> from augpipe import augment
    >>> layer = augment.Augment("mnist", strength=0.2, seed=0)
    >>> controller = AdaptiveStrength(layer, warmup_epochs=0)
    >>> controller.on_epoch_begin(0)
    >>> controller.on_epoch_end(0, {"accuracy": 0.99, "val_accuracy": 0.95})
    >>> round(float(layer.strength.numpy()), 2)
    0.25
    """


    def __init__(
        self,
        target,
        signal: Union[str, Callable[[dict], float]] = "accuracy_gap",
        target_value: Optional[float] = None,
        speed: float = 0.05,
        min_strength: float = 0.0,
        max_strength: float = 1.0,
        warmup_epochs: int = 2,
        initial_strength: Optional[float] = None,
        state_dir=None,
        verbose: int = 0,
        tolerance: Optional[float] = None,
    ):
        super().__init__(state_dir=state_dir, state_name="adaptive_strength")
        self.variable = strength_variable(target)
        if not (callable(signal) or signal in SIGNALS):
            raise ValueError(
                f"Received: signal={signal!r}. Expected one of {', '.join(SIGNALS)}, or a callable logs -> float."
            )
        self.signal = signal
        if target_value is None:
            target_value = DEFAULT_TARGETS.get(signal, 0.0)
        self.target_value = float(target_value)
        if tolerance is None:
            tolerance = DEFAULT_TOLERANCES.get(signal, 0.0) if isinstance(signal, str) else 0.0
        if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < math.inf):
            raise ValueError(f"Received: tolerance={tolerance!r}. Expected a float >= 0.")
        self.tolerance = float(tolerance)
        if not float(speed) > 0:
            raise ValueError(f"Received: speed={speed!r}. Expected a float > 0.")
        self.speed = float(speed)
        self.min_strength = check_unit("min_strength", min_strength)
        self.max_strength = check_unit("max_strength", max_strength)
        if self.min_strength > self.max_strength:
            raise ValueError(
                f"Received: min_strength={min_strength!r} > max_strength={max_strength!r}. Expected min <= max."
            )
        check_int("warmup_epochs", warmup_epochs, minimum=0)
        self.warmup_epochs = warmup_epochs
        self.initial_strength = (
            None if initial_strength is None else check_unit("initial_strength", initial_strength)
        )
        self.verbose = verbose
        self.reset()

    @property
    def monitored_keys(self):
        if callable(self.signal):
            return []
        return list(SIGNAL_KEYS.get(self.signal, ("accuracy", "val_accuracy")))

    def reset(self):
        start = self.initial_strength
        if start is None:
            start = float(self.variable.numpy())
        self.strength = min(max(start, self.min_strength), self.max_strength)
        self.last_signal = float("nan")
        self._next_epoch = None

    def get_state(self):
        return {"strength": self.strength, "last_signal": self.last_signal}

    def set_state(self, state):
        self.strength = float(state["strength"])
        self.last_signal = float(state["last_signal"])

    def compute_signal(self, logs: dict) -> float:
        """The epoch's overfitting signal; NaN on an epoch without validation (`validation_freq > 1`).

        A callable signal receives the logs without any `test_*` key.
        """
        logs = without_test_keys(logs)
        if callable(self.signal):
            return float(self.signal(logs))
        if self.signal in SIGNAL_KEYS:
            keys = SIGNAL_KEYS[self.signal]
        else:
            train_key = next((k for k in ACCURACY_KEYS if k in logs), None)
            keys = (train_key or "accuracy", f"val_{train_key or 'accuracy'}")
        missing = [k for k in keys if k not in logs]
        validated = any(k.startswith("val_") for k in logs)
        if missing and not validated and all(k.startswith("val_") for k in missing):
            return float("nan")  # no validation this epoch (validation_freq > 1): hold the strength
        if missing:
            probe = " and a ProbeEvaluation before this controller" if self.signal.startswith("probe") else ""
            raise ValueError(
                f"AdaptiveStrength(signal={self.signal!r}) needs {list(keys)} in the epoch logs, "
                f"but {missing} is missing (logs have {sorted(logs)}). Compile with "
                f"metrics=['accuracy'] and pass validation_data to fit{probe}."
            )
        for key in keys:
            check_not_test_key(key, "AdaptiveStrength")
        values = [float(logs[key]) for key in keys]
        if self.signal == "probe_confidence":
            return values[0]
        train, val = values
        if self.signal == "loss_ratio":
            return val / train if train > 0 else float("inf")
        if self.signal == "probe_loss_gap":
            return val - train
        return train - val

    def raise_strength(self, amount: float) -> bool:
        """Raises strength by `amount` for the next epoch; False if already at max."""
        if self.strength >= self.max_strength - 1e-9:
            return False
        self.strength = min(self.max_strength, self.strength + float(amount))
        self.variable.assign(self.strength)
        if self._next_epoch is not None:
            self.save_state(self._next_epoch)
        return True

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_for_epoch(epoch)
        self.variable.assign(self.strength)

    def on_epoch_end(self, epoch, logs=None):
        used = self.strength
        signal = self.compute_signal(logs)
        self.last_signal = signal
        if epoch + 1 > self.warmup_epochs and math.isfinite(signal):
            error = signal - self.target_value
            direction = 0 if abs(error) <= self.tolerance else (error > 0) - (error < 0)
            self.strength = min(max(self.strength + self.speed * direction, self.min_strength), self.max_strength)
        self.variable.assign(self.strength)
        if logs is not None:
            logs["aug_strength"] = used
            logs["aug_signal"] = signal
        if self.verbose:
            print(f"Epoch {epoch + 1}: signal {signal:.4f}, strength {used:.3f} -> {self.strength:.3f}")
        self._next_epoch = epoch + 1
        self.save_state(epoch + 1)


class ShapedStrength(AdaptiveStrength):
    """A curriculum: a ramp from weak to strong, a ceiling the controller moves, a weak final stretch.

    The strength of epoch `e` of `E` is `ceiling * shape(e)`:

        shape(e) = min(1, (e + 1) / ramp)     for the first E - final epochs
                 = final_scale                for the last `final` epochs

    with `ramp = max(1, round(ramp_fraction * E))` and
    `final = round(final_fraction * E)`. The ceiling is the integrator of
    `AdaptiveStrength` (the same rule, signal, target and dead band: it rises
    while the model overfits more than the target allows and falls while it
    does not), so the controller sets how strong the strongest epochs are and
    the shape sets when they come. Early epochs learn the plain task, the
    middle ones regularize at the controlled ceiling, and the last ones,
    where a cosine rate is small, fit the weakly augmented images the model
    will see clean at test time.

    Writes `aug_strength` (the epoch's strength), `aug_ceiling` (the
    ceiling after the epoch) and `aug_signal` to the logs; resumes exactly
    with `state_dir`. `LearningRateControl(strength_controller=...)` raises
    the ceiling before it cuts the rate.

    Args:
        target: an `augment.Augment` layer or its strength variable.
        signal: as `AdaptiveStrength` (default `"probe_gap"`: needs a
            `ProbeEvaluation` before it).
        initial_ceiling: the ceiling before any control.
        total_epochs: `E` (the fit's `epochs` if None).
        ramp_fraction, final_fraction, final_scale: the shape.
        **kwargs: the other arguments of `AdaptiveStrength` (`target_value`,
            `speed`, `tolerance`, `warmup_epochs`, `min_strength`,
            `max_strength` bound the ceiling, `state_dir`, `verbose`).

    Example:

    >>> from augpipe import augment
    >>> layer = augment.Augment("mnist", seed=0)
    >>> shaped = ShapedStrength(layer, initial_ceiling=0.8, total_epochs=10, signal=lambda logs: 0.0)
    >>> [round(shaped.shape(e), 2) for e in range(10)]
    [0.33, 0.67, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    """

    def __init__(self, target, signal="probe_gap", initial_ceiling: float = SHAPED_INITIAL_CEILING,
                 total_epochs: Optional[int] = None, ramp_fraction: float = 0.3, final_fraction: float = 0.15,
                 final_scale: float = 0.5, **kwargs):
        check_unit("ramp_fraction", ramp_fraction)
        check_unit("final_fraction", final_fraction)
        self.final_scale = check_unit("final_scale", final_scale)
        if ramp_fraction + final_fraction > 1:
            raise ValueError(f"Received: ramp_fraction={ramp_fraction!r} and final_fraction={final_fraction!r}. "
                             "Expected a sum <= 1 (the ramp and the final stretch cannot overlap).")
        self.ramp_fraction, self.final_fraction = float(ramp_fraction), float(final_fraction)
        if total_epochs is not None:
            check_int("total_epochs", total_epochs)
        self.total_epochs = total_epochs
        kwargs.setdefault("warmup_epochs", 0)
        super().__init__(target, signal=signal, initial_strength=check_unit("initial_ceiling", initial_ceiling),
                         **kwargs)
        self.state_name = "shaped_strength"

    def on_train_begin(self, logs=None):
        if self.total_epochs is None:
            self.total_epochs = int((self.params or {}).get("epochs") or 1)

    @property
    def ceiling(self) -> float:
        return self.strength

    def shape(self, epoch: int) -> float:
        """The ceiling's multiplier at `epoch` (0-based)."""
        total = max(int(self.total_epochs or 1), 1)
        final = int(round(self.final_fraction * total))
        if epoch >= total - final:
            return self.final_scale
        ramp = max(1, int(round(self.ramp_fraction * total)))
        return min(1.0, (epoch + 1) / ramp)

    def _epoch_strength(self, epoch: int) -> float:
        return min(max(self.strength * self.shape(epoch), 0.0), 1.0)

    def raise_strength(self, amount: float) -> bool:
        """Raises the ceiling by `amount` from the next epoch on; False if already at max."""
        if self.strength >= self.max_strength - 1e-9:
            return False
        self.strength = min(self.max_strength, self.strength + float(amount))
        if self._next_epoch is not None:
            self.variable.assign(self._epoch_strength(self._next_epoch))
            self.save_state(self._next_epoch)
        return True

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_for_epoch(epoch)
        self.variable.assign(self._epoch_strength(epoch))

    def on_epoch_end(self, epoch, logs=None):
        used = self._epoch_strength(epoch)
        super().on_epoch_end(epoch, logs)  # moves the ceiling (self.strength) and saves the state
        self.variable.assign(self._epoch_strength(epoch + 1))
        if logs is not None:
            logs["aug_strength"] = used
            logs["aug_ceiling"] = self.strength


# ----------------------------------------------------------------------------
# The strength grammar of every command: one parser.

@dataclasses.dataclass(frozen=True)
class StrengthSpec:
    """A parsed `--strength` spec: what a run starts at and which callback moves it.

    Attributes:
        spec: the text it was parsed from.
        kind: `"adaptive"`, `"shaped"`, `"off"` (augmentation off: policy
            `none`) or `"schedule"` (a constant is a schedule).
        initial: the strength of the first epoch.
        schedule: the schedule (None unless `kind == "schedule"`).
    """

    spec: str
    kind: str
    initial: float
    schedule: Optional[Schedule] = None
    signal: str = "accuracy_gap"

    @property
    def needs_probe(self) -> bool:
        """Whether its controller reads the probe (`callbacks.ProbeEvaluation`)."""
        return self.kind in ("adaptive", "shaped") and self.signal.startswith("probe")

    @property
    def fixed(self) -> Optional[float]:
        """The one strength of a spec that never changes (`off`, a number, `constant:X`), else None."""
        if self.kind == "off":
            return 0.0
        if self.kind == "schedule" and self.spec.split(":")[0] in ("constant", self.spec):
            return self.initial
        return None

    def callback(self, target, state_dir=None, total_epochs: Optional[int] = None) -> keras.callbacks.Callback:
        """The callback that sets the strength of `target` (an `Augment` layer) every epoch.

        `total_epochs` is the length a `shaped` curriculum is laid out for
        (the fit's `epochs` if None; run-mnist passes the run's original
        length, so a resume that extends a run keeps the shape).
        """
        if self.kind == "adaptive":
            return AdaptiveStrength(target, signal=self.signal, warmup_epochs=ADAPTIVE_WARMUP_EPOCHS,
                                    state_dir=state_dir)
        if self.kind == "shaped":
            return ShapedStrength(target, signal=self.signal, state_dir=state_dir, total_epochs=total_epochs)
        return StrengthSchedule(target, self.schedule if self.kind == "schedule" else constant(0.0))


def parse_strength(spec) -> StrengthSpec:
    """Parses the strength grammar shared by run-mnist, profile-input and preview-augment.

    `shaped` or `shaped:SIGNAL`, `adaptive` or `adaptive:SIGNAL`, `off`, a
    number `X` (the same as `constant:X`), or a schedule spec (`constant:X`,
    `linear:...`, `cosine:...`, `step:...`).

    >>> parse_strength("adaptive").initial, parse_strength("0.5").fixed, parse_strength("linear:0:1:10").fixed
    (0.3, 0.5, None)
    >>> parse_strength("shaped").signal, parse_strength("shaped").needs_probe
    ('probe_gap', True)
    """
    text = str(spec).strip() if isinstance(spec, (str, int, float)) and not isinstance(spec, bool) else None
    kind = None if text is None else text.split(":")[0]
    if kind in ("adaptive", "shaped"):
        default = "accuracy_gap" if kind == "adaptive" else SHAPED_SIGNAL
        signal = text.partition(":")[2] or default
        if signal not in SIGNALS:
            raise ValueError(f"Invalid strength {text!r}: unknown signal {signal!r}. Expected {kind} or "
                             f"{kind}:SIGNAL with SIGNAL one of {', '.join(SIGNALS)}.{did_you_mean(signal, SIGNALS)}")
        if kind == "shaped":  # the first epoch's strength: the ramp's first step (the callback sets it)
            return StrengthSpec(text, kind, 0.0, signal=signal)
        return StrengthSpec(text, "adaptive", ADAPTIVE_INITIAL_STRENGTH, signal=signal)
    if text == "off":
        return StrengthSpec(text, "off", 0.0)
    if text is None:
        raise ValueError(f"Invalid strength {spec!r}. Expected {STRENGTH_HELP}")
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None:
        check = check_unit("strength", value)
        return StrengthSpec(text, "schedule", check, constant(check))
    try:
        schedule = parse_schedule(text)
    except ValueError as error:
        raise ValueError(f"{error} Or use 'adaptive', 'off' or a number in [0, 1].") from None
    return StrengthSpec(text, "schedule", float(schedule(0)), schedule)
