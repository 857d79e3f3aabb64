"""Folder sources: `folder:DIR`, one subfolder of image files per class (see `files` for decoding)."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from augpipe.pipelines import files as _files
from augpipe.pipelines.sources import LabeledArrays, Source, SourceOption, register_source

FOLDER_OPTIONS = (
    SourceOption("image_size", "folder: resize every image to H W (one number: square). The model adapts to it.",
                 kind="image_size", convert=tuple),
    SourceOption("channels", "folder: 1 (gray) or 3 (RGB). Default: 3 if any image has colour.",
                 kind="int_choice", choices=_files.CHANNELS),
    SourceOption("resize", "folder: stretch to the size (default), or keep the aspect ratio: central crop or zero pad.",
                 kind="choice", choices=_files.RESIZE_MODES),
    SourceOption("skip_bad_images", "folder: leave out (and count) files that fail to decode instead of stopping "
                 "with an error.", kind="flag", keyword="on_error", convert=lambda skip: "skip" if skip else None),
    SourceOption("cache", "folder: keep decoded images in memory, decode every epoch (stream), or in a file cache "
                 "(--cache-dir). Default auto: memory within --memory-budget, else file (with --cache-dir) or stream.",
                 kind="choice", choices=_files.CACHE_MODES, resumable=True),
    SourceOption("memory_budget_mb", "folder: memory the decoded images may take; within it they are decoded once "
                 "and kept (default 0: decoded every epoch, memory independent of the folder's size).",
                 kind="count", metavar="MB", flag="--memory-budget", keyword="memory_budget",
                 convert=lambda megabytes: int(megabytes) << 20, resumable=True),
    SourceOption("cache_dir", "folder: where the file cache of decoded images lives.", kind="directory",
                 convert=str, resumable=True),
    SourceOption("extensions", "folder: the file extensions to read (default: JPEG, PNG, BMP, GIF).", command=False),
    SourceOption("class_names", "folder: the classes and their order (every class folder among them).",
                 command=False),
)


# Subfolder names that make a folder a split layout (DIR/train/<class>/..., DIR/test/<class>/...).
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@register_source("folder", usage="folder:DIR", options=FOLDER_OPTIONS,
                 help="one subfolder of JPEG/PNG/BMP/GIF images per class, or train/ [val/] [test/] folders "
                      "of class folders; needs --image-size")
def load_folder(directory, *, image_size=None, channels=None, resize="stretch", extensions=None,
                on_error="raise", cache="auto", memory_budget=None, cache_dir=None, class_names=None) -> Source:
    """Loads a class-per-subfolder tree of image files (`folder:DIR`), or one laid out by split.

    `DIR/<class>/.../<image>`: class names are the sorted subfolder names;
    each class takes the JPEG, PNG, BMP and GIF files anywhere below its
    folder (`extensions` narrows that). Hidden files and folders are skipped,
    other files ignored (counted in the provenance). The pixels stay on disk
    (see `Source.from_files` for the options).

    Split layout: when the subfolders of `DIR` are split names (`train`,
    `val`/`valid`/`validation`, `test`), each holding class folders, `train/`
    is the source, `test/` its own test split (`official_test`) and `val/` its
    own validation split (`official_val`); without them `make_splits` carves
    them out of `train/` as usual. Class indices follow the training classes
    by name: a val or test folder may lack a class, but a class it has and
    `train/` has not is an error. A folder that mixes split names and other
    names is refused.

    `class_names` fixes the classes and their order (as Keras'
    `image_dataset_from_directory` does): every class folder must be one of
    them, and a name without a folder is a class with no images.

    Example:

    >>> load_folder("no/such/folder", image_size=(64, 64))
    Traceback (most recent call last):
    ...
    FileNotFoundError: Image folder not found: 'no/such/folder'. Expected a folder with one subfolder of images per class.
    """
    root = pathlib.Path(directory).expanduser()
    layout = _split_layout(root)
    # Scanned first, so a missing or empty folder is reported before a missing image size.
    parts = {split: _files.scan_folder(folder, extensions) for split, folder in layout.items()} if layout \
        else {None: _files.scan_folder(root, extensions)}
    if image_size is None:
        raise ValueError(
            f"Folder source {str(root)!r} needs an image size: its files may have any size. Pass "
            "image_size=(H, W) (run-mnist, profile-input, preview-augment: --image-size H W)."
        )
    options = dict(image_size=image_size, channels=channels, resize=resize, on_error=on_error, cache=cache,
                   memory_budget=memory_budget, cache_dir=cache_dir, name="folder")
    if not layout:
        paths, labels, found, ignored = parts[None]
        names, labels = _align(found, labels, class_names, str(root))
        provenance = (
            f"folder: {str(root)!r}: {len(paths)} image files in {len(found)} class folder(s)"
            + (f", {ignored} other file(s) ignored" if ignored else "")
        )
        return Source.from_files(paths, labels, class_names=names, provenance=provenance, **options)
    names, train_labels = _align(parts["train"][2], parts["train"][1], class_names, str(layout["train"]))
    paths, labels, split_of, ignored = [], [], [], 0
    for split, (split_paths, split_labels, found, split_ignored) in parts.items():
        if split != "train":
            unknown = sorted(set(found) - set(names))
            if unknown:
                raise ValueError(
                    f"{layout[split].name}/ has class folder(s) {', '.join(map(repr, unknown))} that train/ lacks "
                    f"(in {str(root)!r}). Every class a {split} split holds must be trained: add its images to "
                    "train/, or move the folder out."
                )
            split_labels = np.asarray([names.index(found[label]) for label in split_labels], np.int64)
        else:
            split_labels = train_labels
        paths += split_paths
        labels += list(split_labels)
        split_of += [split] * len(split_paths)
        ignored += split_ignored
    counts = ", ".join(f"{len(parts[s][0])} {s}" for s in parts)
    provenance = (
        f"folder: {str(root)!r}: {' + '.join(layout[s].name + '/' for s in parts)} of {len(names)} class folder(s): "
        f"{counts} image files" + (f", {ignored} other file(s) ignored" if ignored else "")
    )
    source = Source.from_files(paths, labels, class_names=names, provenance=provenance, **options)
    where = dict(zip(paths, split_of))
    part = np.asarray([where[str(p)] for p in source.images.paths])

    def take(split):
        index = np.flatnonzero(part == split)
        return (source.images[index], source.labels[index]) if index.size else None

    val, test = take("val"), take("test")
    train_images, train_labels = take("train")
    return dataclasses.replace(
        source, images=train_images, labels=train_labels,
        official_test=None if test is None else LabeledArrays(*test),
        official_val=None if val is None else LabeledArrays(*val),
    )


def _split_layout(root: pathlib.Path) -> dict:
    """`{"train": DIR/train, "val": ..., "test": ...}` when `root`'s subfolders are split names, else {}."""
    if not root.is_dir():
        return {}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    splits = [p for p in folders if p.name.lower() in SPLIT_FOLDERS]
    if not splits:
        return {}
    others = [p for p in folders if p.name.lower() not in SPLIT_FOLDERS]
    if others:
        raise ValueError(
            f"Image folder {str(root)!r} mixes split folders ({', '.join(repr(p.name) for p in splits)}) with "
            f"other folders ({', '.join(repr(p.name) for p in others)}). Expected either class folders only, or "
            "split folders only (train/, val/, test/), each holding class folders."
        )
    layout = {}
    for folder in splits:
        split = SPLIT_FOLDERS[folder.name.lower()]
        if split in layout:
            raise ValueError(f"Image folder {str(root)!r} has two {split} folders: {layout[split].name!r} and "
                             f"{folder.name!r}. Keep one.")
        layout[split] = folder
    if "train" not in layout:
        raise ValueError(f"Image folder {str(root)!r} has {', '.join(p.name + '/' for p in splits)} but no train/. "
                         "Expected train/ holding one folder of images per class.")
    return {split: layout[split] for split in ("train", "val", "test") if split in layout}


def _align(found: tuple, labels: np.ndarray, class_names, where: str) -> tuple:
    """Class names and labels: the folders' own, or re-indexed into the given `class_names`."""
    if class_names is None:
        return found, labels
    names = tuple(str(n) for n in class_names)
    if len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names!r}. Expected each class once.")
    unknown = [name for name in found if name not in names]
    if unknown:
        raise ValueError(f"Image folder {where!r} has class folder(s) {', '.join(map(repr, unknown))} not in "
                         f"class_names {names!r}. Add them to class_names, or move the folders out.")
    return names, np.asarray([names.index(found[label]) for label in labels], np.int64)
