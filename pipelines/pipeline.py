"""The tf.data pipeline: (seeded, epoch-keyed) shuffle -> batch -> host augment -> prefetch."""

from __future__ import annotations

import math
import warnings
from typing import Callable, Optional, Sequence, Union

import keras
import tensorflow as tf

from augpipe.pipelines.files import ImageFiles
from augpipe.pipelines.splits import Split
from augpipe.validation import check_int

# Keras warns on every fit(dataset) that leaves `shuffle` at its default that shuffling is ignored for a
# tf.data dataset. augpipe's pipelines order each epoch themselves (seeded, by epoch), so the notice says
# nothing to their users; this one message is silenced, nothing else.
warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed, but will be ignored", category=UserWarning)

AUTOTUNE = tf.data.AUTOTUNE


class EpochCounter:
    """The epoch counter of training pipelines: which epoch's order the next iteration yields.

    A training pipeline reads the counter when an iteration starts and
    advances it by one, so its order is a pure function of `(seed, epoch)`.
    `EpochSync(counter)` sets it from Keras' epoch index, so a run resumed at
    epoch `k` gets the order of epoch `k`. The counter is an object the
    caller holds (returned by `build_training_pipeline`, or passed to
    `build_pipeline(..., epoch=counter)`), never an attribute of the dataset,
    which `.map()` or `.take()` would drop. Several pipelines may share one.

    Args:
        initial_epoch: the epoch the first iteration counts as.

    Example:

    >>> counter = EpochCounter(initial_epoch=3)
    >>> counter.value()
    3
    >>> counter.assign(5)
    >>> counter.value()
    5
    """

    def __init__(self, initial_epoch: int = 0):
        initial_epoch = check_int("initial_epoch", initial_epoch, minimum=0)
        self.variable = tf.Variable(initial_epoch, dtype=tf.int64, trainable=False, name="pipeline_epoch")

    def value(self) -> int:
        """The epoch the next iteration will yield."""
        return int(self.variable.numpy())

    def assign(self, epoch: int) -> None:
        """Makes the next iteration yield the order of `epoch`."""
        self.variable.assign(check_int("epoch", epoch, minimum=0))

    def read_and_advance(self) -> tf.Tensor:
        """In-graph: the current epoch, after which the counter moves on by one."""
        return self.variable.assign_add(1) - 1

    def __repr__(self) -> str:
        return f"EpochCounter(next_epoch={self.value()})"


def _check_batch_size(batch_size) -> int:
    return check_int("batch_size", batch_size)


