"""Throughput monitoring: images/sec and the estimated share of time spent waiting for input."""

from __future__ import annotations

import time
from typing import Optional

import keras
import numpy as np

from augpipe.augment import ops, rng
from augpipe.callbacks.order import Stage, Staged
from augpipe.validation import check_int


class ThroughputMonitor(Staged, keras.callbacks.Callback):
    """Measures training throughput per epoch and how much of it waits on input.

    This is the one callback in the package that overrides batch hooks: it
    has to time steps. It writes to `logs`:

    - `images_per_sec`: training images / wall time of the epoch's steps;
    - `input_wait_share`: an estimate of the share of step time spent
      waiting for the input pipeline. Keras fetches the next batch inside the
      compiled train step, so the wait cannot be timed on its own; instead a
      step slower than the epoch's fast steps (the 20th percentile) is
      counted as waiting for the excess. Stalls of other kinds (garbage
      collection, a busy machine) count too, so read it as an upper bound;
      `profile-input` measures the input-bound share directly.

    Args:
        batch_size: images per step (taken from the first batch's logs if
            the model reports `size`, otherwise required for images/sec).

    Example:

    >>> monitor = ThroughputMonitor(batch_size=128)
    """

    def __init__(self, batch_size: Optional[int] = None):
        super().__init__()
        if batch_size is not None:
            check_int("batch_size", batch_size)
        self.batch_size = batch_size
        self.history = []
        self._skip_next_step = False

    stage = Stage.MONITOR

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        # The first step of a fit traces and compiles the train function: not a step, not input wait.
        self._skip_next_step = True

    def on_epoch_begin(self, epoch, logs=None):
        self._step_times = []
        self._step_start = None
        self._excluded = 0.0
        self._epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._step_start is None:
            return
        duration = time.perf_counter() - self._step_start
        if self._skip_next_step:
            self._skip_next_step = False
            self._excluded += duration
            return
        self._step_times.append(duration)

    def summarize(self, step_times, batch_size, elapsed) -> dict:
        steps = np.asarray(step_times, dtype=np.float64)
        if steps.size == 0:
            return {"images_per_sec": float("nan"), "input_wait_share": float("nan")}
        fast = float(np.percentile(steps, 20))
        wait = float(np.clip(steps - fast, 0, None).sum())
        total = float(steps.sum())
        images = steps.size * (batch_size or 0)
        return {
            "images_per_sec": images / elapsed if images and elapsed > 0 else float("nan"),
            "input_wait_share": wait / total if total > 0 else float("nan"),
        }

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._epoch_start - self._excluded
        summary = self.summarize(self._step_times, self.batch_size, elapsed)
        self.history.append({"epoch": epoch, **summary})
        if logs is not None:
            logs.update(summary)


class AugmentationImages(Staged, keras.callbacks.Callback):
    """Writes a fixed batch, augmented at the current strength, to TensorBoard every `every` epochs.

    The same images and the same random draws every time (the layer's
    keyed, stateless path with a fixed key), so the pictures change only as
    the strength does: TensorBoard's image slider then shows what the
    controller did to the augmentation. It draws nothing from the layer's
    own random stream, so a run with and without it trains identically.

    Args:
        layer: the `augment.Augment` layer whose policy and strength to show.
        images: a uint8 batch `(N, H, W, C)`, or float in [0, 1].
        log_dir: the TensorBoard directory; images go to `log_dir/augmentation`.
        every: write at the end of epoch 1 and every `every` epochs.
        max_images: at most this many images of the batch.
        captions: one name per image (its class): each image is then written
            on its own, named by it and described by the ops it took.

    Example:

    >>> import numpy as np
    >>> from augpipe import augment
    >>> callback = AugmentationImages(augment.Augment("mnist", seed=0), np.zeros((4, 8, 8, 1), np.uint8), "tb")
    >>> callback.every
    5
    """

    stage = Stage.LOGGER  # writes its own TensorBoard events, next to the loggers

    def __init__(self, layer, images, log_dir, every: int = 5, max_images: int = 8, captions=None):
        super().__init__()
        self.layer = layer
        self.captions = None if captions is None else [str(c) for c in captions][:max_images]
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"AugmentationImages expects a batch (N, H, W, C). Received shape {images.shape}. "
                             "Add a batch axis (e.g. `x[None]`).")
        self.images = images[: check_int("max_images", max_images)]
        self.every = check_int("every", every)
        self.log_dir = str(log_dir)
        self._writer = None

    def augmented(self):
        """The batch at the layer's current strength, float32 in [0, 1]."""
        import tensorflow as tf

        key = tf.constant([0, 0], tf.int64)
        images = ops.to_float(tf.constant(self.images))
        return self.layer._augment(images, rng.keyed_seed(self.layer.seed, rng.Stream.POLICY, key),
                                   static=self.layer.shapes == "static")

    def on_epoch_end(self, epoch, logs=None):
        if epoch != 0 and (epoch + 1) % self.every:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(f"{self.log_dir}/augmentation")
        strength = float(self.layer.strength.numpy())
        with self._writer.as_default():
            augmented = self.augmented()
            if self.captions is None:
                tf.summary.image("augmentation", augmented, step=epoch + 1, max_outputs=len(self.images))
            else:  # one picture per image, named by its class, described by the ops it took
                chosen = self.layer.keyed_ops(self.images, [0, 0])
                for index, caption in enumerate(self.captions):
                    ops_taken = "policy without per-image ops" if chosen is None else ", ".join(chosen[index]) or "no op"
                    tf.summary.image(f"augmentation/{index:02d} {caption}", augmented[index:index + 1], step=epoch + 1,
                                     description=f"class {caption}; ops at strength {strength:.2f}: {ops_taken}")
            tf.summary.scalar("augmentation_strength", strength, step=epoch + 1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
