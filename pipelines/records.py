"""tensorflow-datasets splits read by random access: `RecordImages`.

A data set prepared in the ArrayRecord format (`tfds build NAME
--file_format=array_record`) can be read record by record
(`tfds.data_source`). `load_source("tfds:NAME?access=random")` keeps only
the labels in memory; its `images` are a `RecordImages`, which behaves like
a uint8 array `(N, H, W, C)` (length, shape, numpy-style indexing,
`np.asarray`), and pipelines gather each batch of the `(seed, epoch)` order
from the records, so a data set larger than memory trains with the same
order as one loaded whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

import numpy as np

from augpipe.pipelines.files import ImagesOnDisk

ACCESS_MODES = ("auto", "memory", "random")
# access=auto reads a prepared ArrayRecord data set by random access above this size on disk.
IN_MEMORY_LIMIT_BYTES = 1 << 30
_READ_CHUNK = 1024


def open_data_source(name: str, split: str, data_dir: str, skip_images: bool = False):
    """`tfds.data_source` for one split (images left encoded with `skip_images`).

    Example (what `load_source` says when the set is not prepared there):

    >>> from augpipe.pipelines import load_source
    >>> load_source("tfds:mnist?access=random", data_dir="no/such/dir")
    Traceback (most recent call last):
    ...
    FileNotFoundError: tensorflow-datasets dataset 'mnist' is not prepared in 'no/such/dir'. ...
    """
    import tensorflow_datasets as tfds

    decoders = {"image": tfds.decode.SkipDecoding()} if skip_images else None
    return tfds.data_source(name, split=split, data_dir=data_dir, decoders=decoders)


def read_labels(name: str, split: str, data_dir: str) -> np.ndarray:
    """Every label of a split, read record by record without decoding the images."""
    records = open_data_source(name, split, data_dir, skip_images=True)
    labels = np.empty(len(records), np.int64)
    for start in range(0, len(records), _READ_CHUNK):
        chunk = records.__getitems__(list(range(start, min(start + _READ_CHUNK, len(records)))))
        labels[start : start + len(chunk)] = [int(example["label"]) for example in chunk]
    return labels


@dataclasses.dataclass(frozen=True, eq=False)
class RecordImages(ImagesOnDisk):
    """The images of a tensorflow-datasets split, read from its ArrayRecord files when needed.

    Attributes:
        name: the data set (`"mnist"`, or `"NAME/CONFIG"`).
        split: the tfds split, e.g. `"train"`.
        data_dir: where it is prepared.
        image_shape: `(H, W, C)` of every image.
        positions: which records of the split, in this order.
    """

    name: str
    split: str
    data_dir: str
    image_shape: tuple
    positions: Optional[np.ndarray] = None

    def __post_init__(self):
        if self.positions is None:
            object.__setattr__(self, "positions", np.arange(len(self._records()), dtype=np.int64))
        object.__setattr__(self, "positions", np.asarray(self.positions, dtype=np.int64))
        object.__setattr__(self, "image_shape", tuple(int(v) for v in self.image_shape))

    def _records(self):
        records = self.__dict__.get("_source")
        if records is None:
            records = open_data_source(self.name, self.split, self.data_dir)
            object.__setattr__(self, "_source", records)
        return records

    @property
    def item_shape(self) -> tuple:
        return self.image_shape

    def __len__(self) -> int:
        return len(self.positions)

    def _subset(self, index) -> "RecordImages":
        subset = dataclasses.replace(self, positions=self.positions[index])
        if "_source" in self.__dict__:
            object.__setattr__(subset, "_source", self.__dict__["_source"])
        return subset

    def __repr__(self) -> str:
        return f"RecordImages({self.name!r}, split={self.split!r}, {len(self)} records of {self.image_shape})"

    def decode(self, indices) -> np.ndarray:
        """The uint8 images at `indices` (positions in this object), read from the records."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(indices), *self.image_shape), np.uint8)
        records = self._records()
        for start in range(0, len(indices), _READ_CHUNK):
            wanted = self.positions[indices[start : start + _READ_CHUNK]].tolist()
            for offset, example in enumerate(records.__getitems__(wanted)):
                out[start + offset] = np.asarray(example["image"], np.uint8).reshape(self.image_shape)
        return out

    def digests(self) -> list:
        """One 16-byte BLAKE2b digest per image's pixel bytes (as for arrays in memory), read in chunks."""
        cached = self.__dict__.get("_digests")
        if cached is None:
            cached = []
            for start in range(0, len(self), _READ_CHUNK):
                chunk = self.decode(np.arange(start, min(start + _READ_CHUNK, len(self))))
                cached += [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in chunk]
            object.__setattr__(self, "_digests", cached)
        return cached

    def gather_fn(self):
        """In-graph: a batch of indices -> uint8 images, read from the records."""
        import tensorflow as tf

        shape = self.image_shape

        def gather(index):
            batch = tf.numpy_function(self.decode, [index], tf.uint8, stateful=False)
            batch.set_shape((None, *shape))
            return batch

        return gather
