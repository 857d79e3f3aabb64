"""Run safety: stop at the first non-finite loss, stop at a safe point on Ctrl-C, one line per epoch."""

from __future__ import annotations

import math
import signal
import sys

import keras

from augpipe.callbacks.order import Stage, Staged


class NonFiniteLossError(RuntimeError):
    """Raised by `StopOnNonFiniteLoss` from inside `fit`."""


class StopOnNonFiniteLoss(Staged, keras.callbacks.Callback):
    """Aborts `fit` at the first NaN or infinite loss, before an epoch-end backup can save bad weights.

    Keras' `TerminateOnNaN` stops at the end of the batch but lets the epoch
    end run, so `BackupAndRestore` and `ModelCheckpoint` would save the bad
    weights. This one raises `NonFiniteLossError` from the batch hook, so the
    last backup stays the last good one. It overrides a batch hook because it
    has to see every step's loss.

    Example:

    >>> stop = StopOnNonFiniteLoss()
    >>> stop.on_train_batch_end(0, {"loss": 0.5})
    >>> stop.on_train_batch_end(1, {"loss": float("nan")})
    Traceback (most recent call last):
    ...
    augpipe.callbacks.safety.NonFiniteLossError: loss nan at batch 2
    """

    stage = Stage.SAFETY

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(f"loss {float(loss)} at batch {batch + 1}")


class GracefulInterrupt(Staged, keras.callbacks.Callback):
    """First Ctrl-C: finish the epoch (a safe point with a backup), then stop. A second one stops at once.

    `requested` tells, after `fit` returns, whether the run stopped because of
    Ctrl-C. The SIGINT handler is installed at `on_train_begin` (main thread
    only) and the previous one is restored at `on_train_end`.

    Args:
        verbose: 1 prints one line on stderr when the first Ctrl-C arrives.

    Example:

    >>> interrupt = GracefulInterrupt(verbose=0)
    >>> interrupt.requested
    False
    """

    stage = Stage.SAFETY

    def __init__(self, verbose: int = 1):
        super().__init__()
        self.verbose = verbose
        self.requested = False
        self._previous = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.requested = False
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: signals cannot be caught here
            self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.verbose:
            print("\nInterrupt: stopping after this epoch (Ctrl-C again to stop now).", file=sys.stderr)

    def on_epoch_end(self, epoch, logs=None):
        if self.requested:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class EpochLine(Staged, keras.callbacks.Callback):
    """One progress line per epoch: loss/accuracy for train, val and test, strength, rate, throughput.

    Args:
        epochs_total: the epoch count shown after the slash.
        stream: where the line goes (stderr by default).

    Example:

    >>> import io
    >>> out = io.StringIO()
    >>> EpochLine(10, stream=out).on_epoch_end(0, {"loss": 0.5, "accuracy": 0.9, "aug_strength": 0.3})
    >>> out.getvalue()
    'epoch   1/10 | loss/acc 0.5000/0.9000 | strength 0.30\\n'
    """

    stage = Stage.LOGGER

    def __init__(self, epochs_total: int, stream=None):
        super().__init__()
        self.epochs_total = epochs_total
        self.stream = stream

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        acc_key = "accuracy" if "accuracy" in logs else "categorical_accuracy"

        def pair(prefix):
            loss, acc = logs.get(f"{prefix}loss"), logs.get(f"{prefix}{acc_key}")
            if loss is None or acc is None or not math.isfinite(float(loss)):
                return None
            return f"{float(loss):.4f}/{float(acc):.4f}"

        parts = [f"epoch {epoch + 1:>3}/{self.epochs_total}", f"loss/acc {pair('')}"]
        if pair("val_"):
            parts.append(f"val {pair('val_')}")
        if pair("test_"):
            parts.append(f"test {pair('test_')}")
        if "aug_strength" in logs:
            parts.append(f"strength {float(logs['aug_strength']):.2f}")
        if "learning_rate" in logs:
            parts.append(f"lr {float(logs['learning_rate']):.2e}")
        if "images_per_sec" in logs and math.isfinite(float(logs["images_per_sec"])):
            parts.append(f"{float(logs['images_per_sec']):.0f} img/s")
        print(" | ".join(parts), file=self.stream or sys.stderr, flush=True)
