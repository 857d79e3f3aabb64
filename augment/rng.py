"""augpipe's random numbers: one named stream per consumer, the same draws under XLA and off it.

Every random draw in augpipe is a pure function of a `(2,)` int64 seed. The
seeds come from two places:

- keyed seeds, `keyed_seed(seed, stream, (epoch, batch index))`, for draws
  made in tf.data (host placement, MixUp/CutMix, the augmentation images),
  so parallel calls and resumes draw alike;
- counter seeds, `counter_seed(seed, stream, variable)`, for draws made in
  the training step (device placement), from a counter kept in the weights
  (`RngReadAndSkip`), so a checkpoint restores it.

Each consumer has its own `Stream` id, so two consumers with the same seed
never share a draw. Inside a draw, `split_seed` and `fold_in` derive the
seeds of its parts (an op, a chain, the noise).
"""

from __future__ import annotations

import enum
import functools

import numpy as np
import tensorflow as tf


class Stream(enum.IntEnum):
    """The random streams, one per consumer of randomness."""

    POLICY = 1  # the Augment layer's policy draws (device, host, preview, augmentation images)
    MIX = 2  # MixUpCutMix's decisions, lam and boxes


# Earlier names of the stream ids.
STREAM_POLICY = Stream.POLICY
STREAM_MIX = Stream.MIX


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


# TensorFlow's own `stateless_fold_in` outside XLA: the seed is scrambled by one
# Philox block under this fixed key into a key and a counter (its CPU kernels'
# `GetKeyCounterFromSeed`), then one 64-bit draw becomes the new seed's first word.
_SCRAMBLE_KEY = 0x02461E293EC8F720


def tf_fold_in(seed, data) -> tf.Tensor:
    """`tf.random.experimental.stateless_fold_in(seed, data)` as its ordinary kernels draw it, also under XLA.

    augpipe's keyed seeds were defined with TensorFlow's fold-in, which XLA
    computes differently for large seeds; this gives the same numbers as
    the ordinary kernels everywhere, so a run keeps its draws whether XLA
    compiles its step or not.

    >>> seed = tf.constant([123456789, -7], tf.int64)
    >>> three = tf.constant(3, tf.int64)
    >>> bool(tf.reduce_all(tf_fold_in(seed, three) == tf.random.experimental.stateless_fold_in(seed, three)))
    True
    """
    seed = tf.cast(seed, tf.int64)
    scrambled = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[2], key=tf.constant([_SCRAMBLE_KEY], tf.uint64), counter=tf.bitcast(seed, tf.uint64),
        alg=_PHILOX, dtype=tf.uint64)
    return tf.stack([random_bits([], tf.bitcast(scrambled, tf.int64), tf.int64), tf.cast(data, tf.int64)])


def keyed_seed(seed: int, stream: int, key) -> tf.Tensor:
    """A `(2,)` stateless seed from `(seed, stream, epoch, batch index)`; `key` is `(epoch, batch index)`.

    The draw a batch gets depends on which batch it is, never on which
    thread of a parallel `map` happened to run first.

    >>> a = keyed_seed(0, Stream.POLICY, tf.constant([3, 7], tf.int64))
    >>> b = keyed_seed(0, Stream.MIX, tf.constant([3, 7], tf.int64))
    >>> bool(tf.reduce_all(a == b))
    False
    """
    key = tf.cast(key, tf.int64)
    return tf_fold_in(tf_fold_in(tf.constant([int(seed), int(stream)], tf.int64), key[0]), key[1])


def read_and_skip(variable) -> tf.Tensor:
    """The counter of an `RngReadAndSkip` state variable `(3,)` int64, advanced by one, atomically."""
    handle = variable.value.handle if hasattr(variable, "value") and hasattr(variable.value, "handle") \
        else variable.handle  # a Keras variable wraps a tf.Variable
    return tf.raw_ops.RngReadAndSkip(resource=handle, alg=_PHILOX, delta=tf.constant(1, tf.uint64))[0]


def counter_seed(seed: int, stream: int, variable) -> tf.Tensor:
    """The next seed of a consumer that keeps its counter in `variable` (the layer's device draws, MixUp's).

    `Stream.POLICY` (the `Augment` layer) is `[seed, counter]`, as the layer
    always drew; other streams fold the counter into `[seed, stream]`.
    """
    counter = read_and_skip(variable)
    if stream == Stream.POLICY:
        return tf.stack([tf.constant(int(seed), tf.int64), counter])
    return tf_fold_in(tf.constant([int(seed), int(stream)], tf.int64), counter)


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
