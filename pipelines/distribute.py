"""Scale-out on TensorFlow's own engines: tf.distribute strategies and the tf.data service.

Nothing here re-implements distribution:

- `build_distributed_dataset` hands `build_pipeline` to
  `strategy.distribute_datasets_from_function`: each input pipeline takes its
  `InputContext` shard of every epoch's order and batches by the per-replica
  batch size (global batch / replicas), so the per-epoch order guarantee of
  the single-device pipeline holds across workers;
- `through_data_service` sends a pipeline through a running tf.data service
  dispatcher (`tf.data.experimental.service.distribute`);
- `LocalDataService` starts a dispatcher and N workers in this process on
  loopback, for development and tests.

Augmentation whose strength lives in a variable (the `Augment` layer,
`MixUpCutMix`'s probability) must stay on the device side with the tf.data
service: the service's workers run the dataset graph in other processes,
which cannot read the trainer's variables. Under a strategy, create the model
(with its `Augment` layer) inside `strategy.scope()`: the strength variable
is then mirrored, and a callback's `assign` reaches every replica.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from typing import Optional

import tensorflow as tf

from augpipe.pipelines.pipeline import (
    AUTOTUNE,
    EpochCounter,
    EpochSync,
    build_pipeline,
    build_training_pipeline,
    epoch_order,
    make_gather,
)
from augpipe.pipelines.splits import Split
from augpipe.validation import check_int

STRATEGIES = ("default", "mirrored", "multiworker")
PROCESSING_MODES = ("distributed_epoch", "parallel_epochs")
_ADDRESS = re.compile(r"^grpc://(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")
CONNECT_TIMEOUT_S = 10.0


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`default` (one device), `mirrored` (all local devices) or `multiworker` (reads TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}. Expected one of: {', '.join(STRATEGIES)}.")


def build_distributed_dataset(
    split: Split,
    strategy: tf.distribute.Strategy,
    *,
    global_batch_size: int,
    seed: int = 0,
    one_hot: bool = False,
    host_augment=None,
    initial_epoch: int = 0,
):
    """Per-replica pipelines through `strategy.distribute_datasets_from_function`.

    Returns `(distributed_dataset, epoch_counter, steps_per_epoch)`. The
    pipelines repeat epoch after epoch (Keras keeps one iterator when
    `steps_per_epoch` is set); pass `steps_per_epoch` and
    `EpochSync(epoch_counter, first_epoch_only=True)` to `fit`, so a resumed
    run starts at its epoch's order. Each epoch is trimmed to whole global
    batches so replicas stay in step.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"Global batch size {global_batch_size} does not divide over {replicas} replicas. "
            f"Use a multiple of {replicas}."
        )
    with tf.init_scope():
        counter = EpochCounter(initial_epoch)
    num_pipelines = int(getattr(strategy.extended, "_num_workers", 1) or 1)
    per_replica = global_batch_size // replicas
    replicas_per_pipeline = max(1, replicas // num_pipelines)
    steps = (len(split) // num_pipelines) // (per_replica * replicas_per_pipeline)
    if steps < 1:
        raise ValueError(
            f"Split {split.name!r} has {len(split)} examples, fewer than one global batch of "
            f"{global_batch_size}. Lower the batch size."
        )
    epoch_examples = steps * per_replica * replicas_per_pipeline

    def dataset_fn(context: tf.distribute.InputContext):
        return build_pipeline(
            split,
            batch_size=context.get_per_replica_batch_size(global_batch_size),
            training=True,
            seed=seed,
            one_hot=one_hot,
            host_augment=host_augment,
            drop_remainder=True,
            shard=(context.num_input_pipelines, context.input_pipeline_id),
            epoch=counter,
            epoch_examples=epoch_examples,
            repeat=True,
        )

    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    return dataset, counter, steps


_MULTIWORKER_PATCHED = False


def _patch_keras_multiworker_reduce() -> None:
    """Lets Keras 3 `fit` reduce scalar logs under `MultiWorkerMirroredStrategy`.

    Keras' TF trainer reduces every per-replica output with
    `strategy.reduce("MEAN", v, axis=0)` in multi-worker mode, which fails
    for the scalar losses and metrics a train step returns
    (tensorflow/tensorflow#72388). The patch reduces rank-0 values with
    `axis=None` (the same mean over replicas) and leaves everything else to
    Keras. It is applied only when a multi-worker model is prepared.
    """
    global _MULTIWORKER_PATCHED
    if _MULTIWORKER_PATCHED:
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("auto", "mean"):

            def reduce_one(value):
                local = value
                if isinstance(value, tf.distribute.DistributedValues):
                    local = strategy.experimental_local_results(value)[0]
                if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return original(value, strategy, reduction)

            return tf.nest.map_structure(reduce_one, values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    _MULTIWORKER_PATCHED = True


def prepare_model_for_strategy(model, strategy: tf.distribute.Strategy) -> None:
    """Makes Keras 3 `fit` run under `MultiWorkerMirroredStrategy`; a no-op otherwise.

    Two Keras 3 failures need working around:

    1. Before the first epoch, Keras' TF trainer reduces the first batch with
       `strategy.reduce("MEAN", (x, y))`, which the multi-worker strategy
       cannot do for a tuple. A model that picks its strategy up from the
       enclosing `strategy.scope()` skips that step, so call `fit` inside
       `with strategy.scope():` after this.
    2. Scalar logs are reduced with `axis=0` (see
       `_patch_keras_multiworker_reduce`).
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _patch_keras_multiworker_reduce()
        model._distribute_strategy = None


# ----------------------------------------------------------------------------
# tf.data service


def parse_service_address(address: str) -> tuple:
    """Validates `grpc://HOST:PORT` and returns `(host, port)`."""
    match = _ADDRESS.match(address or "")
    if not match or not 0 < int(match.group("port")) < 65536:
        raise ValueError(
            f"Invalid tf.data service address {address!r}. Expected grpc://HOST:PORT, "
            "e.g. grpc://localhost:5050."
        )
    return match.group("host").strip("[]"), int(match.group("port"))


def check_service_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fails fast (within `timeout`) if no dispatcher listens at `address`.

    The tf.data service client retries an unreachable dispatcher for a long
    time; a plain TCP connect answers in seconds.
    """
    host, port = parse_service_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise ConnectionError(
            f"No tf.data service dispatcher at {address} ({error}). Start one (see README, "
            "'Scaling out'), or use --local-data-service N for an in-process one."
        ) from None


def through_data_service(
    dataset: tf.data.Dataset,
    service: str,
    *,
    processing_mode: str = "distributed_epoch",
    job_name: Optional[str] = None,
    check: bool = True,
) -> tf.data.Dataset:
    """Runs `dataset` on the tf.data service's workers (`service.distribute`)."""
    if processing_mode not in PROCESSING_MODES:
        raise ValueError(
            f"Received: processing_mode={processing_mode!r}. Expected one of: {', '.join(PROCESSING_MODES)}."
        )
    if check:
        check_service_reachable(service)
    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode=processing_mode, service=service, job_name=job_name
        )
    )


def service_training_stream(
    split: Split,
    *,
    batch_size: int,
    seed: int = 0,
    one_hot: bool = False,
    initial_epoch: int = 0,
    num_epochs: int = 1,
) -> tf.data.Dataset:
    """A variable-free training stream for the tf.data service.

    Service workers cannot read the trainer's epoch variable, so the epochs
    are the elements of a `range` source: epoch `e`'s order is still
    `epoch_order(seed, e)`, and in `distributed_epoch` mode each epoch is
    processed whole by one worker, every example exactly once.
    """
    gather = make_gather(split, one_hot)
    num_examples = len(split)
    epochs = tf.data.Dataset.range(initial_epoch, initial_epoch + num_epochs)
    dataset = epochs.flat_map(
        lambda epoch: tf.data.Dataset.from_tensor_slices(epoch_order(num_examples, seed, epoch)).batch(
            batch_size, drop_remainder=True
        )
    )
    return dataset.map(gather, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


class LocalDataService:
    """A tf.data service dispatcher plus `num_workers` workers in this process, on loopback.

    Example:

    >>> service = LocalDataService(num_workers=2)
    >>> service.target.startswith("grpc://localhost:")
    True
    >>> service.stop()
    """

    def __init__(self, num_workers: int = 2):
        check_int("num_workers", num_workers)
        service = tf.data.experimental.service
        self.dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
        address = self.dispatcher.target.split("://", 1)[1]
        self.workers = [
            service.WorkerServer(service.WorkerConfig(dispatcher_address=address, port=0))
            for _ in range(num_workers)
        ]
        self.target = self.dispatcher.target

    def stop(self):
        for worker in self.workers:
            worker.stop()
        self.dispatcher.stop()


# ----------------------------------------------------------------------------
# What run-mnist uses


@dataclasses.dataclass
class TrainingInput:
    """What `fit` needs from a training pipeline: the dataset, its EpochSync, and steps."""

    dataset: object
    epoch_sync: Optional[object]
    steps_per_epoch: Optional[int]
    service: Optional[LocalDataService] = None


def build_training_input(
    split: Split,
    *,
    strategy: Optional[tf.distribute.Strategy] = None,
    batch_size: int,
    seed: int = 0,
    host_augment=None,
    one_hot: bool = False,
    data_service: Optional[str] = None,
    local_data_service: int = 0,
    num_epochs: int = 1,
    initial_epoch: int = 0,
) -> TrainingInput:
    """The training input for the chosen engine: one device, a strategy, or the tf.data service."""
    strategy = strategy or tf.distribute.get_strategy()
    service = None
    if data_service or local_data_service:
        if host_augment is not None:
            raise ValueError(
                "Host-side augmentation reads trainer variables (strength, mix probability), "
                "which tf.data service workers cannot reach. Use --placement device and no "
                "--mixup with the tf.data service."
            )
        if local_data_service:
            service = LocalDataService(local_data_service)
            data_service = service.target
        stream = service_training_stream(
            split, batch_size=batch_size, seed=seed, one_hot=one_hot,
            initial_epoch=initial_epoch, num_epochs=max(1, num_epochs - initial_epoch),
        )
        dataset = through_data_service(stream, data_service, job_name=f"augpipe-{seed}")
        return TrainingInput(dataset, None, len(split) // batch_size, service)
    if strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        dataset, counter, steps = build_distributed_dataset(
            split, strategy, global_batch_size=batch_size, seed=seed, one_hot=one_hot, host_augment=host_augment
        )
        return TrainingInput(dataset, EpochSync(counter, first_epoch_only=True), steps)
    dataset, counter = build_training_pipeline(
        split, batch_size=batch_size, seed=seed, host_augment=host_augment, one_hot=one_hot
    )
    return TrainingInput(dataset, EpochSync(counter), None)
