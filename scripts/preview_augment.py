"""`preview-augment`: a grid of what a policy does, one row per strength, the same images in every row.

Example (the library function the command wraps):

>>> import numpy as np
>>> grid = augment_grid(np.zeros((3, 8, 8, 1), np.uint8), "mnist", [0.0, 1.0], seed=0)
>>> grid.shape
(2, 3, 8, 8, 1)
"""

from __future__ import annotations

import pathlib
import sys
from typing import Optional, Sequence

import click
import numpy as np

from augpipe import _startup, pipelines
from augpipe.scripts._cli import ImageSizeOption, fixed_strengths, one_line_errors


def augment_grid(images: np.ndarray, policy, strengths: Sequence[float], seed: int = 0) -> np.ndarray:
    """`(len(strengths), N, H, W, C)` uint8: `images` augmented at each strength.

    Every row draws the same random numbers (the same seed and batch key),
    so a column shows one image's augmentation growing with the strength.
    """
    import tensorflow as tf

    from augpipe import augment

    rows = []
    for strength in strengths:
        layer = augment.Augment(policy, strength=strength, seed=seed)
        augmented, _ = layer.keyed_batch(tf.constant(images), None, tf.constant([0, 0], tf.int64))
        rows.append(augmented.numpy())
    return np.stack(rows)


def applied_ops(images: np.ndarray, policy, strengths: Sequence[float], seed: int = 0):
    """`[row][column]` lists of the op names each image of `augment_grid` took, or None for a policy
    that does not choose ops per image (augmix, none)."""
    from augpipe import augment

    names = []
    for strength in strengths:
        layer = augment.Augment(policy, strength=strength, seed=seed)
        row = layer.keyed_ops(images, [0, 0])
        if row is None:
            return None
        names.append(row)
    return names


def load_preview_images(source: str, files: Sequence[str], samples: int, seed: int, image_size) -> tuple:
    """`(images, captions)`: the `files` (resized to `image_size`, colour) captioned by file name, or a
    class-balanced seeded sample of `source` (one image per class, then a second, ...) captioned by class."""
    if files:
        from PIL import Image

        height, width = image_size
        loaded = []
        for name in files:
            try:
                with Image.open(name) as image:
                    loaded.append(np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR)))
            except OSError as error:
                raise ValueError(f"Cannot read {name!r} as an image ({error}). Pass JPEG, PNG, BMP or GIF files.")
        picks = [i % len(loaded) for i in range(samples)]
        return np.stack([loaded[i] for i in picks]), [pathlib.Path(files[i]).name for i in picks]
    folder = pipelines.sources.is_folder_spec(source)
    loaded = pipelines.load_source(source, image_size=tuple(image_size) if folder else None)
    picks = pipelines.splits.balanced_sample(loaded.labels, samples, seed)
    return np.asarray(loaded.images[picks]), [loaded.class_names[label] for label in loaded.labels[picks]]


def save_grid(grid: np.ndarray, strengths: Sequence[float], path: pathlib.Path, title: str,
              captions: Optional[Sequence[str]] = None, ops_applied=None) -> None:
    """The grid as a PNG: one row per strength; each column captioned (its class), each tile its ops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = grid.shape[:2]
    figure, axes = plt.subplots(rows, columns, figsize=(1.5 * columns + 0.9, 1.6 * rows + 0.6), squeeze=False)
    for row in range(rows):
        for column in range(columns):
            axis = axes[row][column]
            image = grid[row, column]
            if image.shape[-1] == 1:
                axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0 and captions is not None:
                axis.set_title(str(captions[column])[:18], fontsize=8)
            if ops_applied is not None:
                chosen = ops_applied[row][column]
                axis.set_xlabel(", ".join(chosen)[:28] if chosen else "(no op)", fontsize=6)
        axes[row][0].set_ylabel(f"strength {strengths[row]:g}", fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--policy", default="mnist",
              help='A policy name, a JSON spec (\'{"name": "ops", "config": {"ops": ["rotate"]}}\') or a .json file.')
@click.option("--source", default="mnist-embedded",
              help=pipelines.sources.source_help() + " Ignored with --image; a folder is resized to --image-size.")
@click.option("--image", "files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="An image file to preview (JPEG, PNG, ...); repeat for several.")
@click.option("--image-size", cls=ImageSizeOption, default=(128, 128),
              help="Size --image files and folder: sources are resized to (one number: square).")
@click.option("--strength", "--strengths", "strengths", default="0,0.25,0.5,1", callback=fixed_strengths,
              help="One row per strength, comma-separated; each a number in [0, 1], constant:X or off "
                   "(run-mnist's grammar).")
@click.option("--samples", type=click.IntRange(min=1, max=64), default=8,
              help="Images per row: one per class in turn (class-balanced), each captioned with its class.")
@click.option("--seed", type=int, default=0)
@click.option("--out", type=click.Path(dir_okay=False), default="augment_preview.png", help="The PNG to write.")
@one_line_errors("preview-augment")
def main(policy, source, files, image_size, strengths, samples, seed, out):
    """Draw what an augmentation policy does: one row per strength, the same
    images and the same random draws in every row."""
    _startup.quiet_tensorflow_startup()  # TensorFlow is first imported here, not for --help
    from augpipe.scripts.profiling import resolve_policy

    blocked = next((p for p in pathlib.Path(out).parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise click.BadParameter(f"{out!r} is below {str(blocked)!r}, which is a file. Choose another path.",
                                 param_hint="--out")
    try:
        spec = resolve_policy(policy)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--policy") from None
    try:
        images, captions = load_preview_images(source, files, samples, seed, image_size)
        grid = augment_grid(images, spec, strengths, seed)
        chosen = applied_ops(images, spec, strengths, seed)
    except (ValueError, FileNotFoundError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    name = spec if isinstance(spec, str) else spec.get("name", "policy")
    path = pathlib.Path(out)
    try:
        save_grid(grid, strengths, path, f"{name}, seed {seed}", captions, chosen)
    except OSError as error:
        click.echo(f"Error: cannot write {out!r}: {error.strerror or error}.", err=True)
        sys.exit(1)
    click.echo(f"wrote {path} ({len(strengths)} strengths x {len(images)} images)")


if __name__ == "__main__":
    main()
