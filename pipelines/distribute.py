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

import contextlib
import dataclasses
import re
import socket
import warnings
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


# The Keras versions the multi-worker workaround was written and tested for:
# [first, first-not-covered). Outside them it refuses to patch, loudly.
KERAS_VERSIONS_PATCHED = ((3, 10), (4, 0))


def _reduce_scalars_with_axis_none(original):
    """Keras' `reduce_per_replica`, but rank-0 values reduced with `axis=None` under multi-worker."""

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

    return reduce_per_replica


@contextlib.contextmanager
def patched_keras_for_multiworker(model):
    """Patches Keras 3's TF trainer and `model` for multi-worker `fit`; restores both on exit.

    Keras 3 `fit` fails under `MultiWorkerMirroredStrategy`
    (tensorflow/tensorflow#72388) in two places:

    1. Scalar logs are reduced with `strategy.reduce("MEAN", v, axis=0)`.
       Inside this context, Keras' module-level `reduce_per_replica` reduces
       rank-0 values with `axis=None` (the same mean over replicas).
    2. Before the first epoch, the trainer reduces the first `(x, y)` batch,
       which the strategy cannot do for a tuple. A model whose
       `_distribute_strategy` is None picks the strategy up from the enclosing
       `strategy.scope()` and skips that step.

    Both are private Keras internals, so the patch checks the Keras version
    it was written for (`KERAS_VERSIONS_PATCHED`) and that each internal is
    still where it expects, and raises `RuntimeError` otherwise instead of
    patching the wrong thing. Use `multiworker_fit`, which applies it only
    for a multi-worker strategy.
    """
    import keras

    version = tuple(int(part) for part in re.findall(r"\d+", keras.__version__)[:2])
    first, after = KERAS_VERSIONS_PATCHED
    if not first <= version < after:
        raise RuntimeError(
            f"augpipe's multi-worker workaround was written for Keras {first[0]}.{first[1]} up to (not "
            f"including) {after[0]}.{after[1]}. Received: keras {keras.__version__}. Use a Keras version "
            "in that range, or check whether tensorflow/tensorflow#72388 is fixed in yours."
        )
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer

        original = tf_trainer.reduce_per_replica
    except (ImportError, AttributeError):
        raise RuntimeError(
            f"Keras {keras.__version__} has no keras.src.backend.tensorflow.trainer.reduce_per_replica, "
            "which augpipe's multi-worker workaround patches. The internal moved; the workaround "
            "needs updating for this Keras version."
        ) from None
    if not hasattr(model, "_distribute_strategy"):
        raise RuntimeError(
            f"This Keras {keras.__version__} model has no `_distribute_strategy` attribute, which "
            "augpipe's multi-worker workaround resets. The internal moved; the workaround needs updating."
        )
    saved_strategy = model._distribute_strategy
    tf_trainer.reduce_per_replica = _reduce_scalars_with_axis_none(original)
    model._distribute_strategy = None
    try:
        yield model
    finally:
        tf_trainer.reduce_per_replica = original
        model._distribute_strategy = saved_strategy


