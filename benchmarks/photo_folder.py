"""A folder of real photographs for benchmarks and the strength study, built offline.

Usage: python benchmarks/photo_folder.py OUT [--per-class 300] [--test-per-class 60] [--val-per-class 0]
                                              [--seed 0] [--npz FILE --size 48]

Six classes of crops from the photographs that scikit-image and scikit-learn
ship inside their packages (no download): three textures (brick, grass,
gravel) and three scenes (coffee, chelsea the cat, the China palace). Each
photograph is cut into two regions by a vertical line at 70 % of its width:
training crops come from the left region, test crops from the right one, so
no test pixel was ever in a training crop. With `--val-per-class N` a third
band, from 50 to 70 % of the width, gives a validation split of its own
(`OUT/val/`; training crops then come from the left 50 %): val then measures
what test measures, crops of regions no training crop touches, instead of
crops of the training region, which a model gets right whatever it learned
about the rest of the photograph. Crops are squares of 15-35 % of
the photograph's shorter side at random positions, flipped at random,
never two with the same pixels (a repeat is drawn again, so no image is in
two splits and none is counted twice), written as JPEG files at their own size:

    OUT/train/<class>/0000.jpg ... and OUT/test/<class>/0000.jpg ...  (and OUT/val/<class>/...)

With `--npz` (train and test only), the same crops are also resized to `--size` pixels and saved
as `x_train, y_train, x_test, y_test` (run-mnist's `npz:FILE` source, whose
own test split is then the held-out region's crops).

Needs scikit-image and scikit-learn (`pip install ".[bench]"`); augpipe itself
does not.
"""

import argparse
import pathlib

import numpy as np
from PIL import Image

CLASSES = ("brick", "grass", "gravel", "coffee", "chelsea", "china")
SPLIT_AT = 0.7  # the share of each photograph's width that training (and val) crops come from
VAL_FROM = 0.5  # with a val split: val crops come from [VAL_FROM, SPLIT_AT) of the width, training crops from the rest
CROP_RANGE = (0.15, 0.35)  # crop side, as a share of the shorter side


def photographs() -> dict:
    """Each class's photograph as uint8 RGB `(H, W, 3)`."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    china = load_sample_images().images[0]
    photos = {name: getattr(skimage.data, name)() for name in CLASSES if name != "china"}
    photos["china"] = china
    return {name: np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p[..., :3] for name, p in photos.items()}


def span(region: str, with_val: bool = False) -> tuple:
    """The `(start, end)` shares of the width that `region` ("train", "val" or "test") takes."""
    if region == "test":
        return SPLIT_AT, 1.0
    if region == "val":
        if not with_val:
            raise ValueError("The val region exists only with a val split (with_val=True).")
        return VAL_FROM, SPLIT_AT
    if region != "train":
        raise ValueError(f"Unknown region {region!r}. Expected 'train', 'val' or 'test'.")
    return 0.0, (VAL_FROM if with_val else SPLIT_AT)


def crops(photo: np.ndarray, count: int, region: str, rng: np.random.Generator, seen=None,
          with_val: bool = False) -> list:
    """`count` distinct square crops from one region of `photo` (`span(region, with_val)`).

    A crop whose pixels equal an earlier one's (of this call, or in `seen`, a
    set of `crop.tobytes()` shared across calls) is drawn again: small regions
    and flat patches repeat, and a repeat would put one image in two splits.
    """
    height, width = photo.shape[:2]
    start, end = span(region, with_val)
    left, right = int(width * start), int(width * end)
    seen = set() if seen is None else seen
    out = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count:
            raise ValueError(f"Found only {len(out)} distinct crops of the {region} region ({right - left} x {height} "
                             f"pixels) after {attempts - 1} draws; expected {count}. Ask for fewer crops.")
        side = int(rng.uniform(*CROP_RANGE) * min(height, width))
        side = max(8, min(side, right - left, height))
        y = int(rng.integers(0, height - side + 1))
        x = int(rng.integers(left, right - side + 1))
        crop = photo[y:y + side, x:x + side]
        crop = crop[:, ::-1] if rng.random() < 0.5 else crop
        key = (crop.shape, np.ascontiguousarray(crop).tobytes())
        if key not in seen:
            seen.add(key)
            out.append(crop)
    return out


def write(out: pathlib.Path, per_class: int, test_per_class: int, seed: int, npz=None, size: int = 48,
          val_per_class: int = 0) -> dict:
    if npz and val_per_class:
        raise ValueError(f"An npz file holds train and test only; received val_per_class={val_per_class} with "
                         f"npz={str(npz)!r}. Write the folder alone, or pass val_per_class=0.")
    rng = np.random.default_rng(seed)
    with_val = val_per_class > 0
    counts = (("train", per_class), ("val", val_per_class), ("test", test_per_class)) if with_val else \
        (("train", per_class), ("test", test_per_class))
    arrays = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    photos = photographs()
    for label, (name, photo) in enumerate(photos.items()):
        seen = set()  # one photograph's crops, every region
        for region, count in counts:
            folder = out / region / name
            folder.mkdir(parents=True, exist_ok=True)
            for index, crop in enumerate(crops(photo, count, region, rng, seen, with_val)):
                image = Image.fromarray(np.ascontiguousarray(crop))
                image.save(folder / f"{index:04d}.jpg", quality=92)
                if npz:
                    small = image.resize((size, size), Image.BILINEAR)
                    arrays[f"x_{region}"].append(np.asarray(small))
                    arrays[f"y_{region}"].append(label)
    if npz:
        np.savez_compressed(npz, **{k: np.asarray(v, np.uint8 if k.startswith("x") else np.int64)
                                    for k, v in arrays.items()})
    return {"classes": list(photos), **{region: count * len(photos) for region, count in counts}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--test-per-class", type=int, default=60)
    parser.add_argument("--val-per-class", type=int, default=0,
                        help="crops per class for a val split from its own band of each photograph (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--npz", type=pathlib.Path, default=None)
    parser.add_argument("--size", type=int, default=48)
    args = parser.parse_args()
    print(write(args.out, args.per_class, args.test_per_class, args.seed, args.npz, args.size, args.val_per_class))


if __name__ == "__main__":
    main()
