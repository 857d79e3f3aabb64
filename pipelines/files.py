"""Images that stay on disk: `ImageFiles`, the pixels of a folder source.

A folder source (`load_source("folder:DIR", image_size=(H, W))`) keeps only
paths and labels in memory. Its `Source.images` is an `ImageFiles`: it has a
shape, a length and numpy-style indexing like an image array, but its pixels
are decoded and resized inside the tf.data pipeline, in parallel, before
batching. How a pipeline reads them is the `cache` mode, chosen when the
source is loaded:

- `"memory"`: the decoded source fits the memory budget the user gives
  (`memory_budget`; none by default): it is decoded once, in
  parallel, when the pipeline is built, and every epoch gathers batches from
  it (the in-memory path of every other source).
- `"stream"`: decoded again every epoch, image by image, so memory does not
  grow with the number of images.
- `"file"`: decoded once into a memory-mapped `.npy` file under `cache_dir`
  (keyed by the files' contents and the decode options), then gathered from
  it; the operating system keeps in memory what fits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
from typing import Optional, Sequence

import numpy as np

from augpipe import _startup

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
RESIZE_MODES = ("stretch", "crop", "pad")
CACHE_MODES = ("auto", "memory", "stream", "file")
ON_ERROR = ("raise", "skip")
CHANNELS = (1, 3)
# Memory the decoded source may take before it streams instead: none unless
# the user gives a budget, so memory never grows with the folder's size.
DEFAULT_MEMORY_BUDGET = 0
_DECODE_BATCH = 256


def decode_image(contents, image_size, channels: int, resize: str = "stretch"):
    """In-graph: encoded JPEG/PNG/BMP/GIF bytes -> uint8 `(H, W, channels)`.

    Gray, gray+alpha, RGB and RGBA files all come out with `channels` (1 or
    3): gray is repeated to RGB, RGB is converted to luma (ITU-R 601), alpha
    is dropped. A GIF gives its first frame. `resize`:

    - `"stretch"`: bilinear resize to `(H, W)`, ignoring the aspect ratio.
    - `"crop"`: the largest central crop with the target aspect ratio, resized.
    - `"pad"`: resized to fit inside `(H, W)` keeping the aspect ratio, then
      zero-padded around (`tf.image.resize_with_pad`).
    """
    import tensorflow as tf

    height, width = int(image_size[0]), int(image_size[1])
    # The decoders convert to RGB themselves (measured: about 1.7x the
    # images/s of decoding as stored and converting after).
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    image.set_shape([None, None, channels])
    if resize == "crop":
        size = tf.shape(image)
        h, w = tf.cast(size[0], tf.float64), tf.cast(size[1], tf.float64)
        target = width / height
        crop_h = tf.cast(tf.minimum(h, tf.round(w / target)), tf.int32)
        crop_w = tf.cast(tf.minimum(w, tf.round(h * target)), tf.int32)
        crop_h, crop_w = tf.maximum(crop_h, 1), tf.maximum(crop_w, 1)
        image = tf.image.crop_to_bounding_box(image, (size[0] - crop_h) // 2, (size[1] - crop_w) // 2, crop_h, crop_w)
    if resize == "pad":
        resized = tf.image.resize_with_pad(image, height, width)
    else:
        resized = tf.image.resize(image, (height, width))
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    return tf.ensure_shape(resized, (height, width, channels))


def _tf_error_text(error) -> str:
    """The readable part of a TensorFlow error: 'Invalid JPEG data ...', not the node names."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\]", "", text)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _check_options(image_size, channels, resize) -> tuple:
    try:
        size = tuple(int(v) for v in image_size)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1 or any(float(a) != b for a, b in zip(image_size, size)):
        raise ValueError(
            f"Received: image_size={image_size!r}. Expected (height, width), two positive integers, e.g. "
            "(64, 64) (run-mnist, profile-input: --image-size 64 64)."
        )
    if channels not in CHANNELS:
        raise ValueError(f"Received: channels={channels!r}. Expected 1 (gray) or 3 (RGB), or None to detect.")
    if resize not in RESIZE_MODES:
        raise ValueError(f"Received: resize={resize!r}. Expected one of: {', '.join(RESIZE_MODES)}.")
    return size


def path_tensor(paths):
    """File paths as a string tensor of their file-system bytes, so any name works."""
    import tensorflow as tf

    return tf.constant(np.asarray([os.fsencode(p) for p in paths], dtype=object), dtype=tf.string)


