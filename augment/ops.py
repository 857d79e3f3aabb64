"""Pure, batched, deterministic augmentation ops.

Every op takes images `(B, H, W, C)` (float32 in [0, 1], except `to_float`)
plus per-image parameters that were sampled elsewhere, and returns the same
result every time it is called with them. There is no randomness here except
`gaussian_noise`, whose noise is a deterministic function of an explicit
seed, so it is deterministic too. Random numbers come from `augment.rng`
(re-exported here), the colour ops from `augment.colour`.

Geometric ops do not touch pixels: they build 3x3 matrices, one per image.
The matrices map *output* pixel coordinates `(x, y, 1)` to *input*
coordinates, the convention of `ImageProjectiveTransformV3`. `compose` chains
them and `apply_affine` warps the whole batch with a single
`ImageProjectiveTransformV3` call. Builders that act about the image center
take `height, width`; `None` for both builds the map about the origin, and
`about_center` centers a composed product of such maps once.

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

import tensorflow as tf

# The random numbers (rng) and the colour ops (colour) have modules of their own; ops names them all.
from augpipe.augment.colour import *  # noqa: F401,F403
from augpipe.augment.colour import _per_image, static_or_dynamic
from augpipe.augment.rng import (  # noqa: F401
    NOISE_BANK_SIZE,
    STREAM_MIX,
    STREAM_POLICY,
    Stream,
    fold_in,
    keyed_seed,
    random_bits,
    split_seed,
    standard_normal_noise,
    tracing_under_xla,
    uniform,
)

def to_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 `[0, 255]` -> float32 `[0, 1]`; float input is taken as `[0, 1]`."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def apply_where(
    images: tf.Tensor,
    mask: tf.Tensor,
    fn,
    *params,
    identity_safe: bool = False,
    subset_below: float = 0.5,
):
    """Applies `fn(images[mask], *params[mask])` and leaves the rest untouched.

    Per-image gating without computing every branch for every image: when
    fewer than `subset_below` of the images are selected, only those are
    gathered, computed and scattered back (an empty selection computes
    nothing). When more are selected, gather + scatter would cost more than
    the waste, so `fn` runs on the whole batch (`apply_everywhere`).
    `identity_safe=True` says `fn` already leaves unselected images exactly
    as they were (identity parameters), which saves the `tf.where`.

    The shapes inside depend on the data (how many images were selected):
    the static-shape path (`Augment(shapes="static")`, used under XLA) calls
    `apply_everywhere` instead.
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
        return apply_everywhere(images, mask, fn, *params, identity_safe=identity_safe)

    # One branch op per call: an empty selection goes through `subset`,
    # where gathering and scattering nothing costs next to nothing.
    below = tf.cast(count, tf.float32) < subset_below * tf.cast(batch, tf.float32)
    return tf.cond(below, subset, whole)


def apply_everywhere(images: tf.Tensor, mask: tf.Tensor, fn, *params, identity_safe: bool = False):
    """`fn` on the whole batch; images where `mask` is False keep their input values.

    Static shapes only, so XLA compiles it. With `identity_safe=True`, `fn`
    leaves unselected images as they were by itself (identity parameters)
    and no `tf.where` is needed.

    >>> images = tf.zeros((3, 2, 2, 1))
    >>> out = apply_everywhere(images, tf.constant([True, False, True]), lambda x: x + 1.0)
    >>> out[:, 0, 0, 0].numpy().tolist()
    [1.0, 0.0, 1.0]
    """
    result = tf.cast(fn(images, *params), images.dtype)
    if identity_safe:
        return result
    return tf.where(tf.reshape(mask, [-1, 1, 1, 1]), result, images)


# --------------------------------------------------------------------------
# Geometric: 3x3 matrices (output coords -> input coords), applied in one warp


