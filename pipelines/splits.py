"""Stratified, seeded, fingerprinted train / val / test splits."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

import numpy as np

from augpipe.pipelines.files import ImageFiles
from augpipe.pipelines.sources import LabeledArrays, Source


def example_digests(images) -> list:
    """One 16-byte BLAKE2b digest per example: of its pixel bytes, or of its file's contents (`ImageFiles`)."""
    if hasattr(images, "digests"):  # ImageFiles: file contents; records.RecordImages: pixels, read in chunks
        return images.digests()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in images]


def fingerprint_images(images: np.ndarray) -> str:
    """An order-independent hash over the per-example image bytes (file contents for `ImageFiles`)."""
    digest = hashlib.sha256()
    digest.update(str(tuple(images.shape[1:])).encode())
    for item in sorted(example_digests(images)):
        digest.update(item)
    return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a source: uint8 images, int64 labels, and a fingerprint.

    Attributes:
        name: `"train"`, `"val"` or `"test"`.
        images: uint8 `(N, H, W, C)`, or an `ImageFiles` (folder sources).
        labels: int64 `(N,)`.
        num_classes: number of classes of the source.
        indices: positions in the source's training arrays, or None for the
            source's official test split.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    indices: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def fingerprint(self) -> str:
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            cached = fingerprint_images(self.images)
            object.__setattr__(self, "_fingerprint", cached)
        return cached

    def class_counts(self) -> list:
        return np.bincount(self.labels, minlength=self.num_classes).tolist()


def _where(split: Split, position: int) -> str:
    return f" ({split.images.paths[position]!r})" if isinstance(split.images, ImageFiles) else ""


@dataclasses.dataclass(frozen=True)
class Splits:
    """The train, val and test splits made by `make_splits`."""

    train: Split
    val: Split
    test: Split
    seed: int
    provenance: str
    test_is_official: bool

    def __iter__(self):
        return iter((self.train, self.val, self.test))

    def overlaps(self) -> list:
        """Every image found in two splits, as `(later split, position, earlier split, position)`.

        Byte-identical duplicates count as the same image, whatever their
        position or label (for a folder source: files with the same
        contents, whatever their names). The earlier split is the first of
        train, val, test that holds the image.
        """
        seen: dict = {}
        found = []
        for split in self:
            for position, item in enumerate(example_digests(split.images)):
                first = seen.setdefault(item, (split.name, position))
                if first[0] != split.name:
                    found.append((split.name, position, first[0], first[1]))
        return found

    def check_disjoint(self) -> None:
        """Raises ValueError naming every overlapping pair (up to 10) and how many there are."""
        found = self.overlaps()
        if not found:
            return
        shown = "; ".join(
            f"{later}[{position}]{_where(getattr(self, later), position)} = "
            f"{earlier}[{first}]{_where(getattr(self, earlier), first)}"
            for later, position, earlier, first in found[:10]
        )
        more = f" (and {len(found) - 10} more)" if len(found) > 10 else ""
        raise ValueError(
            f"Splits overlap: {len(found)} image(s) have the same bytes as an image of another split: {shown}{more}. "
            "Expected disjoint train/val/test. Remove the duplicates from the source, pass drop_duplicates "
            "(run-mnist: --drop-duplicates) to keep one copy in the earliest of train, val and test, or use "
            "a different test set."
        )

    def without_duplicates(self) -> tuple:
        """`(splits, removed)`: the splits with each image that another split holds too left out of the later one.

        One copy stays, in the earliest of train, val and test.
        """
        found = self.overlaps()
        if not found:
            return self, 0
        drop: dict = {}
        for later, position, _, _ in found:
            drop.setdefault(later, set()).add(position)

        def keep(split):
            if split.name not in drop:
                return split
            index = np.asarray([i for i in range(len(split)) if i not in drop[split.name]], np.int64)
            return Split(split.name, split.images[index], split.labels[index], split.num_classes,
                         None if split.indices is None else split.indices[index])

        return dataclasses.replace(self, train=keep(self.train), val=keep(self.val), test=keep(self.test)), len(found)

    def summary(self) -> dict:
        """A JSON-ready description: sizes, class counts and fingerprints."""
        return {
            "seed": self.seed,
            "provenance": self.provenance,
            "test_is_official": self.test_is_official,
            **{
                split.name: {
                    "size": len(split),
                    "fingerprint": split.fingerprint,
                    "class_counts": split.class_counts(),
                }
                for split in self
            },
        }