class ImagesOnDisk:
    """What a source's `images` may be besides a uint8 array: an array-like whose pixels are read when needed.

    It has `len`, `shape`, `dtype` (uint8), numpy-style indexing (an int
    reads one image; an index array, slice or mask gives another such
    object) and `np.asarray` (reads them all). Subclasses give `__len__`,
    `item_shape` `(H, W, C)`, `decode(indices)`, `_subset(index)`,
    `digests()` and the pipeline's `gather_fn()`.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def shape(self) -> tuple:
        return (len(self), *self.item_shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.decode(np.asarray([index]))[0]
        return self._subset(index)

    def __array__(self, dtype=None, copy=None):
        images = self.decode(np.arange(len(self)))
        return images if dtype is None else images.astype(dtype)


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFiles(ImagesOnDisk):
    """Image files read as a uint8 array `(N, H, W, C)` without holding the pixels.

    It is what a folder source's `images` are: `len`, `shape`, numpy-style
    indexing (`files[idx]` with an index array, slice or mask is another
    `ImageFiles`; `files[i]` decodes one image) and `np.asarray(files)`
    (decodes all of them, in parallel) behave like an array's. Pipelines decode
    inside tf.data (see the module docstring for the `cache` modes).

    Attributes:
        paths: the file paths, one per image.
        image_size: `(H, W)` every image is resized to.
        channels: 1 or 3.
        resize: `"stretch"`, `"crop"` or `"pad"` (see `decode_image`).
        cache: how pipelines read them: `"memory"`, `"stream"` or `"file"`.
        cache_dir: where `"file"` keeps its decoded copy.
    """

    paths: np.ndarray
    image_size: tuple
    channels: int
    resize: str = "stretch"
    cache: str = "memory"
    cache_dir: Optional[str] = None

    def __post_init__(self):
        object.__setattr__(self, "paths", np.asarray([str(p) for p in self.paths], dtype=object))
        object.__setattr__(self, "image_size", _check_options(self.image_size, self.channels, self.resize))
        if self.cache not in CACHE_MODES[1:]:
            raise ValueError(f"Received: cache={self.cache!r}. Expected one of: {', '.join(CACHE_MODES[1:])}.")
        if self.cache == "file" and not self.cache_dir:
            raise ValueError("cache='file' needs a cache_dir: the folder for the decoded copy.")

    @property
    def item_shape(self) -> tuple:
        return (*self.image_size, self.channels)

    def __len__(self) -> int:
        return len(self.paths)

    def _subset(self, index) -> "ImageFiles":
        return dataclasses.replace(self, paths=self.paths[index])

    def __repr__(self) -> str:
        return (f"ImageFiles({len(self)} files -> {self.image_size[0]}x{self.image_size[1]}x{self.channels}, "
                f"resize={self.resize!r}, cache={self.cache!r})")

    def digests(self) -> list:
        """One 16-byte BLAKE2b digest per file's contents (read once, then kept)."""
        cached = self.__dict__.get("_digests")
        if cached is None:
            cached = []
            for path in self.paths:
                digest = hashlib.blake2b(digest_size=16)
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
                cached.append(digest.digest())
            object.__setattr__(self, "_digests", cached)
        return cached

    def loader(self):
        """In-graph: an index -> the decoded, resized uint8 image of that file."""
        import tensorflow as tf

        paths = path_tensor(self.paths)
        size, channels, resize = self.image_size, self.channels, self.resize

        def load(index):
            return decode_image(tf.io.read_file(tf.gather(paths, index)), size, channels, resize)

        return load

    def dataset(self, indices=None):
        """A tf.data dataset of decoded images (in `indices` order), decoded in parallel."""
        import tensorflow as tf

        indices = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        return tf.data.Dataset.from_tensor_slices(indices).map(
            self.loader(), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def decode(self, indices=None) -> np.ndarray:
        """Decodes the images (all, or those at `indices`) into one uint8 numpy array."""
        count = len(self) if indices is None else len(indices)
        out = np.empty((count, *self.shape[1:]), np.uint8)
        self._decode_into(out, indices)
        return out

    def _decode_into(self, out, indices=None) -> None:
        position = 0
        try:
            for batch in self.dataset(indices).batch(_DECODE_BATCH).as_numpy_iterator():
                out[position : position + len(batch)] = batch
                position += len(batch)
        except Exception as error:  # tf.errors.OpError, raised by a file changed since it was checked
            raise ValueError(
                f"Could not decode an image file near position {position} of {len(out)}: {_tf_error_text(error)}. "
                "A file changed or disappeared after the source was loaded; load the source again."
            ) from None

    def cache_file(self) -> pathlib.Path:
        """The `.npy` file of the decoded images in the file cache (written on first use)."""
        digest = hashlib.sha256()
        digest.update(repr((self.image_size, self.channels, self.resize)).encode())
        for item in self.digests():
            digest.update(item)
        root = pathlib.Path(self.cache_dir).expanduser()
        path = root / f"augpipe-{digest.hexdigest()[:20]}-{len(self)}x{self.image_size[0]}x{self.image_size[1]}x{self.channels}.npy"
        if not path.exists():
            root.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=self.shape)
            try:
                self._decode_into(array)
                array.flush()
                del array
                os.replace(partial, path)
            finally:
                if partial.exists():
                    partial.unlink()
        return path

    def gather_fn(self):
        """For `cache` "memory" and "file": a batch of indices -> uint8 images (in-graph)."""
        import tensorflow as tf

        if self.cache == "memory":
            images = tf.constant(self.decode())
            return lambda index: tf.gather(images, index)
        mapped = np.load(self.cache_file(), mmap_mode="r")
        shape = self.shape[1:]

        def gather(index):
            batch = tf.numpy_function(lambda i: np.ascontiguousarray(mapped[i]), [index], tf.uint8, stateful=False)
            batch.set_shape((None, *shape))
            return batch

        return gather


