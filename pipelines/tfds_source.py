"""tensorflow-datasets sources: `tfds:NAME[:CONFIG][?access=...]`, and a fast-failing download probe.

Example:

>>> str(tfds_data_dir("data/tfds"))
'data/tfds'
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import socket
import threading
from typing import Optional

import numpy as np

from augpipe.pipelines.sources import (
    DATA_DIR_OPTION,
    DOWNLOAD_OPTION,
    LabeledArrays,
    Source,
    SourceOption,
    _check_classes,
    register_source,
)
from augpipe.validation import did_you_mean

DOWNLOAD_PROBE_TIMEOUT_S = 10.0
# Hosts a tensorflow-datasets download needs first; a probe that cannot reach
# them fails fast instead of letting tfds retry for minutes.
DOWNLOAD_PROBE_HOSTS = (("storage.googleapis.com", 443),)

ACCESS_OPTION = SourceOption("access", "tfds: auto, memory or random (in the spec: ?access=random).",
                             query=str, command=False)


class _WithoutMissingInfoWarning(logging.Filter):
    """Drops tensorflow-datasets' "Variant folder ... has no dataset_info.json": augpipe says what is missing."""

    def filter(self, record):
        return "has no dataset_info.json" not in record.getMessage()


@contextlib.contextmanager
def _quiet_tfds_lookup():
    logger, quiet = logging.getLogger("absl"), _WithoutMissingInfoWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def tfds_data_dir(data_dir) -> pathlib.Path:
    """Where tensorflow-datasets data lives: `data_dir`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`."""
    if data_dir is not None:
        return pathlib.Path(data_dir).expanduser()
    env = os.environ.get("TFDS_DATA_DIR")
    return pathlib.Path(env) if env else pathlib.Path.home() / "tensorflow_datasets"


def _load_tfds_records(builder, full_name: str, root: pathlib.Path, file_format: str, class_names: tuple) -> Source:
    """`load_tfds(..., access="random")`: labels in memory, images read from the ArrayRecord files."""
    from augpipe.pipelines import records as _records

    if file_format != "array_record":
        raise ValueError(
            f"tensorflow-datasets dataset {full_name!r} is prepared as {file_format}, which cannot be read by "
            f"random access. Prepare it as ArrayRecord (`tfds build {full_name} --file_format=array_record "
            f"--data_dir {str(root)}`), or use access=memory (spec 'tfds:{full_name.replace('/', ':')}?access=memory')."
        )
    shape = tuple(builder.info.features["image"].shape)
    if any(v is None for v in shape):
        raise ValueError(
            f"{full_name!r} has images of varying size {shape}; random access needs one fixed size. Use "
            "access=memory, or export it as a folder of files and use folder:DIR with image_size."
        )
    splits = builder.info.splits
    train_labels = _records.read_labels(full_name, "train", str(root))
    train = _records.RecordImages(full_name, "train", str(root), shape)
    official = None
    if "test" in splits:
        test = _records.RecordImages(full_name, "test", str(root), shape)
        official = LabeledArrays(test, _records.read_labels(full_name, "test", str(root)))
    all_labels = [train_labels] + ([official.labels] if official else [])
    num_classes, class_names = _check_classes(all_labels, int(builder.info.features["label"].num_classes),
                                              class_names or None)
    return Source(
        images=train,
        labels=train_labels,
        num_classes=num_classes,
        class_names=class_names,
        provenance=(
            f"tfds:{full_name}: tensorflow-datasets in {str(root)!r}, random access (ArrayRecord): "
            f"{len(train)} train" + (f", {len(official.images)} official test" if official else "")
        ),
        official_test=official,
        name=f"tfds:{full_name}",
    )


def probe_download_hosts(hosts=None, timeout: float = DOWNLOAD_PROBE_TIMEOUT_S) -> Optional[str]:
    """Returns None if every host accepts a TCP connection, else the reason.

    DNS lookups can block far past a socket timeout, so the probe runs in a
    daemon thread and is abandoned after `timeout` seconds.
    """
    hosts = DOWNLOAD_PROBE_HOSTS if hosts is None else hosts
    result: dict = {}

    def probe():
        for host, port in hosts:
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    pass
            except OSError as error:
                result["error"] = f"cannot reach {host}:{port} ({error})"
                return
        result["ok"] = True

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if result.get("ok"):
        return None
    return result.get("error", f"no answer from {hosts[0][0]} within {timeout:g} s")