def as_batch_fn(fn: Callable) -> Callable:
    """Wraps a host-side batch callable so that it maps `(images, labels, key)`.

    `key` is the batch's `(epoch, batch index)` (int64), which keys its
    random draws so that parallel calls give the same batches in any thread
    order:

    - An object with `keyed_batch` (`augment.Augment`,
      `augment.MixUpCutMix`) is called as `fn.keyed_batch(images, labels, key)`.
    - A Keras layer is called as `fn(images, training=True)`.
    - An object with `uses_labels = True` (for example `augment.MixUpCutMix`)
      is called as `fn(images, labels)` and returns both.
    - Any other callable is called as `fn(images)`.
    """
    if not callable(fn):
        raise ValueError(
            f"`host_augment` must be a callable or a list of callables. Received: {fn!r}."
        )
    if hasattr(fn, "keyed_batch"):
        return fn.keyed_batch
    if getattr(fn, "uses_labels", False):
        return lambda images, labels, key: fn(images, labels)
    if isinstance(fn, keras.layers.Layer):
        return lambda images, labels, key: (fn(images, training=True), labels)
    return lambda images, labels, key: (fn(images), labels)


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
    epoch: Optional[EpochCounter] = None,
    epoch_examples: Optional[int] = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Builds the tf.data pipeline for one split.

    It yields `(images, labels)` batches: uint8 images, and int64 labels (or
    float32 one-hot labels with `one_hot=True`). With `training=True` it
    shuffles, and the order of epoch `k` is a pure function of `(seed, k)`,
    so a resumed run sees the same order as an uninterrupted one. Each
    iteration over the dataset is one epoch. The epoch counter (an
    `EpochCounter`, see `build_training_pipeline`) starts at `initial_epoch`,
    and `EpochSync(counter)` keeps it equal to Keras' epoch index.

    The data lives in memory as one tensor, and batches are gathered from it
    with one vectorized `gather` per batch, which is the cached source stage.
    Eval pipelines (`training=False`) also `cache()` their finished batches.
    A folder source's split (`ImageFiles`) is decoded into that tensor when
    it fits its memory budget (cache "memory"), gathered from a memory-mapped
    decoded copy (cache "file"), or else read and decoded image by image,
    in parallel, before batching, every epoch and without any cache (cache
    "stream"); the order is the same `(seed, epoch)` order in every mode.
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
        epoch: the `EpochCounter` of a training pipeline (made here, starting
            at `initial_epoch`, if None; pass your own to sync it with
            `EpochSync` or to share it between pipelines).
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
    check_int("initial_epoch", initial_epoch, minimum=0)
    num_shards, shard_index = shard if shard is not None else (1, 0)
    if not (isinstance(num_shards, int) and isinstance(shard_index, int) and 0 <= shard_index < num_shards):
        raise ValueError(f"`shard` must be (num_shards, index) with 0 <= index < num_shards. Received: {shard!r}.")
    functions = []
    if host_augment is not None:
        items = host_augment if isinstance(host_augment, (list, tuple)) else [host_augment]
        for fn in items:
            if getattr(fn, "placement", None) == "device" and hasattr(fn, "keyed_batch"):
                raise ValueError(
                    f"{type(fn).__name__} {getattr(fn, 'name', '')!r} has placement='device': inside a model it "
                    "augments, so running it in the pipeline too would augment twice. Create it with "
                    "placement='host' (it then only converts inside the model)."
                )
        functions = [as_batch_fn(fn) for fn in items]

    num_examples = len(split)
    # Streamed files are decoded image by image, in parallel, before batching;
    # everything else is gathered a batch at a time.
    load = make_loader(split, one_hot) if _streams(split) else None
    gather = None if load else make_gather(split, one_hot)
    shard_size = len(range(shard_index, num_examples, num_shards))

    if epoch is not None and not isinstance(epoch, EpochCounter):
        raise ValueError(f"Received: epoch={epoch!r}. Expected a pipelines.EpochCounter or None.")
    if training:
        counter = epoch if epoch is not None else EpochCounter(initial_epoch)

        def one_epoch(_):
            # Read the epoch, then advance it, once per iterator: the order
            # depends on (seed, epoch) only, never on how many epochs ran in
            # this process.
            index = counter.read_and_advance()
            order = epoch_order(num_examples, seed, index)[shard_index::num_shards]
            if epoch_examples is not None:
                order = order[:epoch_examples]
            if load is not None:
                examples = tf.data.Dataset.from_tensor_slices(order).map(
                    load, num_parallel_calls=AUTOTUNE, deterministic=True)
                batches = examples.batch(batch_size, drop_remainder=drop_remainder)
                return batches.enumerate().map(lambda i, batch: (*batch, tf.stack([index, i])))
            batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
            # Each batch carries its (epoch, batch index): host augmentation keys its draws by it.
            return batches.enumerate().map(lambda i, indices: (indices, tf.stack([index, i])))

        start = tf.data.Dataset.from_tensors(0)
        dataset = (start.repeat() if repeat else start).flat_map(one_epoch)
    else:
        dataset = tf.data.Dataset.range(shard_index, num_examples, num_shards)
        if load is not None:
            dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    # Examples per epoch of this pipeline (its shard, trimmed); a new name,
    # so the epoch function above keeps the full split size it closed over.
    epoch_size = min(shard_size, epoch_examples) if epoch_examples else shard_size
    if training:
        if load is None:
            dataset = dataset.map(lambda indices, key: (*gather(indices), key),
                                  num_parallel_calls=AUTOTUNE, deterministic=True)
        for fn in functions:
            dataset = dataset.map(
                lambda images, labels, key, fn=fn: (*fn(images, labels, key), key),
                num_parallel_calls=host_parallel_calls or AUTOTUNE,
                deterministic=deterministic,
            )
        dataset = dataset.map(lambda images, labels, key: (images, labels))
    elif load is None:
        dataset = dataset.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.cache()
    num_batches = epoch_size // batch_size if drop_remainder else math.ceil(epoch_size / batch_size)
    if not (training and repeat):
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    dataset = dataset.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return dataset.with_options(options)