def _center(height, width):
    if isinstance(height, int) and isinstance(width, int):
        return (width - 1.0) / 2.0, (height - 1.0) / 2.0
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
    """The matrix of `p_in = L (p_out - c) + c` for a 2x2 map L = [[a, b], [d, e]].

    `height = width = None` puts `c` at the origin: maps built that way can be
    composed and then centered once with `about_center`.
    """
    if height is None and width is None:
        zeros = tf.zeros_like(linear_a)
        return _stack_matrices(linear_a, linear_b, zeros, linear_d, linear_e, zeros)
    cx, cy = _center(height, width)
    offset_x = cx - linear_a * cx - linear_b * cy
    offset_y = cy - linear_d * cx - linear_e * cy
    return _stack_matrices(linear_a, linear_b, offset_x, linear_d, linear_e, offset_y)


def about_center(matrices, height, width) -> tf.Tensor:
    """`C M C^-1`, where `C` moves the origin to the image center.

    Maps built about the origin (`height = width = None`) and composed become
    the same maps about the center, for one centering instead of one per
    map; translations are unchanged by it.
    """
    cx, cy = _center(height, width)
    m = tf.reshape(tf.cast(matrices, tf.float32), (-1, 9))
    shift = tf.stack(
        [
            cx - m[:, 0] * cx - m[:, 1] * cy,
            cy - m[:, 3] * cx - m[:, 4] * cy,
        ],
        axis=1,
    )
    # Only the offsets (entries 2 and 5) change.
    update = tf.pad(shift[:, :, None], [[0, 0], [0, 0], [2, 0]])
    return tf.reshape(m, (-1, 3, 3)) + tf.pad(update, [[0, 0], [0, 1], [0, 0]])


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


def crop_matrix(scales_x, scales_y, offsets_x, offsets_y) -> tf.Tensor:
    """Maps the output onto a crop of relative size `scales` whose center is `offsets` pixels from the image's.

    Built about the origin: center it with `about_center`. Resampling the
    crop to the whole output is a random resized crop.
    """
    scales_x = tf.cast(scales_x, tf.float32)
    zeros = tf.zeros_like(scales_x)
    return _stack_matrices(scales_x, zeros, tf.cast(offsets_x, tf.float32), zeros, tf.cast(scales_y, tf.float32),
                           tf.cast(offsets_y, tf.float32))


def compose(*matrices) -> tf.Tensor:
    """Chains inverse maps: the first matrix is the last transform applied to content."""
    result = matrices[0]
    for matrix in matrices[1:]:
        # A broadcast multiply and a sum: for (B, 3, 3) blocks this costs a
        # fraction of a batched matmul call.
        result = tf.reduce_sum(result[:, :, :, None] * matrix[:, None, :, :], axis=2)
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


def _pixel_grid(height, width) -> tf.Tensor:
    """`(3, H W)`: every output pixel's `x`, `y` and 1, a constant for static sizes."""
    if isinstance(height, int) and isinstance(width, int):
        with tf.init_scope():
            return tf.constant(_pixel_grid_values(height, width).numpy())
    return _pixel_grid_values(height, width)


def _pixel_grid_values(height, width) -> tf.Tensor:
    grid_y, grid_x = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    grid_x = tf.reshape(grid_x, (1, -1))
    grid_y = tf.reshape(grid_y, (1, -1))
    return tf.concat([grid_x, grid_y, tf.ones_like(grid_x)], axis=0)


def apply_affine_static(images, matrices) -> tf.Tensor:
    """`apply_affine` with static shapes only: four gathers instead of `ImageProjectiveTransformV3`.

    `ImageProjectiveTransformV3` has no XLA kernel; this compiles under XLA
    and gives the same image (bilinear, zero outside) to within float
    rounding.

    >>> images = tf.random.stateless_uniform((2, 8, 8, 1), seed=(1, 2))
    >>> matrices = rotation_matrix(tf.constant([0.3, -0.1]), 8, 8)
    >>> bool(tf.reduce_max(tf.abs(apply_affine_static(images, matrices) - apply_affine(images, matrices))) < 1e-4)
    True
    """
    height = static_or_dynamic(images, 1)
    width = static_or_dynamic(images, 2)
    m = tf.reshape(tf.cast(matrices, tf.float32), (-1, 9))
    m = m / m[:, 8:9]
    batch = tf.shape(m)[0]
    # Rows: every image's (d, e, f), then every image's (a, b, c): y and x
    # coordinates of every pixel from one matmul.
    coefficients = tf.concat([m[:, 3:6], m[:, 0:3]], axis=0)
    coordinates = tf.reshape(tf.matmul(coefficients, _pixel_grid(height, width)), (2, batch, height, width))
    return bilinear_sample(images, coordinates[0], coordinates[1])


