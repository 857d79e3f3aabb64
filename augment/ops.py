"""Pure, batched, deterministic augmentation ops.

Every op takes images `(B, H, W, C)` (float32 in [0, 1], except `to_float`)
plus per-image parameters that were sampled elsewhere, and returns the same
result every time it is called with them. There is no randomness here except
`gaussian_noise`, which draws from a stateless generator keyed by an explicit
seed, so it is deterministic too.

Geometric ops do not touch pixels: they build 3x3 matrices, one per image.
The matrices map *output* pixel coordinates `(x, y, 1)` to *input*
coordinates, the convention of `ImageProjectiveTransformV3`. `compose` chains
them and `apply_affine` warps the whole batch with a single
`ImageProjectiveTransformV3` call.

Example:

>>> import tensorflow as tf
>>> images = tf.random.stateless_uniform((2, 28, 28, 1), seed=(0, 0))
>>> matrices = compose(
...     rotation_matrix(tf.constant([0.1, -0.2]), 28, 28),
...     translation_matrix(tf.constant([2.0, 0.0]), tf.constant([0.0, 1.0])),
... )
>>> apply_affine(images, matrices).shape
TensorShape([2, 28, 28, 1])
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def to_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 `[0, 255]` -> float32 `[0, 1]`; float input is taken as `[0, 1]`."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def apply_where(images: tf.Tensor, mask: tf.Tensor, fn, *params, identity_safe: bool = False):
    """Applies `fn(images[mask], *params[mask])` and leaves the rest untouched.

    Per-image gating without computing every branch for every image: when
    fewer than half of the images are selected, only those are gathered,
    computed and scattered back (an empty selection computes nothing). When most
    are selected, gather + scatter would cost more than the waste, so `fn`
    runs on the whole batch and the unselected images keep their input
    values (`tf.where`), which bounds the waste to the unselected half.
    `identity_safe=True` says `fn` already leaves unselected images exactly
    as they were (identity parameters), which saves the `tf.where`.
    """
    count = tf.reduce_sum(tf.cast(mask, tf.int32))
    batch = tf.shape(mask)[0]

    def subset():
        index = tf.where(mask)[:, 0]
        selected = tf.gather(images, index)
        selected_params = [tf.gather(p, index) for p in params]
        result = tf.cast(fn(selected, *selected_params), images.dtype)
        return tf.tensor_scatter_nd_update(images, index[:, None], result)

    def whole():
        result = tf.cast(fn(images, *params), images.dtype)
        if identity_safe:
            return result
        return tf.where(tf.reshape(mask, [-1, 1, 1, 1]), result, images)

    # One branch op per call: an empty selection goes through `subset`,
    # where gathering and scattering nothing costs next to nothing.
    return tf.cond(2 * count < batch, subset, whole)


# --------------------------------------------------------------------------
# Geometric: 3x3 matrices (output coords -> input coords), applied in one warp


def _center(height, width):
    return (tf.cast(width, tf.float32) - 1.0) / 2.0, (tf.cast(height, tf.float32) - 1.0) / 2.0


def _stack_matrices(a, b, c, d, e, f):
    """Rows [[a, b, c], [d, e, f], [0, 0, 1]] for per-image vectors a..f."""
    zeros = tf.zeros_like(a)
    ones = tf.ones_like(a)
    rows = tf.stack([a, b, c, d, e, f, zeros, zeros, ones], axis=-1)
    return tf.reshape(rows, (-1, 3, 3))


def identity_matrix(batch_size) -> tf.Tensor:
    return tf.eye(3, batch_shape=[batch_size], dtype=tf.float32)


def _about_center(linear_a, linear_b, linear_d, linear_e, height, width):
    """The matrix of `p_in = L (p_out - c) + c` for a 2x2 map L = [[a, b], [d, e]]."""
    cx, cy = _center(height, width)
    offset_x = cx - linear_a * cx - linear_b * cy
    offset_y = cy - linear_d * cx - linear_e * cy
    return _stack_matrices(linear_a, linear_b, offset_x, linear_d, linear_e, offset_y)


def rotation_matrix(angles, height, width) -> tf.Tensor:
    """Rotates content counter-clockwise by `angles` radians about the center."""
    angles = tf.cast(angles, tf.float32)
    cos, sin = tf.cos(angles), tf.sin(angles)
    # Inverse map of a counter-clockwise rotation in (x right, y down) pixels.
    return _about_center(cos, -sin, sin, cos, height, width)


def scale_matrix(scales_x, scales_y, height, width) -> tf.Tensor:
    """Zooms content by `scales` (> 1 enlarges) about the center."""
    return _about_center(
        1.0 / tf.cast(scales_x, tf.float32),
        tf.zeros_like(tf.cast(scales_x, tf.float32)),
        tf.zeros_like(tf.cast(scales_y, tf.float32)),
        1.0 / tf.cast(scales_y, tf.float32),
        height,
        width,
    )


def shear_matrix(shear_x, shear_y, height, width) -> tf.Tensor:
    """Shears content: `x += shear_x * y` and `y += shear_y * x` about the center."""
    shear_x = tf.cast(shear_x, tf.float32)
    shear_y = tf.cast(shear_y, tf.float32)
    ones = tf.ones_like(shear_x)
    return _about_center(ones, -shear_x, -shear_y, ones, height, width)


def translation_matrix(dx, dy) -> tf.Tensor:
    """Moves content by `(dx, dy)` pixels (right, down)."""
    dx = tf.cast(dx, tf.float32)
    dy = tf.cast(dy, tf.float32)
    ones = tf.ones_like(dx)
    zeros = tf.zeros_like(dx)
    return _stack_matrices(ones, zeros, -dx, zeros, ones, -dy)


def flip_matrix(flip_horizontal, flip_vertical, height, width) -> tf.Tensor:
    """Mirrors content left-right and/or up-down where the bool flags are set."""
    sign_x = tf.where(tf.cast(flip_horizontal, tf.bool), -1.0, 1.0)
    sign_y = tf.where(tf.cast(flip_vertical, tf.bool), -1.0, 1.0)
    zeros = tf.zeros_like(sign_x)
    return _about_center(sign_x, zeros, zeros, sign_y, height, width)


def compose(*matrices) -> tf.Tensor:
    """Chains inverse maps: the first matrix is the last transform applied to content."""
    result = matrices[0]
    for matrix in matrices[1:]:
        result = tf.linalg.matmul(result, matrix)
    return result


def apply_affine(images, matrices, *, fill_value=0.0, interpolation="BILINEAR") -> tf.Tensor:
    """Warps each image by its 3x3 matrix with one `ImageProjectiveTransformV3` call."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    normalized = matrices / matrices[:, 2:3, 2:3]
    transforms = tf.reshape(normalized, (-1, 9))[:, :8]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.stack([height, width]),
        fill_value=tf.cast(fill_value, tf.float32),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )


# --------------------------------------------------------------------------
# Elastic distortion


def _upsample_weights(size_out, size_in) -> tf.Tensor:
    """`(size_out, size_in)` weights that interpolate a coarse grid smoothly.

    Smoothstep weights make the field continuous with a continuous slope,
    like a Gaussian-filtered noise field, for one small matmul. Static sizes
    give a constant, computed once at trace time.
    """
    if isinstance(size_out, int) and isinstance(size_in, int):
        position = np.linspace(0.0, size_in - 1.0, size_out)
        low = np.floor(position)
        frac = position - low
        frac = frac * frac * (3.0 - 2.0 * frac)
        weights = np.zeros((size_out, size_in), np.float32)
        low = low.astype(int)
        weights[np.arange(size_out), low] += 1.0 - frac
        weights[np.arange(size_out), np.minimum(low + 1, size_in - 1)] += frac
        return tf.constant(weights)
    position = tf.linspace(0.0, tf.cast(size_in, tf.float32) - 1.0, size_out)
    low = tf.floor(position)
    frac = position - low
    frac = frac * frac * (3.0 - 2.0 * frac)
    low_index = tf.cast(low, tf.int32)
    high_index = tf.minimum(low_index + 1, size_in - 1)
    return (
        tf.one_hot(low_index, size_in) * (1.0 - frac)[:, None]
        + tf.one_hot(high_index, size_in) * frac[:, None]
    )


def _static_or_dynamic(tensor, axis):
    static = tensor.shape[axis]
    return int(static) if static is not None else tf.shape(tensor)[axis]


def elastic_displacement(coarse_noise, alphas, height, width) -> tf.Tensor:
    """A smooth displacement field `(B, 2, H, W)` in pixels (dy, dx).

    `coarse_noise` is `(B, gh, gw, 2)` in [-1, 1]; it is interpolated with
    smoothstep weights (two small matmuls), which gives the smooth field a
    Gaussian-filtered dense noise gives, at a fraction of the cost. `alphas`
    `(B,)` scales it to pixels.
    """
    rows = _upsample_weights(height, _static_or_dynamic(coarse_noise, 1))
    cols = _upsample_weights(width, _static_or_dynamic(coarse_noise, 2))
    coarse = tf.transpose(coarse_noise, [0, 3, 1, 2])
    field = tf.matmul(tf.matmul(rows, coarse), cols, transpose_b=True)
    return field * tf.cast(alphas, tf.float32)[:, None, None, None]