def _resolve_size(size, total: int, what: str, default: float) -> int:
    if size is None:
        size = default
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise ValueError(f"`{what}` must be a count or a fraction. Received: {what}={size!r}.")
    if isinstance(size, (float, np.floating)) and 0 <= size < 1:
        return int(round(float(size) * total))
    if float(size) != int(size) or size < 0:
        raise ValueError(
            f"`{what}` must be a non-negative count or a fraction in [0, 1). Received: {what}={size!r}."
        )
    return int(size)


def _allocate(class_counts: np.ndarray, total: int) -> np.ndarray:
    """Splits `total` over classes in proportion to their counts (largest remainder)."""
    quota = class_counts * (total / class_counts.sum())
    base = np.floor(quota).astype(int)
    remainder = total - base.sum()
    order = np.argsort(-(quota - base), kind="stable")
    base[order[:remainder]] += 1
    return base


def align_test_source(source: Source, test: Source) -> tuple:
    """`(images, labels)` of a separate test source, its labels re-indexed into `source`'s classes by name.

    A class the test source lacks is fine; one the training source lacks is
    an error naming it; the images must have the training images' shape.
    """
    unknown = [name for name in test.class_names if name not in source.class_names]
    present = set(np.unique(test.labels).tolist())
    unknown = [name for i, name in enumerate(test.class_names) if name in unknown and i in present]
    if unknown:
        raise ValueError(
            f"The test source {test.name!r} has class(es) {', '.join(map(repr, unknown))} that the training source "
            f"lacks (its classes: {', '.join(map(repr, source.class_names))}). Every test class must be trained: "
            "add its images to the training source, or leave them out of the test source."
        )
    if tuple(test.image_shape) != tuple(source.image_shape):
        raise ValueError(
            f"The test source's images have shape {tuple(test.image_shape)}, the training images "
            f"{tuple(source.image_shape)}. Expected the same: load both at one size (folder sources: one image_size "
            "and channels)."
        )
    mapping = np.asarray([source.class_names.index(name) if name in source.class_names else -1
                          for name in test.class_names], np.int64)
    return test.images, mapping[test.labels]


def make_splits(source: Source, *, val_size=None, test_size=None, seed: int = 0, test: Optional[Source] = None) -> Splits:
    """Makes stratified, seeded train / val / test splits of a source.

    The source's official test split is used as the test split when it has
    one; otherwise a stratified test split is carved out. The same seed gives
    the same splits.

    Args:
        source: a `Source`.
        val_size: a count, or a fraction of the source's training data.
            Default 0.1.
        test_size: a count, or a fraction. Default 0.2. Must be None when
            the source has an official test split or `test` is given.
        seed: seeds the permutation within each class.
        test: a separate `Source` that is the test split (run-mnist's
            `--test-source`); its labels follow the training classes by
            name (`align_test_source`).

    Example:

    >>> from augpipe.pipelines import load_source
    >>> splits = make_splits(load_source("mnist-embedded"), seed=0)
    >>> len(splits.train), len(splits.val), len(splits.test)
    (3500, 500, 1000)
    """
    if test is not None:
        if source.official_test is not None:
            raise ValueError(
                f"Source {source.name!r} has its own test split, and a test source was given too. Pass one: "
                "test=None, or a training source without a test split."
            )
        images, test_labels = align_test_source(source, test)
        source = dataclasses.replace(source, official_test=LabeledArrays(images, test_labels),
                                     provenance=f"{source.provenance}; test: {test.provenance}")
    labels = source.labels
    total = len(labels)
    has_official = source.official_test is not None
    if has_official and test_size is not None:
        raise ValueError(
            f"Source {source.name!r} has an official test split, which is always "
            f"the test split. Received: test_size={test_size!r}. Pass test_size=None."
        )
    test_count = 0 if has_official else _resolve_size(test_size, total, "test_size", 0.2)
    has_val = source.official_val is not None
    if has_val and val_size is not None:
        raise ValueError(
            f"Source {source.name!r} has its own validation split, which is always the val split. Received: "
            f"val_size={val_size!r}. Pass val_size=None."
        )
    val_count = 0 if has_val else _resolve_size(val_size, total, "val_size", 0.1)
    if val_count + test_count >= total:
        raise ValueError(
            f"val_size={val_count} plus test_size={test_count} leaves no training "
            f"data: the source has {total} examples. Expected val + test < {total}."
        )
    counts = np.bincount(labels, minlength=source.num_classes)
    present = np.flatnonzero(counts)
    parts_needed = 1 + (val_count > 0) + (test_count > 0)
    for cls in present:
        if counts[cls] < parts_needed:
            raise ValueError(
                f"Class {cls} ({source.class_names[cls]!r}) has only {counts[cls]} "
                f"example(s), too few to stratify into {parts_needed} splits. Expected "
                f"at least {parts_needed} per class; drop the class or add data."
            )
    test_per_class = _allocate(counts[present], test_count)
    val_per_class = _allocate(counts[present], val_count)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for cls, n_test, n_val in zip(present, test_per_class, val_per_class):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if n_test + n_val >= len(members):
            raise ValueError(
                f"Class {cls} ({source.class_names[cls]!r}) has {len(members)} examples, too "
                f"few to give {n_test} to test and {n_val} to val and keep one for training. "
                "Lower val_size/test_size."
            )
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])

    def take(name):
        # Sorted indices keep each split in source order; shuffling is the
        # pipeline's job.
        index = np.sort(np.concatenate(parts[name])) if parts[name] else np.zeros(0, np.int64)
        return Split(name, source.images[index], labels[index], source.num_classes, index)

    if has_official:
        test_split = Split("test", source.official_test.images, source.official_test.labels, source.num_classes)
    else:
        test_split = take("test")
    if has_val:
        val_split = Split("val", source.official_val.images, source.official_val.labels, source.num_classes)
    else:
        val_split = take("val")
    return Splits(
        train=take("train"),
        val=val_split,
        test=test_split,
        seed=int(seed),
        provenance=source.provenance,
        test_is_official=has_official,
    )


