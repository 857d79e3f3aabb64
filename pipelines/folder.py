"""Folder sources: `folder:DIR`, one subfolder of image files per class (see `files` for decoding)."""

from __future__ import annotations

import pathlib

from augpipe.pipelines import files as _files
from augpipe.pipelines.sources import Source, SourceOption, register_source

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
)


@register_source("folder", usage="folder:DIR", options=FOLDER_OPTIONS,
                 help="one subfolder of JPEG/PNG/BMP/GIF images per class; needs --image-size")
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