def bilinear_sample(images, coordinates_y, coordinates_x) -> tf.Tensor:
    """Samples `images` at per-pixel `(y, x)` coordinates `(B, H, W)`, zero outside.

    The image is zero-padded by one pixel and coordinates are clipped to that
    border, so every read is in bounds and reads outside the image give 0:
    no masks are needed, only four gathers.
    """
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    single_channel = images.shape[-1] == 1
    # One channel: gather scalars from a 1-D tensor, the fastest gather.
    flat = tf.reshape(padded, [-1]) if single_channel else tf.reshape(padded, (-1, channels))
    y = tf.clip_by_value(coordinates_y, -1.0, tf.cast(height, tf.float32) - 1e-3)
    x = tf.clip_by_value(coordinates_x, -1.0, tf.cast(width, tf.float32) - 1e-3)
    y0 = tf.floor(y)
    x0 = tf.floor(x)
    weight_y = y - y0
    weight_x = x - x0
    if not single_channel:
        weight_y = weight_y[..., None]
        weight_x = weight_x[..., None]
    row = width + 2
    top_left = (
        tf.range(batch)[:, None, None] * ((height + 2) * row)
        + (tf.cast(y0, tf.int32) + 1) * row
        + tf.cast(x0, tf.int32)
        + 1
    )
    a = tf.gather(flat, top_left)
    b = tf.gather(flat, top_left + 1)
    c = tf.gather(flat, top_left + row)
    d = tf.gather(flat, top_left + row + 1)
    top = a + (b - a) * weight_x
    bottom = c + (d - c) * weight_x
    result = top + (bottom - top) * weight_y
    return result[..., None] if single_channel else result


def elastic(images, coarse_noise, alphas) -> tf.Tensor:
    """Elastic distortion: displaces every pixel by a smooth random field."""
    height = _static_or_dynamic(images, 1)
    width = _static_or_dynamic(images, 2)
    displacement = elastic_displacement(coarse_noise, alphas, height, width)
    grid_y, grid_x = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )
    return bilinear_sample(
        images,
        grid_y[None] + displacement[:, 0],
        grid_x[None] + displacement[:, 1],
    )


# --------------------------------------------------------------------------
# Photometric (float32 [0, 1] in and out)


def _per_image(values):
    return tf.cast(values, tf.float32)[:, None, None, None]


def brightness(images, deltas) -> tf.Tensor:
    """Adds `deltas` `(B,)` to every pixel, clipped to [0, 1]."""
    return tf.clip_by_value(images + _per_image(deltas), 0.0, 1.0)


def contrast(images, factors) -> tf.Tensor:
    """Scales each image's deviation from its mean by `factors` `(B,)`."""
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((images - mean) * _per_image(factors) + mean, 0.0, 1.0)


def gamma(images, gammas) -> tf.Tensor:
    """`images ** gammas` per image (`gammas` > 0)."""
    return tf.pow(tf.maximum(images, 0.0), _per_image(gammas))


def gaussian_noise(images, stddevs, seed) -> tf.Tensor:
    """Adds N(0, stddev^2) noise from a stateless generator keyed by `seed` `(2,)`."""
    noise = tf.random.stateless_normal(tf.shape(images), seed=seed, dtype=tf.float32)
    return tf.clip_by_value(images + noise * _per_image(stddevs), 0.0, 1.0)


def erase(images, boxes, fill_values) -> tf.Tensor:
    """Sets the pixels in `boxes` `(B, 4)` = `[y0, x0, y1, x1)` (pixels) to `fill_values` `(B,)`."""
    shape = tf.shape(images)
    boxes = tf.cast(boxes, tf.float32)
    rows = tf.range(shape[1], dtype=tf.float32)[None, :]
    cols = tf.range(shape[2], dtype=tf.float32)[None, :]
    # Two 1-D masks and one broadcast AND: far fewer passes over the batch
    # than four full-size comparisons.
    row_in = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 2:3])
    col_in = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 3:4])
    inside = row_in[:, :, None] & col_in[:, None, :]
    return tf.where(inside[..., None], _per_image(fill_values), images)
