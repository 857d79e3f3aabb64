"""Data sources: the `Source` record, its checks, and `load_source` with its registry.

A `Source` is plain numpy: uint8 images `(N, H, W, C)`, int64 labels, the
class names, a human-readable provenance line, and the source's own test split
when it has one. Nothing here touches the network unless `download=True`.

Each kind of spec (`mnist`, `npz:FILE`, `folder:DIR`, ...) is one loader
function registered with `register_source`, which declares the options the
kind takes once: `load_source`, run-mnist's options and config fields, the
"applies only to" checks, the did-you-mean list and the `--source` help of
every command are read from the registry. The loaders live in modules of
their own (`formats`, `tfds_source`, `folder`), imported at the end of this
module so that importing `sources` registers every built-in kind.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Sequence

import numpy as np

from augpipe.pipelines import files as _files
from augpipe.pipelines.files import ImageFiles
from augpipe.pipelines.registry import (  # noqa: F401  (the registry's names, where users find them)
    DATA_DIR_OPTION,
    DOWNLOAD_OPTION,
    SourceKind,
    SourceOption,
    _KINDS,
    _query_options,
    option_owners,
    register_source,
    source_help,
    source_kind,
    source_kinds,
    source_options,
    unregister_source,
)
from augpipe.validation import did_you_mean


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
        official_val: the source's own validation split (a folder's val/),
            or None: `make_splits` then carves one out.
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
    official_val: Optional[LabeledArrays] = None

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


def is_folder_spec(spec) -> bool:
    """Whether a source spec is `folder:DIR` (whose options differ: image size, cache, ...).

    >>> is_folder_spec(" folder:photos"), is_folder_spec("mnist")
    (True, False)
    """
    return isinstance(spec, str) and spec.strip().startswith("folder:")


def load_source(spec, **options) -> Source:
    """Loads a data source from a spec string.

    Specs (each a registered kind; `source_kinds()` lists them):
        - `mnist`: the full MNIST when it is already on this machine (a
          prepared tensorflow-datasets directory, or Keras' cached
          `mnist.npz`), otherwise the embedded 5,000-digit subset. The
          `provenance` says which one was used.
        - `mnist-embedded`: the embedded subset, always.
        - `tfds:NAME[:CONFIG][?access=auto|memory|random]`: a locally
          prepared tensorflow-datasets image classification dataset.
          `download=True` allows fetching it. `access=random` reads a set
          prepared as ArrayRecord record by record (labels in memory, pixels
          on disk); `auto` does so above 1 GiB on disk (see `load_tfds`).
        - `idx:DIR`: the four standard MNIST IDX files, gzipped or raw, with
          labels in 0-9 (`pipelines.formats.load_idx(DIR, num_classes=N)`
          for other label sets).
        - `npz:FILE[?value_range=LOW,HIGH&layout=channels_first]`: a file
          with `x_train`, `y_train` and optionally `x_test`, `y_test` (without
          them `make_splits` carves the test split out of the training data).
        - `folder:DIR`: one subfolder of JPEG/PNG/BMP/GIF images per class
          (`load_folder`); needs `image_size`. Pixels stay on disk.

    Args:
        spec: the spec string (a `Source` is returned unchanged).
        **options: the options of the spec's kind, by their loader keyword:
            `data_dir` and `download` (mnist, tfds), `value_range` and
            `layout` (npz; they override the spec's own), `image_size` and
            the keyword options of `load_folder` (folder). None (and False)
            mean "not given"; an option another kind takes is an error.

    Example:

    >>> src = load_source("mnist-embedded")
    >>> len(src), src.image_shape
    (5000, (28, 28, 1))
    """
    if isinstance(spec, Source):
        return spec
    entry = source_kind(spec)
    spec = spec.strip()
    argument = spec.partition(":")[2]
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    foreign = sorted(k for k in given if entry.option(k) is None)
    if foreign:
        unknown = [k for k in foreign if not option_owners(k)]
        if unknown:
            keywords = sorted({o.loader_keyword for e in _KINDS.values() for o in e.options})
            raise TypeError(f"load_source() got unknown option(s) {', '.join(unknown)}. Expected any of: "
                            f"{', '.join(keywords)}.{did_you_mean(unknown[0], keywords)}")
        owners = sorted({owner for k in foreign for owner in option_owners(k)})
        raise ValueError(
            f"{', '.join(foreign)} apply to {' and '.join(owners)} sources. Received them with {spec!r}, "
            f"a {entry.usage} source, which does not take them. Drop them."
        )
    if any(o.query is not None for o in entry.options):
        argument, _, query = argument.partition("?")
        given = {**_query_options(entry, spec, query), **given}
    return entry.load(argument, **given) if entry.argument else entry.load(**given)


def loader_options(spec, values: dict) -> dict:
    """Loader keywords from config-level values (`memory_budget_mb=2` -> `memory_budget=2097152`).

    `values` maps option names (config fields) to values; those the spec's
    kind does not take must be unset (None or False), else a ValueError
    names them and the kinds that take them.
    """
    entry = source_kind(spec)
    result = {}
    for name, value in values.items():
        if value is None or value is False:
            continue
        option = next((o for o in entry.options if o.name == name), None)
        if option is None:
            raise ValueError(f"{name} applies only to {' and '.join(option_owners(name))} sources. "
                             f"Received it with {spec!r}: drop it.")
        result[option.loader_keyword] = option.loader_value(value)
    return result


# The built-in kinds live in modules of their own (formats, tfds_source, folder), which import
# this one; the package's __init__ imports them, so they are registered before any lookup.
_MOVED = {
    "DOWNLOAD_PROBE_HOSTS": "tfds_source", "DOWNLOAD_PROBE_TIMEOUT_S": "tfds_source",
    "load_embedded_mnist": "formats", "load_idx": "formats", "load_mnist": "formats", "load_npz": "formats",
    "read_idx": "formats", "load_tfds": "tfds_source", "probe_download_hosts": "tfds_source",
    "load_folder": "folder",
}


def __getattr__(name):
    """The loaders earlier versions defined here, from the modules that hold them now (with a warning)."""
    import sys
    import warnings

    if name in _MOVED:
        new = f"augpipe.pipelines.{_MOVED[name]}"
        warnings.warn(f"augpipe.pipelines.sources.{name} is deprecated: use {new}.{name}.", DeprecationWarning,
                      stacklevel=2)
        return getattr(sys.modules[new], name)
    if name == "SPEC_KINDS":
        warnings.warn("augpipe.pipelines.sources.SPEC_KINDS is deprecated: use source_kinds().", DeprecationWarning,
                      stacklevel=2)
        return tuple(kind.usage for kind in source_kinds())
    raise AttributeError(f"module 'augpipe.pipelines.sources' has no attribute {name!r}")