@contextlib.contextmanager
def multiworker_fit(model, strategy: tf.distribute.Strategy):
    """Run `model.fit` inside this context to train under any strategy, multi-worker included.

    Opt-in and scoped: under `MultiWorkerMirroredStrategy` it applies
    `patched_keras_for_multiworker(model)` and enters `strategy.scope()`;
    under any other strategy it only enters the scope. Everything it patched
    is restored when the block ends, also on an error.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> with multiworker_fit(model, tf.distribute.get_strategy()):
    ...     history = model.fit(tf.zeros((4, 2)), tf.zeros((4, 1)), verbose=0)
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        with patched_keras_for_multiworker(model), strategy.scope():
            yield model
    else:
        with strategy.scope():
            yield model


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


def service_training_dataset(
    split: Split,
    service: str,
    *,
    batch_size: int,
    seed: int = 0,
    one_hot: bool = False,
    epoch: Optional[EpochCounter] = None,
    check: bool = True,
) -> tf.data.Dataset:
    """A training dataset whose epochs run on the tf.data service, one service job per epoch.

    Each iteration (each Keras epoch) reads the epoch counter here, in the
    trainer, builds that epoch's `(seed, epoch)` order, and registers it with
    the dispatcher as a new anonymous job in `distributed_epoch` mode. So
    every epoch gives every training example exactly once, also with several
    workers, and no two epochs (or two runs on one dispatcher) share a job.
    The workers split the order between them and batch their parts: batch
    composition and the interleaving of the workers' batches vary from run
    to run; which examples an epoch holds does not. The last batch of each
    worker may be partial, so the number of steps per epoch can vary by a
    few. Service workers never read a trainer variable.

    Args:
        split: the training split.
        service: `grpc://HOST:PORT` of the dispatcher.
        batch_size, seed, one_hot: as in `build_pipeline`.
        epoch: the `EpochCounter` (made here if None); `EpochSync` it.
        check: fail fast if no dispatcher answers.
    """
    if check:
        check_service_reachable(service)
    counter = epoch if epoch is not None else EpochCounter()
    gather = make_gather(split, one_hot)
    num_examples = len(split)

    def one_epoch(_):
        order = epoch_order(num_examples, seed, counter.read_and_advance())
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(gather)
        with warnings.catch_warnings():
            # TensorFlow warns that it reads the dataset's options the legacy way when `distribute`
            # is traced inside a dataset function; this dataset sets no options.
            warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options",
                                    category=UserWarning)
            # No job_name: a new anonymous job for this epoch's dataset.
            return batches.apply(tf.data.experimental.service.distribute(
                processing_mode="distributed_epoch", service=service))

    return tf.data.Dataset.from_tensors(0).flat_map(one_epoch).prefetch(AUTOTUNE)


ALL_INTERFACES_RISK = (
    "TensorFlow's tf.data service servers listen on every network interface (there is no "
    "bind-address option), have no authentication, and run any dataset graph a client sends: "
    "anyone who can reach their ports can read every file this user can read."
)


class LocalDataService:
    """A tf.data service dispatcher plus `num_workers` workers in this process (a demo).

    TensorFlow binds these servers to all interfaces, so they are reachable
    from other hosts unless a firewall stops them. The class refuses to
    start them unless `listen_on_all_interfaces=True` says that this is
    understood (see the README's security section).

    Args:
        num_workers: workers to start.
        listen_on_all_interfaces: the explicit opt-in; without it, ValueError.

    Example:

    >>> service = LocalDataService(num_workers=2, listen_on_all_interfaces=True)
    >>> service.target.startswith("grpc://localhost:")
    True
    >>> service.stop()
    """

    def __init__(self, num_workers: int = 2, *, listen_on_all_interfaces: bool = False):
        check_int("num_workers", num_workers)
        if listen_on_all_interfaces is not True:
            raise ValueError(
                f"Refusing to start a local tf.data service: {ALL_INTERFACES_RISK} Pass "
                "listen_on_all_interfaces=True (run-mnist: --local-data-service-on-all-interfaces) "
                "only on a machine whose ports other hosts cannot reach."
            )
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
    local_data_service_on_all_interfaces: bool = False,
    initial_epoch: int = 0,
) -> TrainingInput:
    """The training input for the chosen engine: one device, a strategy, or the tf.data service.

    `local_data_service=N` starts a `LocalDataService` with N workers, which
    needs `local_data_service_on_all_interfaces=True` (see that class).
    """
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
            service = LocalDataService(
                local_data_service, listen_on_all_interfaces=local_data_service_on_all_interfaces
            )
            data_service = service.target
        counter = EpochCounter(initial_epoch)
        dataset = service_training_dataset(
            split, data_service, batch_size=batch_size, seed=seed, one_hot=one_hot, epoch=counter
        )
        return TrainingInput(dataset, EpochSync(counter), None, service)
    if strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        dataset, counter, steps = build_distributed_dataset(
            split, strategy, global_batch_size=batch_size, seed=seed, one_hot=one_hot, host_augment=host_augment
        )
        return TrainingInput(dataset, EpochSync(counter, first_epoch_only=True), steps)
    dataset, counter = build_training_pipeline(
        split, batch_size=batch_size, seed=seed, host_augment=host_augment, one_hot=one_hot
    )
    return TrainingInput(dataset, EpochSync(counter), None)
