"""Data in: sources -> splits -> tf.data pipeline -> (distribution).

Sources, splits and the registry need no TensorFlow; the pipeline's names
load `pipeline` (and TensorFlow) when first used, so that a command's
`--help` stays fast.
"""

import importlib
import importlib.util

from augpipe.pipelines.files import ImageFiles
from augpipe.pipelines.sources import LabeledArrays, Source, SourceOption, load_source, register_source, source_kinds

# The built-in source kinds register themselves on import.
from augpipe.pipelines import formats, tfds_source  # noqa: E402,F401  isort: skip
from augpipe.pipelines.folder import load_folder  # noqa: E402  isort: skip
from augpipe.pipelines.formats import read_idx  # noqa: E402  isort: skip
from augpipe.pipelines.splits import Split, Splits, fingerprint_images, make_probe, make_splits

__all__ = [
    "EpochCounter",
    "EpochSync",
    "ImageFiles",
    "LabeledArrays",
    "Source",
    "SourceOption",
    "Split",
    "Splits",
    "as_batch_fn",
    "build_pipeline",
    "build_training_pipeline",
    "epoch_order",
    "fingerprint_images",
    "load_folder",
    "load_source",
    "make_probe",
    "make_splits",
    "read_idx",
    "register_source",
    "source_kinds",
]


_PIPELINE = ("EpochCounter", "EpochSync", "as_batch_fn", "build_pipeline", "build_training_pipeline", "epoch_order")


def __getattr__(name):
    if name in _PIPELINE:
        value = getattr(importlib.import_module("augpipe.pipelines.pipeline"), name)
        globals()[name] = value
        return value
    if name in ("pipeline", "distribute"):
        return importlib.import_module(f"augpipe.pipelines.{name}")
    if importlib.util.find_spec(f"augpipe.pipelines.{name}") is not None:  # a submodule not imported yet
        return importlib.import_module(f"augpipe.pipelines.{name}")
    raise AttributeError(f"module 'augpipe.pipelines' has no attribute {name!r}")