# A stream id of its own, so the probe's draw never equals a split's permutation.
_PROBE_STREAM = 0x70726F6265


def make_probe(train: Split, size: int = 256, seed: int = 0) -> Split:
    """A fixed, stratified sample of training images: the probe a strength signal evaluates clean.

    The probe stays in training (its images are training images); it is
    only evaluated, never augmented, in inference mode next to validation,
    so "probe vs val" compares one model in one mode on seen and unseen
    images. It is drawn from `train` alone and cannot hold a val or test
    image. The same split and seed give the same probe.

    Args:
        train: the training split.
        size: how many images (at most the split's size).
        seed: seeds the draw.

    Example:

    >>> from augpipe.pipelines import load_source
    >>> splits = make_splits(load_source("mnist-embedded"), seed=0)
    >>> probe = make_probe(splits.train, size=200, seed=0)
    >>> len(probe), probe.name, probe.class_counts()[:3]
    (200, 'probe', [20, 20, 20])
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"Received: size={size!r}. Expected a positive number of probe images.")
    size = min(int(size), len(train))
    counts = np.bincount(train.labels, minlength=train.num_classes)
    present = np.flatnonzero(counts)
    per_class = _allocate(counts[present], size)
    rng = np.random.default_rng([int(seed), _PROBE_STREAM])
    chosen = [rng.choice(np.flatnonzero(train.labels == cls), n, replace=False)
              for cls, n in zip(present, per_class) if n]
    positions = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    indices = None if train.indices is None else train.indices[positions]
    return Split("probe", train.images[positions], train.labels[positions], train.num_classes, indices)


def balanced_sample(labels, count: int, seed: int = 0) -> np.ndarray:
    """Positions of `count` examples taken class by class in turn (one per class, then a second, ...), seeded.

    So a picture of `count >= num_classes` images shows every class.

    >>> balanced_sample(np.array([0, 0, 0, 1, 2, 2]), 4, seed=0).tolist()
    [1, 3, 4, 0]
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), _PROBE_STREAM + 1])
    queues = [list(rng.permutation(np.flatnonzero(labels == cls))) for cls in np.unique(labels)]
    picks = []
    while len(picks) < count and any(queues):
        for queue in queues:
            if queue and len(picks) < count:
                picks.append(int(queue.pop(0)))
    return np.asarray(picks, np.int64)