# --------------------------------------------------------------------------
# Elastic distortion


def _upsample_weights(size_out, size_in) -> tf.Tensor:
    """`(size_out, size_in)` smoothstep weights that interpolate a coarse grid.

    Smoothstep makes the field continuous with a continuous slope, like a
    Gaussian-filtered noise field.
    """
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


def _elastic_basis(height, width, grid_height, grid_width) -> tf.Tensor:
    """`(2 gh gw + 3, H W)`: the coarse grid's interpolation weights (twice:
    for the x and the y displacement), then the output pixels' `x`, `y` and
    ones. Per-image coefficients times this give sampling coordinates in one
    matmul (`elastic_coordinates`).

    Static (int) sizes are computed once, eagerly, and enter the graph as a
    constant; dynamic ones are computed in the graph.
    """
    sizes = (height, width, grid_height, grid_width)
    if all(isinstance(size, int) for size in sizes):
        with tf.init_scope():
            return tf.constant(_elastic_basis_values(*sizes).numpy())
    return _elastic_basis_values(*sizes)


def _elastic_basis_values(height, width, grid_height, grid_width) -> tf.Tensor:
    rows = _upsample_weights(height, grid_height)
    cols = _upsample_weights(width, grid_width)
    weights = tf.reshape(tf.einsum("yi,xj->ijyx", rows, cols), (grid_height * grid_width, height * width))
    return tf.concat([weights, weights, _pixel_grid_values(height, width)], axis=0)


def elastic_coordinates(coarse_noise, alphas, height, width, matrices=None):
    """Input coordinates `(y, x)`, each `(B, H, W)`, of an elastic distortion.

    Output pixel `p` reads the input at `M (p + d(p))`, where `d` is a smooth
    displacement field and `M` an optional affine map `(B, 3, 3)` (output ->
    input, as in `apply_affine`; the identity when None). `coarse_noise`
    `(B, gh, gw, 2)` in [-1, 1] holds `(dy, dx)` on a coarse grid; smoothstep
    interpolation makes the field continuous with a continuous slope, like
    Gaussian-filtered dense noise, and `alphas` `(B,)` scales it to pixels.
    Both coordinates come out of one `(2B, 2 gh gw + 3) x (2 gh gw + 3, H W)`
    matmul.
    """
    coarse_noise = tf.cast(coarse_noise, tf.float32)
    grid_height = static_or_dynamic(coarse_noise, 1)
    grid_width = static_or_dynamic(coarse_noise, 2)
    batch = tf.shape(coarse_noise)[0]
    alphas = tf.cast(alphas, tf.float32)[:, None]
    cells = grid_height * grid_width
    noise_y, noise_x = (tf.reshape(n, (batch, cells)) * alphas for n in tf.unstack(coarse_noise, num=2, axis=-1))
    if matrices is None:
        matrices = identity_matrix(batch)
    # x_in = a (x + dx) + b (y + dy) + c and y_in = d (x + dx) + e (y + dy) + f.
    a, b, c, d, e, f, _, _, _ = tf.split(tf.reshape(tf.cast(matrices, tf.float32), (-1, 9)), 9, axis=1)
    # Rows: every image's y, then every image's x, so that the two halves of
    # the result are contiguous (taking them apart copies nothing).
    coefficients = tf.concat(
        [
            tf.concat([d * noise_x, e * noise_y, d, e, f], axis=1),
            tf.concat([a * noise_x, b * noise_y, a, b, c], axis=1),
        ],
        axis=0,
    )
    basis = _elastic_basis(height, width, grid_height, grid_width)
    coordinates = tf.reshape(tf.matmul(coefficients, basis), (2, batch, height, width))
    return coordinates[0], coordinates[1]


