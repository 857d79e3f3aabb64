"""The tf.data pipeline: (seeded, epoch-keyed) shuffle -> batch -> host augment -> prefetch."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from augpipe.pipelines.splits import Split

AUTOTUNE = tf.data.AUTOTUNE
_EPOCH_ATTRIBUTE = "_augpipe_epoch"


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}."
        )
    return int(batch_size)


def as_batch_fn(fn: Callable) -> Callable:
    """Wraps a host-side batch callable so that it maps `(images, labels)`.

    - A Keras layer is called as `fn(images, training=True)`.
    - An object with `uses_labels = True` (for example `augment.MixUpCutMix`)
      is called as `fn(images, labels)` and returns both.
    - Any other callable is called as `fn(images)`.
    """
    if not callable(fn):
        raise ValueError(
            f"`host_augment` must be a callable or a list of callables. Received: {fn!r}."
        )
    if getattr(fn, "uses_labels", False):
        return fn
    if isinstance(fn, keras.layers.Layer):
        return lambda images, labels: (fn(images, training=True), labels)
    return lambda images, labels: (fn(images), labels)


def epoch_order(num_examples: int, seed: int, epoch) -> tf.Tensor:
    """The example order for `epoch`: a pure function of `(seed, epoch)`."""
    keys = tf.random.stateless_uniform(
        [num_examples], seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)]), dtype=tf.float32
    )
    return tf.argsort(keys, stable=True)


def build_pipeline(
    split: Split,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    host_augment: Optional[Union[Callable, Sequence[Callable]]] = None,
    one_hot: bool = False,
    initial_epoch: int = 0,
    drop_remainder: bool = False,
    deterministic: bool = True,
    host_parallel_calls: Optional[int] = None,
    shard: Optional[tuple] = None,
    epoch_variable: Optional[tf.Variable] = None,
    epoch_examples: Optional[int] = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Builds the tf.data pipeline for one split.

    It yields `(images, labels)` batches: uint8 images, and int64 labels (or
    float32 one-hot labels with `one_hot=True`). With `training=True` it
    shuffles, and the order of epoch `k` is a pure function of `(seed, k)`,
    so a resumed run sees the same order as an uninterrupted one. Each
    iteration over the dataset is one epoch; the epoch counter starts at
    `initial_epoch`, and `EpochSync` keeps it equal to Keras' epoch index.

    The data lives in memory as one tensor, and batches are gathered from it
    with one vectorized `gather` per batch, which is the cached source stage.
    Eval pipelines (`training=False`) also `cache()` their finished batches.
    Host-side augmentation runs after `batch`, with parallel calls, then
    everything is prefetched with AUTOTUNE.

    Args:
        split: a `Split` from `make_splits`.
        batch_size: images per batch.
        training: shuffle per epoch and apply `host_augment`.
        seed: seeds the per-epoch order.
        host_augment: a batch callable or a list of them, applied in order to
            training batches (see `as_batch_fn` for the calling convention).
        one_hot: emit float32 one-hot labels (needed with MixUp/CutMix).
        initial_epoch: the epoch the first iteration counts as.
        drop_remainder: drop the last partial batch.
        deterministic: keep element order under parallel host augmentation.
        host_parallel_calls: parallelism of host augmentation (AUTOTUNE).
        shard: `(num_shards, index)`: keep every `num_shards`-th example of
            each epoch's order, starting at `index` (one input pipeline of a
            multi-worker strategy). The shards of an epoch partition it.
        epoch_variable: an int64 variable to use as the epoch counter (made
            here if None), e.g. one shared by the pipelines of several workers.
        epoch_examples: keep only the first N examples of each (sharded)
            epoch, so that replicas of a strategy see equal step counts.
        repeat: run epoch after epoch in one iterator (for `fit` with
            `steps_per_epoch`), each with its own `(seed, epoch)` order.

    Example:

    >>> from augpipe.pipelines import load_source, make_splits
    >>> splits = make_splits(load_source("mnist-embedded"), seed=0)
    >>> ds = build_pipeline(splits.val, batch_size=100, training=False)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(100, 28, 28, 1), (100,)]
    """
    batch_size = _check_batch_size(batch_size)
    if not isinstance(split, Split):
        raise ValueError(
            f"`split` must be a pipelines.Split (from make_splits). Received: {type(split).__name__}."
        )
    if len(split) == 0:
        raise ValueError(f"Split {split.name!r} is empty; there is nothing to iterate.")
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer)) or initial_epoch < 0:
        raise ValueError(f"`initial_epoch` must be an integer >= 0. Received: {initial_epoch!r}.")
    num_shards, shard_index = shard if shard is not None else (1, 0)
    if not (isinstance(num_shards, int) and isinstance(shard_index, int) and 0 <= shard_index < num_shards):
        raise ValueError(f"`shard` must be (num_shards, index) with 0 <= index < num_shards. Received: {shard!r}.")
    functions = []
    if host_augment is not None:
        items = host_augment if isinstance(host_augment, (list, tuple)) else [host_augment]
        functions = [as_batch_fn(fn) for fn in items]

    num_examples = len(split)
    gather = make_gather(split, one_hot)
    shard_size = len(range(shard_index, num_examples, num_shards))

    if training:
        if epoch_variable is None:
            epoch_variable = tf.Variable(int(initial_epoch), dtype=tf.int64, trainable=False, name="pipeline_epoch")

        def one_epoch(_):
            # Read the epoch, then advance it, once per iterator: the order
            # depends on (seed, epoch) only, never on how many epochs ran in
            # this process.
            epoch = epoch_variable.assign_add(1) - 1
            order = epoch_order(num_examples, seed, epoch)[shard_index::num_shards]
            if epoch_examples is not None:
                order = order[:epoch_examples]
            return tf.data.Dataset.from_tensor_slices(order)

        start = tf.data.Dataset.from_tensors(0)
        dataset = (start.repeat() if repeat else start).flat_map(one_epoch)
    else:
        epoch_variable = None
        dataset = tf.data.Dataset.range(shard_index, num_examples, num_shards)
    # Examples per epoch of this pipeline (its shard, trimmed); a new name,
    # so the epoch function above keeps the full split size it closed over.
    epoch_size = min(shard_size, epoch_examples) if epoch_examples else shard_size
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)
    if training:
        for fn in functions:
            dataset = dataset.map(
                fn,
                num_parallel_calls=host_parallel_calls or AUTOTUNE,
                deterministic=deterministic,
            )
    else:
        dataset = dataset.cache()
    num_batches = epoch_size // batch_size if drop_remainder else math.ceil(epoch_size / batch_size)
    if not (training and repeat):
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    dataset = dataset.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    dataset = dataset.with_options(options)
    if epoch_variable is not None:
        setattr(dataset, _EPOCH_ATTRIBUTE, epoch_variable)
    return dataset


