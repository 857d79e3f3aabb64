"""Scale-out on TensorFlow's own engines: tf.distribute strategies and the tf.data service."""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from pipelines.pipeline import EpochSync, build_pipeline
from pipelines.splits import Split

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`default` (one device), `mirrored` (all local devices) or `multiworker` (reads TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}. Expected one of: {', '.join(STRATEGIES)}.")


@dataclasses.dataclass
class TrainingInput:
    """What `fit` needs from a training pipeline built for a strategy."""

    dataset: object
    epoch_sync: Optional[object]
    steps_per_epoch: Optional[int]


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
) -> TrainingInput:
    """The training input for one device (more arrive with the scale-out work)."""
    dataset = build_pipeline(
        split, batch_size=batch_size, training=True, seed=seed, host_augment=host_augment, one_hot=one_hot
    )
    return TrainingInput(dataset=dataset, epoch_sync=EpochSync(dataset), steps_per_epoch=None)
