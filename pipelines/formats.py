"""File formats and the MNIST sources: `mnist`, `mnist-embedded`, `idx:DIR` and `npz:FILE`.

Example:

>>> load_npz("no/such/file.npz")
Traceback (most recent call last):
...
FileNotFoundError: npz file not found: 'no/such/file.npz'. ...
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
import struct
import zipfile

import numpy as np

from augpipe.pipelines.sources import DATA_DIR_OPTION, DOWNLOAD_OPTION, LAYOUTS, Source, SourceOption, register_source


def _value_range(text: str) -> tuple:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError("Expected two numbers, e.g. value_range=0,1.") from None
    return (low, high)


NPZ_OPTIONS = (
    SourceOption("value_range", "npz: the value range of float images (default 0 255), e.g. --value-range 0 1.",
                 kind="float_pair", metavar="LOW HIGH", convert=tuple, query=_value_range),
    SourceOption("layout", "npz: the array layout; channels_first arrays (N, C, H, W) are transposed.",
                 kind="choice", choices=LAYOUTS, query=str),
)


def _keras_mnist_cache() -> pathlib.Path:
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return pathlib.Path(keras_home) / "datasets" / "mnist.npz"


@register_source("mnist", usage="mnist", argument=False, options=(DATA_DIR_OPTION, DOWNLOAD_OPTION),
                 help="the full MNIST when it is on this machine, else the embedded subset")
def load_mnist(data_dir=None, download: bool = False) -> Source:
    """The full MNIST when it is on this machine (prepared tfds, or Keras' cache), else the embedded subset."""
    # Importing tensorflow-datasets takes seconds, so only do it when a
    # prepared directory is actually there (or a download was asked for).
    from augpipe.pipelines.tfds_source import load_tfds, tfds_data_dir

    if (tfds_data_dir(data_dir) / "mnist").is_dir() or download:
        try:
            source = load_tfds("mnist", None, data_dir=data_dir, download=download)
        except FileNotFoundError:
            if download:
                raise
        else:
            return dataclasses.replace(
                source, name="mnist", provenance="mnist: the full MNIST from " + source.provenance
            )
    cache = _keras_mnist_cache()
    if cache.is_file():
        source = load_npz(str(cache))
        return dataclasses.replace(
            source,
            name="mnist",
            provenance="mnist: the full MNIST from Keras' cache, " + source.provenance,
        )
    embedded = load_embedded_mnist()
    return dataclasses.replace(
        embedded,
        provenance=(
            "mnist: the full MNIST is not on this machine, so using the "
            + embedded.provenance
        ),
    )


# The embedded subset: 5,000 MNIST digits, 500 per class, as uint8 arrays (data/README.md: source and licence).
EMBEDDED_MNIST = "data/mnist_5k.npz"


@register_source("mnist-embedded", usage="mnist-embedded", argument=False,
                 help="the embedded 5,000-digit subset, always")
def load_embedded_mnist() -> Source:
    """The 5,000-digit MNIST subset (500 per class) shipped inside augpipe, read with `importlib.resources`."""
    from importlib import resources

    with resources.files("augpipe").joinpath(EMBEDDED_MNIST).open("rb") as handle:
        with np.load(handle, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"].astype(np.int64)
    return Source.from_arrays(
        images,
        labels,
        num_classes=10,
        name="mnist-embedded",
        provenance=(
            "mnist-embedded: the 5,000-digit MNIST subset embedded in augpipe "
            "(500 per class, no official test split)"
        ),
    )


# --------------------------------------------------------------------------
# IDX and npz files

_IDX_NAMES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find_idx_file(directory: pathlib.Path, key: str) -> pathlib.Path:
    candidates = [directory / (stem + ext) for stem in _IDX_NAMES[key] for ext in ("", ".gz")]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"No {key.replace('_', ' ')} IDX file in {str(directory)!r}. Expected one of: "
        f"{', '.join(p.name for p in candidates)}."
    )


_READ_CHUNK = 1 << 20


def _read_at_most(handle, limit: int) -> bytes:
    """Up to `limit` bytes, read in chunks, so a lying header or a gzip bomb never sizes an allocation."""
    chunks, size = [], 0
    while size < limit:
        chunk = handle.read(min(_READ_CHUNK, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_idx(path) -> np.ndarray:
    """Reads one IDX file (gzipped or raw) into a numpy array, with checks.

    The header is read first; the body is read only up to the size the
    header declares (plus one byte, to detect trailing data), in chunks, so
    a corrupt or hostile file cannot make it allocate more than the data it
    really holds.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {str(path)!r}.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            head = _read_at_most(handle, 4)
            if len(head) < 4:
                raise ValueError(f"IDX file {str(path)!r} is too short ({len(head)} bytes) to hold a header.")
            zero, dtype_code, ndim = struct.unpack(">HBB", head)
            if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
                raise ValueError(
                    f"IDX file {str(path)!r} has a wrong magic number 0x{head.hex()}. "
                    "Expected 0x00000801 (labels) or 0x00000803 (images) for uint8 "
                    "MNIST-style data."
                )
            dims_bytes = _read_at_most(handle, 4 * ndim)
            if len(dims_bytes) < 4 * ndim:
                raise ValueError(f"IDX file {str(path)!r} is truncated inside its header.")
            dims = struct.unpack(">" + "I" * ndim, dims_bytes)
            body_size = int(np.prod(dims, dtype=np.int64))
            if opener is open and path.stat().st_size != 4 + 4 * ndim + body_size:
                body = b""  # checked below without reading a byte of the body
                actual = path.stat().st_size - 4 - 4 * ndim
            else:
                body = _read_at_most(handle, body_size + 1)
                actual = len(body)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ValueError(f"Could not read IDX file {str(path)!r}: {error}.") from None
    if actual != body_size:
        raise ValueError(
            f"IDX file {str(path)!r} holds {actual}{'+' if actual > body_size else ''} data bytes but its "
            f"header declares dimensions {dims}, which need {body_size}. The "
            "file is truncated or corrupt; download it again."
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


@register_source("idx", usage="idx:DIR", help="the four MNIST IDX files in DIR, gzipped or raw")
def load_idx(directory, num_classes: int = 10) -> Source:
    """Loads the four standard MNIST IDX files from a directory.

    Labels must lie in `[0, num_classes)` (10, MNIST's digits, by default);
    a label outside is an error, never a silently larger class count.
    """
    root = pathlib.Path(directory).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"IDX directory not found: {str(root)!r}. Expected a directory "
            "holding train-images-idx3-ubyte[.gz] and its three siblings."
        )
    paths = {key: _find_idx_file(root, key) for key in _IDX_NAMES}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for key in ("train_images", "test_images"):
        if arrays[key].ndim != 3:
            raise ValueError(f"{paths[key].name} holds labels, expected images (3-D IDX).")
    for key in ("train_labels", "test_labels"):
        if arrays[key].ndim != 1:
            raise ValueError(f"{paths[key].name} holds images, expected labels (1-D IDX).")
    return Source.from_arrays(
        arrays["train_images"],
        arrays["train_labels"],
        test=(arrays["test_images"], arrays["test_labels"]),
        num_classes=num_classes,
        name="idx",
        provenance=(
            f"idx: IDX files in {str(root)!r}: {len(arrays['train_images'])} "
            f"train, {len(arrays['test_images'])} official test"
        ),
    )


@register_source("npz", usage="npz:FILE[?value_range=0,1&layout=...]", options=NPZ_OPTIONS,
                 help="x_train, y_train and optionally x_test, y_test")
def load_npz(path, value_range=(0, 255), layout: str = "channels_last") -> Source:
    """Loads an npz file with `x_train`, `y_train` and, optionally, `x_test`, `y_test`.

    Never unpickles: object arrays are refused.
    """
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"npz file not found: {str(file)!r}. Expected a file with keys "
            "x_train, y_train (and optionally x_test, y_test: Keras' mnist.npz layout)."
        )
    try:
        # Never allow_pickle: a pickle in a data file can run any code.
        with np.load(file, allow_pickle=False) as data:
            missing = [k for k in ("x_train", "y_train") if k not in data]
            if missing:
                raise ValueError(
                    f"npz file {str(file)!r} lacks keys {missing}. Found keys "
                    f"{sorted(data.files)}; expected x_train, y_train (and optionally x_test, y_test)."
                )
            has_test = [k for k in ("x_test", "y_test") if k in data]
            if len(has_test) == 1:
                raise ValueError(
                    f"npz file {str(file)!r} has {has_test[0]} without its partner. Expected both x_test and "
                    "y_test, or neither (then the test split is carved out of the training data)."
                )
            arrays = {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in data}
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise
        raise ValueError(
            f"npz file {str(file)!r} holds object (pickled) arrays. augpipe never loads pickles, which "
            "can run arbitrary code. Save plain numeric arrays (np.savez with uint8 or float images and "
            "integer labels)."
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"Could not read npz file {str(file)!r} ({type(error).__name__}: {error}). Expected a zip "
            "archive written by np.savez or np.savez_compressed; the file is truncated or not an npz."
        ) from None
    test = (arrays["x_test"], arrays["y_test"]) if "x_test" in arrays else None
    counts = f"{len(arrays['x_train'])} train, " + (f"{len(arrays['x_test'])} official test" if test else "no test split")
    return Source.from_arrays(
        arrays["x_train"],
        arrays["y_train"],
        test=test,
        value_range=value_range,
        layout=layout,
        name="npz",
        provenance=f"npz: {str(file)!r}: {counts}",
    )