def make_gather(split: Split, one_hot: bool = False):
    """A map function: a batch of indices -> (uint8 images, labels) from memory."""
    images = tf.constant(split.images)
    labels = tf.constant(split.labels)
    num_classes = split.num_classes

    def gather(index):
        batch_labels = tf.gather(labels, index)
        if one_hot:
            batch_labels = tf.one_hot(batch_labels, num_classes, dtype=tf.float32)
        return tf.gather(images, index), batch_labels

    return gather


def pipeline_epoch_variable(dataset: tf.data.Dataset) -> tf.Variable:
    """The epoch counter of a training pipeline made by `build_pipeline`."""
    variable = getattr(dataset, _EPOCH_ATTRIBUTE, None)
    if variable is None:
        raise ValueError(
            "This dataset has no epoch counter. Expected a training dataset "
            "returned by pipelines.build_pipeline(..., training=True)."
        )
    return variable


class EpochSync(keras.callbacks.Callback):
    """Keeps a training pipeline's epoch counter equal to Keras' epoch index.

    With it, the data order of epoch `k` is the same whether a run got to `k`
    in one go or after a resume from `BackupAndRestore` (which makes `fit`
    start at a later epoch).

    Args:
        dataset: a training dataset returned by `build_pipeline`, or the
            epoch variable shared by several pipelines.
        first_epoch_only: set the counter only when `fit` starts, for
            pipelines built with `repeat=True`, whose iterator outlives the
            epoch and advances the counter itself.

    Example:

    >>> from augpipe.pipelines import load_source, make_splits
    >>> splits = make_splits(load_source("mnist-embedded"), seed=0)
    >>> train = build_pipeline(splits.train, batch_size=64, training=True)
    >>> sync = EpochSync(train)
    """

    def __init__(self, dataset, first_epoch_only: bool = False):
        super().__init__()
        self.first_epoch_only = first_epoch_only
        self._synced = False
        if isinstance(dataset, tf.Variable):
            self.epoch_variable = dataset
        else:
            self.epoch_variable = pipeline_epoch_variable(dataset)

    def on_train_begin(self, logs=None):
        self._synced = False

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch_only and self._synced:
            return
        self.epoch_variable.assign(epoch)
        self._synced = True