def _sorted_walk(root: pathlib.Path):
    """Files under `root` in sorted order, skipping hidden files and folders."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield pathlib.Path(folder) / name


def _check_extensions(extensions) -> tuple:
    if extensions is None:
        return IMAGE_EXTENSIONS
    words = extensions.split(",") if isinstance(extensions, str) else extensions
    cleaned = tuple(sorted({("." + e.strip().lstrip(".")).lower() for e in words if e.strip()}))
    unknown = [e for e in cleaned if e not in IMAGE_EXTENSIONS]
    if not cleaned or unknown:
        raise ValueError(
            f"Received: extensions={extensions!r}. Expected some of: {', '.join(IMAGE_EXTENSIONS)} "
            "(the formats augpipe decodes)."
        )
    return cleaned


def scan_folder(directory, extensions=None) -> tuple:
    """The class-per-subfolder tree under `directory`: `(paths, labels, class_names, ignored)`.

    Class names are the sorted names of the (non-hidden) subfolders; each
    class takes the image files anywhere below its folder, in sorted order.
    Hidden files and folders are skipped; other files (wrong extension, or
    not inside a class folder) are counted in `ignored`.
    """
    root = pathlib.Path(directory).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Image folder not found: {str(root)!r}. Expected a folder with one subfolder of images per class."
        )
    extensions = _check_extensions(extensions)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not class_dirs:
        found = f"{len(loose)} file(s) and no subfolders" if loose else "nothing"
        raise ValueError(
            f"Image folder {str(root)!r} holds {found}. Expected one subfolder per class, each holding "
            f"image files ({', '.join(IMAGE_EXTENSIONS)}): DIR/cat/1.jpg, DIR/dog/2.png, ..."
        )
    paths, labels, ignored, empty = [], [], len(loose), []
    for label, folder in enumerate(class_dirs):
        count = 0
        for path in _sorted_walk(folder):
            if path.suffix.lower() in extensions and path.is_file():
                paths.append(str(path))
                labels.append(label)
                count += 1
            else:
                ignored += 1
        if not count:
            empty.append(folder.name)
    if empty:
        raise ValueError(
            f"Class folder(s) {', '.join(repr(e) for e in empty)} in {str(root)!r} hold no image files "
            f"({', '.join(extensions)}). Expected at least one image per class: add images, or move the "
            "empty folder out."
        )
    return paths, np.asarray(labels, np.int64), tuple(d.name for d in class_dirs), ignored


def check_files(paths: Sequence[str]) -> tuple:
    """Decodes every file once, in parallel: `(channels found per file, {index: error})`.

    A file whose decoding fails has channels 0 and an entry in the errors.
    """
    import tensorflow as tf

    paths = list(paths)
    encoded = path_tensor(paths)

    def probe(index):
        image = tf.io.decode_image(tf.io.read_file(tf.gather(encoded, index)), channels=0, expand_animations=False)
        return index, tf.shape(image)[-1]

    dataset = tf.data.Dataset.range(len(paths)).map(probe, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    found = np.zeros(len(paths), np.int64)
    errors = {}
    # libjpeg prints its own lines about a bad file on file descriptor 2; the errors returned here name it.
    with _startup.filtered_stderr(drop=_startup.is_decoder_noise):
        for index, channels in dataset.ignore_errors().batch(1024).as_numpy_iterator():
            found[index] = channels
        for index in np.flatnonzero(found == 0):
            try:
                tf.io.decode_image(tf.io.read_file(encoded[index]), channels=0, expand_animations=False)
                errors[int(index)] = "could not be decoded"
            except Exception as error:  # tf.errors.OpError: the decoder's message names the problem
                errors[int(index)] = _tf_error_text(error)
    return found, errors


def resolve_cache(cache: str, nbytes: int, memory_budget: Optional[int], cache_dir) -> str:
    """The cache mode for a decoded size: `"auto"` picks memory within the budget, else file or stream.

    Example:

    >>> resolve_cache("auto", 64 * 64 * 3 * 5000, memory_budget=100 << 20, cache_dir=None)
    'memory'
    >>> resolve_cache("auto", 64 * 64 * 3 * 5000, memory_budget=None, cache_dir=None)
    'stream'
    >>> resolve_cache("auto", 64 * 64 * 3 * 5000, memory_budget=None, cache_dir="decoded")
    'file'
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"Received: cache={cache!r}. Expected one of: {', '.join(CACHE_MODES)}.")
    if cache != "auto":
        return cache
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if nbytes <= budget:
        return "memory"
    return "file" if cache_dir else "stream"
