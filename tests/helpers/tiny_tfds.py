"""A tiny tensorflow-datasets image classification set, built locally (no download) in any file format."""

import numpy as np
import tensorflow_datasets as tfds

NAME = "augpipe_tiny_records"


class AugpipeTinyRecords(tfds.core.GeneratorBasedBuilder):
    """60 train and 15 test 8x8 gray images of 3 classes; a class-dependent bright column."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1)),
                "label": tfds.features.ClassLabel(names=["left", "middle", "right"]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(60, 0), "test": self._generate_examples(15, 1)}

    def _generate_examples(self, count, seed):
        rng = np.random.default_rng(seed)
        for i in range(count):
            image = rng.integers(0, 60, (8, 8, 1), dtype=np.uint8)
            image[:, 1 + 3 * (i % 3)] = 255
            yield f"{seed}-{i}", {"image": image, "label": i % 3}


def build(data_dir, file_format="array_record"):
    """Prepares the set under `data_dir` in `file_format` ("array_record" or "tfrecord")."""
    builder = AugpipeTinyRecords(data_dir=str(data_dir), file_format=file_format)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
    return builder
