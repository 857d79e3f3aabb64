"""A folder of real photographs for benchmarks and the strength study, built offline.

Usage: python benchmarks/photo_folder.py OUT [--per-class 300] [--test-per-class 60] [--seed 0]
                                              [--npz FILE --size 48]

Six classes of crops from the photographs that scikit-image and scikit-learn
ship inside their packages (no download): three textures (brick, grass,
gravel) and three scenes (coffee, chelsea the cat, the China palace). Each
photograph is cut into two regions by a vertical line at 70 % of its width:
training crops come from the left region, test crops from the right one, so
no test pixel was ever in a training crop. Crops are squares of 15-35 % of
the photograph's shorter side at random positions, flipped at random,
never two with the same pixels (a repeat is drawn again, so no image is in
two splits and none is counted twice), written as JPEG files at their own size:

    OUT/train/<class>/0000.jpg ... and OUT/test/<class>/0000.jpg ...

With `--npz`, the same crops are also resized to `--size` pixels and saved
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
SPLIT_AT = 0.7  # the share of each photograph's width that training crops come from
CROP_RANGE = (0.15, 0.35)  # crop side, as a share of the shorter side


def photographs() -> dict:
    """Each class's photograph as uint8 RGB `(H, W, 3)`."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    china = load_sample_images().images[0]
    photos = {name: getattr(skimage.data, name)() for name in CLASSES if name != "china"}
    photos["china"] = china
    return {name: np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p[..., :3] for name, p in photos.items()}


def crops(photo: np.ndarray, count: int, region: str, rng: np.random.Generator, seen=None) -> list:
    """`count` distinct square crops from the `"train"` (left) or `"test"` (right) region of `photo`.

    A crop whose pixels equal an earlier one's (of this call, or in `seen`, a
    set of `crop.tobytes()` shared across calls) is drawn again: small regions
    and flat patches repeat, and a repeat would put one image in two splits.
    """
    height, width = photo.shape[:2]
    cut = int(width * SPLIT_AT)
    left, right = (0, cut) if region == "train" else (cut, width)
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


def write(out: pathlib.Path, per_class: int, test_per_class: int, seed: int, npz=None, size: int = 48) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    for label, (name, photo) in enumerate(photographs().items()):
        seen = set()  # one photograph's crops, both regions
        for region, count in (("train", per_class), ("test", test_per_class)):
            folder = out / region / name
            folder.mkdir(parents=True, exist_ok=True)
            for index, crop in enumerate(crops(photo, count, region, rng, seen)):
                image = Image.fromarray(np.ascontiguousarray(crop))
                image.save(folder / f"{index:04d}.jpg", quality=92)
                if npz:
                    small = image.resize((size, size), Image.BILINEAR)
                    arrays[f"x_{region}"].append(np.asarray(small))
                    arrays[f"y_{region}"].append(label)
    if npz:
        np.savez_compressed(npz, **{k: np.asarray(v, np.uint8 if k.startswith("x") else np.int64)
                                    for k, v in arrays.items()})
    return {"classes": list(CLASSES), "train": per_class * len(CLASSES), "test": test_per_class * len(CLASSES)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--test-per-class", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--npz", type=pathlib.Path, default=None)
    parser.add_argument("--size", type=int, default=48)
    args = parser.parse_args()
    print(write(args.out, args.per_class, args.test_per_class, args.seed, args.npz, args.size))


if __name__ == "__main__":
    main()
