"""A folder of drawn shapes for trying folder sources, tests and benchmarks: `write_shapes_folder`."""

from __future__ import annotations

import pathlib

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")


def _draw(draw, shape: str, box: tuple, fill) -> None:
    left, top, right, bottom = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=fill)
    else:
        bar_w = (right - left) / 3.5
        bar_h = (bottom - top) / 3.5
        middle_x, middle_y = (left + right) / 2, (top + bottom) / 2
        draw.rectangle((middle_x - bar_w / 2, top, middle_x + bar_w / 2, bottom), fill=fill)
        draw.rectangle((left, middle_y - bar_h / 2, right, middle_y + bar_h / 2), fill=fill)


def write_shapes_folder(root, per_class: int = 200, *, seed: int = 0, min_size: int = 40, max_size: int = 120,
                        shapes=SHAPES, gray_fraction: float = 0.25, png_fraction: float = 0.5) -> pathlib.Path:
    """Writes `root/<shape>/<n>.jpg|png`: `per_class` images of each shape, and returns `root`.

    Each image has a random size in `[min_size, max_size]` per side, a random
    dark background and a light shape, both of random colours, at a random place
    and scale (a third to nine tenths of the shorter side). A
    `gray_fraction` of them are saved grayscale, a `png_fraction` as PNG,
    the rest as JPEG (quality 90). The same seed writes the same files.

    Example:

    >>> import tempfile
    >>> folder = write_shapes_folder(tempfile.mkdtemp(), per_class=2)
    >>> sorted(p.name for p in folder.iterdir())
    ['circle', 'cross', 'square', 'triangle']
    """
    from PIL import Image, ImageDraw

    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    for shape in shapes:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
            # A dark background and a light shape in every channel, so it stands out in colour and in gray.
            background = rng.integers(0, 91, size=3)
            foreground = rng.integers(150, 256, size=3)
            image = Image.new("RGB", (width, height), tuple(int(v) for v in background))
            side = min(width, height) * rng.uniform(0.35, 0.9)
            left = rng.uniform(0, width - side)
            top = rng.uniform(0, height - side)
            _draw(ImageDraw.Draw(image), shape, (left, top, left + side, top + side), tuple(int(v) for v in foreground))
            if rng.random() < gray_fraction:
                image = image.convert("L")
            if rng.random() < png_fraction:
                image.save(folder / f"{n:05d}.png")
            else:
                image.save(folder / f"{n:05d}.jpg", quality=90)
    return root