@register_source("tfds", usage="tfds:NAME[:CONFIG][?access=random]", options=(DATA_DIR_OPTION, DOWNLOAD_OPTION,
                 ACCESS_OPTION), help="a prepared tensorflow-datasets set")
def load_tfds_spec(argument: str, **options) -> Source:
    """`tfds:NAME[:CONFIG]` (the query already parsed into `options`)."""
    name, _, config = argument.partition(":")
    return load_tfds(name, config or None, **options)


def load_tfds(name: str, config: Optional[str] = None, *, data_dir=None, download: bool = False,
              access: str = "auto") -> Source:
    """Loads a locally prepared tensorflow-datasets image classification dataset.

    Args:
        name, config: the data set, e.g. `"mnist"`, or `"NAME"`, `"CONFIG"`.
        data_dir: where it is prepared (tfds' default if None).
        download: allow fetching and preparing it.
        access: `"memory"`: read every image into memory. `"random"`: keep
            the labels only; pipelines read each batch from its ArrayRecord
            files (`tfds.data_source`; prepare it with
            `tfds build NAME --file_format=array_record`), so memory does not
            grow with the data set. `"auto"` (default): random access for an
            ArrayRecord data set over 1 GiB on disk, memory otherwise.
    """
    from augpipe.pipelines import records as _records

    if access not in _records.ACCESS_MODES:
        raise ValueError(f"Received: access={access!r}. Expected one of: {', '.join(_records.ACCESS_MODES)}.")
    if not name:
        raise ValueError("Empty tfds dataset name. Expected a spec like 'tfds:mnist' or 'tfds:NAME:CONFIG'.")
    import tensorflow_datasets as tfds

    root = tfds_data_dir(data_dir)
    full_name = f"{name}/{config}" if config else name
    try:
        with _quiet_tfds_lookup():
            builder = tfds.builder(full_name, data_dir=str(root))
    except Exception as error:  # tfds raises several types for an unknown name
        known = tfds.list_builders(with_community_datasets=False)
        hint = did_you_mean(name, known)
        raise ValueError(
            f"Unknown tensorflow-datasets dataset {full_name!r} ({type(error).__name__}).{hint} "
            "See `tfds.list_builders()` for the valid names."
        ) from None
    with _quiet_tfds_lookup():
        prepared = builder.is_prepared()
    if not prepared:
        offline_help = (
            f"To supply it offline, run `tfds build {full_name} --data_dir DIR` on a "
            f"machine with network access and copy DIR to {str(root)!r} (or pass data_dir)."
        )
        if not download:
            raise FileNotFoundError(
                f"tensorflow-datasets dataset {full_name!r} is not prepared in "
                f"{str(root)!r}. {offline_help} Or pass download=True (--download)."
            )
        reason = probe_download_hosts()
        if reason is not None:
            raise ConnectionError(f"Download of {full_name!r} failed: {reason}. {offline_help}")
        builder.download_and_prepare()
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"{full_name!r} is not an image classification dataset: it has features "
            f"{sorted(features.keys())}, expected 'image' and 'label'."
        )
    label_feature = features["label"]
    class_names = tuple(getattr(label_feature, "names", None) or ())
    file_format = getattr(builder.info.file_format, "value", str(builder.info.file_format))
    if access == "auto":
        big = int(builder.info.dataset_size or 0) > _records.IN_MEMORY_LIMIT_BYTES
        access = "random" if file_format == "array_record" and big else "memory"
    if access == "random":
        return _load_tfds_records(builder, full_name, root, file_format, class_names)

    def read(split):
        if file_format == "array_record":  # tfds reads ArrayRecord files only by random access
            shape = tuple(features["image"].shape)
            if any(v is None for v in shape):
                raise ValueError(f"{full_name!r} has images of varying size {shape}; augpipe needs one fixed size.")
            images = _records.RecordImages(full_name, split, str(root), shape)
            return np.asarray(images), _records.read_labels(full_name, split, str(root))
        dataset = builder.as_dataset(split=split, batch_size=-1)
        arrays = tfds.as_numpy(dataset)
        return arrays["image"], arrays["label"]

    splits = builder.info.splits
    train = read("train")
    test = read("test") if "test" in splits else None
    return Source.from_arrays(
        train[0],
        train[1],
        test=test,
        num_classes=int(label_feature.num_classes),
        class_names=class_names or None,
        name=f"tfds:{full_name}",
        provenance=(
            f"tfds:{full_name}: tensorflow-datasets in {str(root)!r}: {len(train[0])} "
            f"train" + (f", {len(test[0])} official test" if test else "")
        ),
    )