def bilinear_sample(images, coordinates_y, coordinates_x) -> tf.Tensor:
    """Samples `images` at per-pixel `(y, x)` coordinates `(B, H, W)`, zero outside.

    The image is zero-padded (one pixel before, two after) and coordinates
    are clipped to `[-1, size]`, so every read is in bounds and reads outside
    the image give 0: no masks are needed, only four gathers. This is what
    `ImageProjectiveTransformV3` computes (bilinear, constant fill 0).
    """
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    padded = tf.pad(images, [[0, 0], [1, 2], [1, 2], [0, 0]])
    single_channel = images.shape[-1] == 1
    # One channel: gather scalars from a 1-D tensor, the fastest gather.
    flat = tf.reshape(padded, [-1]) if single_channel else tf.reshape(padded, (-1, channels))
    y = tf.clip_by_value(coordinates_y, -1.0, tf.cast(height, tf.float32))
    x = tf.clip_by_value(coordinates_x, -1.0, tf.cast(width, tf.float32))
    y0 = tf.floor(y)
    x0 = tf.floor(x)
    weight_y = y - y0
    weight_x = x - x0
    if not single_channel:
        weight_y = weight_y[..., None]
        weight_x = weight_x[..., None]
    row = width + 3
    # Flat index of the top-left neighbour in the padded batch.
    offsets = tf.range(batch)[:, None, None] * ((height + 3) * row) + (row + 1)
    top_left = tf.cast(y0, tf.int32) * row + tf.cast(x0, tf.int32) + offsets
    a = tf.gather(flat, top_left)
    b = tf.gather(flat, top_left + 1)
    c = tf.gather(flat, top_left + row)
    d = tf.gather(flat, top_left + row + 1)
    top = a + (b - a) * weight_x
    bottom = c + (d - c) * weight_x
    result = top + (bottom - top) * weight_y
    return result[..., None] if single_channel else result


def elastic(images, coarse_noise, alphas, matrices=None) -> tf.Tensor:
    """Elastic distortion: displaces every pixel by a smooth random field.

    With `matrices` `(B, 3, 3)`, the affine warp they describe is applied in
    the same resampling: one interpolation instead of two, and no separate
    warp for these images. See `elastic_coordinates` for the field.
    """
    height = static_or_dynamic(images, 1)
    width = static_or_dynamic(images, 2)
    coordinates_y, coordinates_x = elastic_coordinates(coarse_noise, alphas, height, width, matrices)
    return bilinear_sample(images, coordinates_y, coordinates_x)


# --------------------------------------------------------------------------
# Photometric (float32 [0, 1] in and out)



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
    """Adds N(0, stddev^2) noise, a deterministic function of `seed` `(2,)`."""
    return add_noise(images, standard_normal_noise(tf.shape(images), seed), stddevs)




def add_noise(images, noise, stddevs) -> tf.Tensor:
    """Adds `noise` (standard normals, the images' shape) scaled by `stddevs` `(B,)`, clipped to [0, 1]."""
    return tf.clip_by_value(images + noise * _per_image(stddevs), 0.0, 1.0)


def erase(images, boxes, fill_value=0.0) -> tf.Tensor:
    """Sets the pixels in `boxes` `(B, 4)` = `[y0, x0, y1, x1)` (pixels) to `fill_value`.

    `fill_value` is one number for the batch (cutout uses 0).
    """
    shape = tf.shape(images)
    boxes = tf.cast(boxes, tf.float32)
    rows = tf.range(shape[1], dtype=tf.float32)[None, :]
    cols = tf.range(shape[2], dtype=tf.float32)[None, :]
    row_out = tf.cast((rows < boxes[:, 0:1]) | (rows >= boxes[:, 2:3]), images.dtype)
    col_out = tf.cast((cols < boxes[:, 1:2]) | (cols >= boxes[:, 3:4]), images.dtype)
    # 1 outside the box, 0 inside: the larger of the row and the column
    # mask, one broadcast op; erasing is then one multiply.
    keep = tf.maximum(row_out[:, :, None, None], col_out[:, None, :, None])
    erased = images * keep
    if isinstance(fill_value, (int, float)) and fill_value == 0:
        return erased
    return erased + tf.cast(fill_value, images.dtype) * (1.0 - keep)