def build_training_pipeline(split: Split, *, batch_size: int, **options) -> tuple:
    """A training pipeline and its `EpochCounter`: `train, epoch = build_training_pipeline(...)`.

    The same as `build_pipeline(split, batch_size, training=True, ...)`, with
    the counter made here (from `initial_epoch`) and returned next to the
    dataset; give it to `EpochSync(epoch)` in `fit`'s callbacks.

    Example:

    >>> from augpipe.pipelines import load_source, make_splits
    >>> splits = make_splits(load_source("mnist-embedded"), seed=0)
    >>> train, epoch = build_training_pipeline(splits.train, batch_size=64, seed=0)
    >>> epoch
    EpochCounter(next_epoch=0)
    """
    if "training" in options or "epoch" in options:
        raise ValueError("build_training_pipeline makes a training pipeline and its counter; do not pass "
                         "`training` or `epoch` (use build_pipeline for those).")
    counter = EpochCounter(options.get("initial_epoch", 0))
    return build_pipeline(split, batch_size=batch_size, training=True, epoch=counter, **options), counter


def _streams(split: Split) -> bool:
    return isinstance(split.images, ImageFiles) and split.images.cache == "stream"


def make_gather(split: Split, one_hot: bool = False):
    """A map function: a batch of indices -> (uint8 images, labels) from memory.

    For a folder source (`ImageFiles`) with cache "memory" the split is
    decoded here, once, in parallel; with cache "file" batches are gathered
    from its memory-mapped decoded copy. A tensorflow-datasets split read by
    random access (`records.RecordImages`) reads each batch from its records.
    """
    if hasattr(split.images, "gather_fn"):  # ImageFiles, records.RecordImages: pixels not in memory
        take = split.images.gather_fn()
    else:
        images = tf.constant(split.images)
        take = lambda index: tf.gather(images, index)  # noqa: E731
    return _with_labels(split, take, one_hot)


def make_loader(split: Split, one_hot: bool = False):
    """A map function: one index -> (uint8 image, label), reading and decoding its file (streamed sources)."""
    return _with_labels(split, split.images.loader(), one_hot)


def _with_labels(split: Split, take, one_hot: bool):
    """`index -> (take(index), labels at index)`: int64 labels, or float32 one-hot ones."""
    labels = tf.constant(split.labels)
    num_classes = split.num_classes

    def read(index):
        found = tf.gather(labels, index)
        if one_hot:
            found = tf.one_hot(found, num_classes, dtype=tf.float32)
        return take(index), found

    return read


class EpochSync(keras.callbacks.Callback):
    """Keeps a training pipeline's epoch counter equal to Keras' epoch index.

    With it, the data order of epoch `k` is the same whether a run got to `k`
    in one go or after a resume from `BackupAndRestore` (which makes `fit`
    start at a later epoch).

    Args:
        epoch: the `EpochCounter` of the training pipeline(s).
        first_epoch_only: set the counter only when `fit` starts, for
            pipelines built with `repeat=True`, whose iterator outlives the
            epoch and advances the counter itself.

    Example:

    >>> from augpipe.pipelines import load_source, make_splits
    >>> splits = make_splits(load_source("mnist-embedded"), seed=0)
    >>> train, epoch = build_training_pipeline(splits.train, batch_size=64)
    >>> sync = EpochSync(epoch)
    """

    # First in the callback list (augpipe.callbacks.in_working_order reads this; pipelines never imports callbacks).
    stage = 0

    def __init__(self, epoch: EpochCounter, first_epoch_only: bool = False):
        super().__init__()
        if not isinstance(epoch, EpochCounter):
            raise ValueError(
                f"Received: epoch={type(epoch).__name__}. Expected the pipelines.EpochCounter of the training "
                "pipeline: `train, epoch = pipelines.build_training_pipeline(...)`, then `EpochSync(epoch)`."
            )
        self.epoch = epoch
        self.first_epoch_only = first_epoch_only
        self._synced = False

    def on_train_begin(self, logs=None):
        self._synced = False

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch_only and self._synced:
            return
        self.epoch.assign(epoch)
        self._synced = True
