"""Colour ops: PIL's reference implementations (ImageEnhance, ImageOps) as batched tensor functions.

Like every op in `ops` (which re-exports these), each takes images `(B, H, W,
C)` float32 in [0, 1] and per-image parameters, and is deterministic.

Example:

>>> import tensorflow as tf
>>> images = tf.fill((2, 4, 4, 3), 0.25)
>>> [round(float(v), 3) for v in solarize(images, tf.constant([20.0, 200.0]))[:, 0, 0, 0]]
[0.75, 0.25]
"""

from __future__ import annotations

import tensorflow as tf


def static_or_dynamic(tensor, axis):
    """The size of `axis`: a Python int when the shape says it, else a tensor."""
    static = tensor.shape[axis]
    return int(static) if static is not None else tf.shape(tensor)[axis]


def _per_image(values):
    return tf.reshape(tf.cast(values, tf.float32), (-1, 1, 1, 1))


# --------------------------------------------------------------------------
# Colour (float32 [0, 1] in and out; gray images have one channel, colour
# images three). The PIL counterparts that the papers' code uses are named in
# each docstring; tests/augment/test_colour_ops.py compares with them.
# Factor ops are written `x + (f - 1) (x - degenerate)`, which is PIL's
# `blend(degenerate, x, f)` and is the exact input at `f = 1`.

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def luminance(images) -> tf.Tensor:
    """`(B, H, W, 1)`: the gray level of each pixel (the image itself when it has one channel)."""
    if images.shape[-1] == 1:
        return images
    return tf.reduce_sum(images * tf.constant(_LUMA, images.dtype), axis=-1, keepdims=True)


def _blend_toward(images, degenerate, factors) -> tf.Tensor:
    return tf.clip_by_value(images + (_per_image(factors) - 1.0) * (images - degenerate), 0.0, 1.0)


def brightness_factor(images, factors) -> tf.Tensor:
    """Scales every pixel by `factors` `(B,)` (PIL `ImageEnhance.Brightness`)."""
    return tf.clip_by_value(images * _per_image(factors), 0.0, 1.0)


def color(images, factors) -> tf.Tensor:
    """Saturation: 0 is gray, 1 the input, 2 twice as colourful (PIL `ImageEnhance.Color`)."""
    return _blend_toward(images, luminance(images), factors)


def contrast_factor(images, factors) -> tf.Tensor:
    """Contrast about the mean gray level: 0 is a flat gray image (PIL `ImageEnhance.Contrast`)."""
    mean = tf.reduce_mean(luminance(images), axis=[1, 2, 3], keepdims=True)
    return _blend_toward(images, mean, factors)


def _smooth(images) -> tf.Tensor:
    """PIL's `ImageFilter.SMOOTH` (3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13); border pixels unchanged."""
    height, width = static_or_dynamic(images, 1), static_or_dynamic(images, 2)
    # The 3x3 sum from nine shifted views of the zero-padded image (wrong
    # only on the border, which keeps its pixels), plus 4 x the center.
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    total = 4.0 * images
    for dy in range(3):
        for dx in range(3):
            total += padded[:, dy : dy + height, dx : dx + width, :]
    inner = total / 13.0
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return tf.where(interior[None, :, :, None], inner, images)


def sharpness(images, factors) -> tf.Tensor:
    """0 is the smoothed image, 1 the input, 2 sharper (PIL `ImageEnhance.Sharpness`)."""
    return _blend_toward(images, _smooth(images), factors)


def autocontrast(images) -> tf.Tensor:
    """Stretches each channel of each image to the full range (PIL `ImageOps.autocontrast`).

    A channel with one value is left as it is.
    """
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    spread = high - low
    stretched = (images - low) / tf.where(spread > 0, spread, 1.0)
    return tf.where(spread > 0, stretched, images)


def _levels(images) -> tf.Tensor:
    """Grey levels 0-255 as int32."""
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.int32)


def equalize(images) -> tf.Tensor:
    """Histogram equalization of each channel of each image, PIL's integer rule (PIL `ImageOps.equalize`).

    All histograms of the batch come from one segment sum and all lookups
    from one gather; static shapes only.
    """
    shape = tf.shape(images)
    batch, channels = shape[0], shape[3]
    levels = _levels(images)
    # One histogram per (image, channel): segment id (b * C + c) * 256 + level.
    planes = tf.reshape(tf.range(batch * channels), (batch, 1, 1, channels))
    ids = planes * 256 + levels
    count = batch * channels
    histogram = tf.reshape(
        tf.math.unsorted_segment_sum(tf.ones_like(ids, tf.int32), ids, count * 256), (count, 256))
    total = tf.reduce_sum(histogram, axis=1, keepdims=True)
    # PIL: step = (pixels - count of the highest level present) // 255.
    last = tf.reduce_max(tf.where(histogram > 0, tf.range(256)[None, :], -1), axis=1)
    last_count = tf.gather(histogram, tf.maximum(last, 0), batch_dims=1)[:, None]
    step = (total - last_count) // 255
    before = tf.cumsum(histogram, axis=1, exclusive=True)
    lut = tf.minimum((step // 2 + before) // tf.maximum(step, 1), 255)
    lut = tf.where(step > 0, lut, tf.range(256)[None, :])  # one level, or too few pixels: unchanged
    out = tf.gather(tf.reshape(lut, [-1]), ids)
    return tf.cast(out, tf.float32) / 255.0


def solarize(images, thresholds) -> tf.Tensor:
    """Inverts every pixel at or above `thresholds` `(B,)` grey levels (0-256; 256 changes nothing; PIL `ImageOps.solarize`)."""
    above = images * 255.0 >= _per_image(thresholds) - 0.5
    return tf.where(above, 1.0 - images, images)


def solarize_add(images, additions, threshold=128.0) -> tf.Tensor:
    """Adds `additions` `(B,)` grey levels to pixels below `threshold` levels (the RandAugment paper's op)."""
    below = images * 255.0 < threshold - 0.5
    return tf.where(below, tf.minimum(images + _per_image(additions) / 255.0, 1.0), images)


def posterize(images, bits) -> tf.Tensor:
    """Keeps the top `bits` `(B,)` bits (1-8) of each grey level (PIL `ImageOps.posterize`)."""
    step = tf.pow(2.0, 8.0 - tf.cast(bits, tf.float32))
    levels = tf.cast(_levels(images), tf.float32)
    return tf.floor(levels / _per_image(step)) * _per_image(step) / 255.0


def grayscale(images) -> tf.Tensor:
    """The gray level in every channel (PIL `convert("L").convert("RGB")`); gray images are unchanged."""
    return tf.broadcast_to(luminance(images), tf.shape(images))


def hue(images, deltas) -> tf.Tensor:
    """Rotates the hue by `deltas` `(B,)` turns (as `tf.image.adjust_hue`); gray images are unchanged."""
    if images.shape[-1] == 1:
        return images
    hsv = tf.image.rgb_to_hsv(images)
    h, s, v = tf.unstack(hsv, num=3, axis=-1)
    h = tf.math.floormod(h + tf.cast(deltas, tf.float32)[:, None, None], 1.0)
    return tf.clip_by_value(tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1)), 0.0, 1.0)
