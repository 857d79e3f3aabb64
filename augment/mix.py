"""MixUp and CutMix: batch ops on `(images, labels)` for the input pipeline."""

from __future__ import annotations

import tensorflow as tf

from augpipe.augment import ops, rng
from augpipe.validation import check_int, check_nonnegative, check_unit


def sample_beta(alpha, seed, shape=()) -> tf.Tensor:
    """Beta(alpha, alpha) draws, as X / (X + Y) with X, Y ~ Gamma(alpha)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    first = tf.random.stateless_gamma(shape, seed=seeds[0], alpha=alpha)
    second = tf.random.stateless_gamma(shape, seed=seeds[1], alpha=alpha)
    return first / (first + second)


class MixUpCutMix:
    """MixUp or CutMix on a batch, mixing images and labels together.

    Once per batch, with probability `prob` (a variable that callbacks can
    assign), the batch is mixed with its own reverse: CutMix with probability
    `switch_prob` when both are enabled, otherwise MixUp. The mixing weight
    `lam` is a Beta(alpha, alpha) draw made from two Gamma draws. For CutMix,
    `lam` is corrected to the area that was actually pasted after clipping
    the box to the image.

    Labels may be int class ids (they are one-hot encoded), or one-hot or
    soft float labels `(B, num_classes)`. The output labels are float32 soft
    labels that sum to 1, with `label_smoothing` applied. uint8 images stay
    uint8 (rounded), so batches still cross to the device at a quarter of the
    float32 size.

    Set `uses_labels = True` tells `pipelines.build_pipeline` to pass labels.

    Args:
        num_classes: number of classes.
        mixup_alpha: Beta parameter for MixUp; 0 disables MixUp.
        cutmix_alpha: Beta parameter for CutMix; 0 disables CutMix.
        prob: probability that a batch is mixed at all.
        switch_prob: probability of CutMix when both are enabled.
        label_smoothing: smoothing applied to the one-hot labels.
        seed: an int seed (0 if None).

    Example:

    >>> import numpy as np
    >>> mix = MixUpCutMix(num_classes=10, seed=0)
    >>> images, labels = mix(np.zeros((4, 28, 28, 1), np.uint8), np.arange(4))
    >>> labels.shape
    TensorShape([4, 10])
    """

    uses_labels = True

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.2,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
        seed=None,
    ):
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.mixup_alpha = check_nonnegative("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = check_nonnegative("cutmix_alpha", cutmix_alpha)
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError(
                "Received: mixup_alpha=0 and cutmix_alpha=0. Expected at least one > 0; "
                "to turn mixing off, leave MixUpCutMix out of the pipeline or set prob=0."
            )
        self.switch_prob = check_unit("switch_prob", switch_prob)
        self.label_smoothing = check_unit("label_smoothing", label_smoothing)
        self.seed = 0 if seed is None else int(seed)
        self.prob = tf.Variable(check_unit("prob", prob), trainable=False, dtype=tf.float32, name="mix_prob")
        self.rng_state = tf.Variable([0, 0, 0], dtype=tf.int64, trainable=False, name="mix_rng_state")

    def _next_seed(self):
        # The mix stream's own id: an Augment layer with the same seed and counter draws differently.
        return rng.counter_seed(self.seed, rng.Stream.MIX, self.rng_state)

    def sample(self, height, width, seed) -> dict:
        """Draws one batch's decisions: whether to mix, which mode, lam and the box."""
        seeds = tf.random.experimental.stateless_split(seed, 6)
        draw = lambda i: tf.random.stateless_uniform([], seed=seeds[i])  # noqa: E731
        apply = draw(0) < self.prob
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = draw(1) < self.switch_prob
        else:
            use_cutmix = tf.constant(self.cutmix_alpha > 0)
        lam_mixup = sample_beta(self.mixup_alpha, seeds[2]) if self.mixup_alpha > 0 else tf.constant(1.0)
        lam_cutmix = sample_beta(self.cutmix_alpha, seeds[3]) if self.cutmix_alpha > 0 else tf.constant(1.0)
        h = tf.cast(height, tf.float32)
        w = tf.cast(width, tf.float32)
        ratio = tf.sqrt(1.0 - lam_cutmix)
        center_y = draw(4) * h
        center_x = draw(5) * w
        top = tf.clip_by_value(tf.round(center_y - ratio * h / 2), 0.0, h)
        bottom = tf.clip_by_value(tf.round(center_y + ratio * h / 2), 0.0, h)
        left = tf.clip_by_value(tf.round(center_x - ratio * w / 2), 0.0, w)
        right = tf.clip_by_value(tf.round(center_x + ratio * w / 2), 0.0, w)
        lam_cut_corrected = 1.0 - (bottom - top) * (right - left) / (h * w)
        lam = tf.where(use_cutmix, lam_cut_corrected, lam_mixup)
        return {
            "apply": apply,
            "use_cutmix": use_cutmix,
            "lam": tf.where(apply, lam, 1.0),
            "box": tf.stack([top, left, bottom, right]),
        }

    def soft_labels(self, labels) -> tf.Tensor:
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 1:
            labels = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=tf.float32)
        elif labels.shape.rank == 2:
            labels = tf.cast(labels, tf.float32)
        else:
            raise ValueError(
                f"MixUpCutMix expects int labels (B,) or one-hot/soft labels (B, {self.num_classes}). "
                f"Received shape {tuple(labels.shape)}."
            )
        if self.label_smoothing:
            labels = labels * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return labels

    def apply(self, images, labels, params):
        """Mixes images and labels with already-sampled `params` (deterministic)."""
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4:
            raise ValueError(
                f"MixUpCutMix expects images (B, H, W, C). Received shape {tuple(images.shape)}."
            )
        labels = self.soft_labels(labels)
        as_float = tf.cast(images, tf.float32)
        partner_images = tf.reverse(as_float, axis=[0])
        partner_labels = tf.reverse(labels, axis=[0])
        lam = params["lam"]
        shape = tf.shape(images)
        rows = tf.range(shape[1], dtype=tf.float32)[:, None]
        cols = tf.range(shape[2], dtype=tf.float32)[None, :]
        top, left, bottom, right = tf.unstack(params["box"])
        inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
        cut = tf.where(inside[None, :, :, None], partner_images, as_float)
        blended = lam * as_float + (1.0 - lam) * partner_images
        mixed = tf.where(params["use_cutmix"], cut, blended)
        mixed = tf.where(params["apply"], mixed, as_float)
        if images.dtype == tf.uint8:
            mixed = tf.cast(tf.clip_by_value(tf.round(mixed), 0.0, 255.0), tf.uint8)
        else:
            mixed = tf.cast(mixed, images.dtype)
        return mixed, lam * labels + (1.0 - lam) * partner_labels

    def __call__(self, images, labels):
        images = tf.convert_to_tensor(images)
        shape = tf.shape(images)
        params = self.sample(shape[1], shape[2], self._next_seed())
        return self.apply(images, labels, params)

    def keyed_batch(self, images, labels, key):
        """Inside `build_pipeline`: the batch's draws keyed by `key = (epoch, batch index)`, not a counter."""
        images = tf.convert_to_tensor(images)
        shape = tf.shape(images)
        params = self.sample(shape[1], shape[2], rng.keyed_seed(self.seed, rng.Stream.MIX, key))
        return self.apply(images, labels, params)
