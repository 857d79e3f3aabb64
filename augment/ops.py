"""Pure, batched, deterministic augmentation ops.

Every op takes images `(B, H, W, C)` (float32 in [0, 1], except `to_float`)
plus per-image parameters that were sampled elsewhere, and returns the same
result every time it is called with them. There is no randomness here except
`gaussian_noise`, whose noise is a deterministic function of an explicit
seed, so it is deterministic too.

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

import functools

import numpy as np
import tensorflow as tf


# Random streams: each consumer of randomness folds its own id into its seeds, so two
# consumers with the same seed (an Augment layer and a MixUpCutMix) never share a draw.
STREAM_POLICY = 1
STREAM_MIX = 2


# --------------------------------------------------------------------------
# Random numbers that XLA and the ordinary kernels draw alike
#
# `tf.random.stateless_uniform`, `stateless_split` and `stateless_fold_in`
# give other numbers under XLA than outside it from the same seed (XLA
# derives the Philox key from the seed another way, and converts bits to
# floats another way; measured on TensorFlow 2.21's CPU kernels). The raw
# Philox bits of `StatelessRandomUniformFullIntV2` for a given key and
# counter are the same on both, so augpipe's draws are built from those
# bits: a model compiled with XLA augments exactly like one that is not.

_PHILOX = 1  # the `alg` id of Philox in TensorFlow's random ops
_FOLD_IN_KEY = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64: keeps fold_in's streams apart from split's


def random_bits(shape, seed, dtype=tf.uint32) -> tf.Tensor:
    """Philox random bits of `shape`, a deterministic function of `seed` `(2,)` int64.

    The key is `seed[0]`; `seed[1]` is the high word of the 128-bit counter,
    so two seeds that differ only in `seed[1]` read streams 2^64 blocks apart.
    """
    seed = tf.cast(seed, tf.int64)
    key = tf.bitcast(seed[:1], tf.uint64)
    counter = tf.concat([tf.zeros([1], tf.uint64), tf.bitcast(seed[1:], tf.uint64)], axis=0)
    return tf.raw_ops.StatelessRandomUniformFullIntV2(shape=shape, key=key, counter=counter, alg=_PHILOX, dtype=dtype)


def uniform(shape, seed, minval=0.0, maxval=1.0) -> tf.Tensor:
    """float32 uniform in `[minval, maxval)` from 24 random bits each, the same under XLA.

    >>> u = uniform([1000], tf.constant([1, 2], tf.int64), -1.0, 1.0)
    >>> bool(tf.reduce_min(u) >= -1.0) and bool(tf.reduce_max(u) < 1.0)
    True
    """
    unit = tf.cast(tf.bitwise.right_shift(random_bits(shape, seed), tf.constant(8, tf.uint32)), tf.float32) * (1.0 / (1 << 24))
    return minval + (maxval - minval) * unit


def split_seed(seed, num: int = 2) -> tf.Tensor:
    """`(num, 2)` new seeds from one, the same under XLA (for `tf.random.experimental.stateless_split`)."""
    return random_bits([num, 2], seed, tf.int64)


def fold_in(seed, data) -> tf.Tensor:
    """A new `(2,)` seed from `seed` and an int, the same under XLA (for `stateless_fold_in`).

    >>> a = fold_in(tf.constant([1, 2], tf.int64), 0)
    >>> b = fold_in(tf.constant([1, 2], tf.int64), 1)
    >>> bool(tf.reduce_all(a == b))
    False
    """
    seed = tf.cast(seed, tf.int64)
    mixed = tf.stack([tf.bitwise.bitwise_xor(seed[0], tf.constant(_FOLD_IN_KEY, tf.int64)),
                      seed[1] + tf.cast(data, tf.int64)])
    return random_bits([2], mixed, tf.int64)


def keyed_seed(seed: int, stream: int, key) -> tf.Tensor:
    """A `(2,)` stateless seed from `(seed, stream, epoch, batch index)`; `key` is `(epoch, batch index)`.

    The draw a batch gets depends on which batch it is, never on which
    thread of a parallel `map` happened to run first.

    >>> a = keyed_seed(0, STREAM_POLICY, tf.constant([3, 7], tf.int64))
    >>> b = keyed_seed(0, STREAM_MIX, tf.constant([3, 7], tf.int64))
    >>> bool(tf.reduce_all(a == b))
    False
    """
    key = tf.cast(key, tf.int64)
    base = tf.constant([int(seed), int(stream)], tf.int64)
    return tf.random.experimental.stateless_fold_in(
        tf.random.experimental.stateless_fold_in(base, key[0]), key[1]
    )


def tracing_under_xla() -> bool:
    """True while tracing inside a function XLA will compile (`tf.function(jit_compile=True)`,
    which Keras uses for `jit_compile=True`).

    TensorFlow marks such a trace with an XLA control-flow context; it has
    no public query for it, so this reads the private one and says False if
    it moved (a test checks that it still answers True under XLA).

    >>> tracing_under_xla()
    False
    """
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow that moved it
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


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


def static_or_dynamic(tensor, axis):
    """The size of `axis`: a Python int when the shape says it, else a tensor."""
    static = tensor.shape[axis]
    return int(static) if static is not None else tf.shape(tensor)[axis]


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


# A fixed bank of standard normals, drawn once with a fixed seed. Reading a
# window of it at a seeded random offset costs a copy; drawing fresh normals
# (Philox + Box-Muller) costs about 20 times more, and on a small image it
# was the most expensive step of the noise op.
NOISE_BANK_SIZE = 1 << 20
_NOISE_ALIGN = 16


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    return np.random.default_rng(0x6E6F697365).standard_normal(NOISE_BANK_SIZE, dtype=np.float32)


def standard_normal_noise(shape, seed) -> tf.Tensor:
    """N(0, 1) noise of `shape`, a deterministic function of `seed` `(2,)`.

    Up to `NOISE_BANK_SIZE / 2` values are a window of a fixed bank of
    normals at an offset drawn from `seed` (every value is an exact standard
    normal draw; windows of different calls overlap, shifted, which an
    augmentation cannot tell apart from fresh noise); larger requests draw
    fresh normals.
    """
    size = tf.reduce_prod(shape)

    def from_bank():
        with tf.init_scope():
            bank = tf.constant(_noise_bank())
        # Offsets are multiples of 16 floats (64 bytes): an aligned slice
        # is a view of the bank, not a copy.
        windows = tf.cast((NOISE_BANK_SIZE - size) // _NOISE_ALIGN + 1, tf.uint32)
        row = tf.cast(tf.math.floormod(random_bits([], seed), windows), tf.int32)
        if tracing_under_xla():
            # XLA's CPU backend copies a dynamic slice one element at a
            # time (about 60 times slower); a gather of 16-float rows reads
            # the same window at memcpy speed.
            rows = tf.reshape(bank, (-1, _NOISE_ALIGN))
            count = (size + _NOISE_ALIGN - 1) // _NOISE_ALIGN
            index = tf.minimum(row + tf.range(count), NOISE_BANK_SIZE // _NOISE_ALIGN - 1)
            return tf.reshape(tf.reshape(tf.gather(rows, index), [-1])[:size], shape)
        return tf.reshape(tf.slice(bank, [_NOISE_ALIGN * row], [size]), shape)

    def fresh():
        # Box-Muller on `uniform`'s draws, the same under XLA.
        u = uniform(tf.concat([[2], tf.reshape(tf.cast(shape, tf.int32), [-1])], axis=0), seed)
        return tf.sqrt(-2.0 * tf.math.log1p(-u[0])) * tf.cos((2.0 * np.pi) * u[1])

    return tf.cond(size <= NOISE_BANK_SIZE // 2, from_bank, fresh)


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
