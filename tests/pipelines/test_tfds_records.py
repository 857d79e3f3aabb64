"""tfds:NAME?access=random: a tensorflow-datasets set read record by record, built locally (no download)."""

import numpy as np
import pytest

from augpipe.pipelines import build_pipeline, build_training_pipeline, load_source, make_splits
from augpipe.pipelines.records import RecordImages

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from conftest import load_tiny_tfds

    module = load_tiny_tfds()
    records_dir = tmp_path_factory.mktemp("tfds_array_record")
    tfrecord_dir = tmp_path_factory.mktemp("tfds_tfrecord")
    module.build(records_dir, "array_record")
    module.build(tfrecord_dir, "tfrecord")
    return module.NAME, str(records_dir), str(tfrecord_dir)


def test_random_access_reads_the_same_data_as_memory(tiny):
    name, records_dir, _ = tiny
    random = load_source(f"tfds:{name}?access=random", data_dir=records_dir)
    memory = load_source(f"tfds:{name}?access=memory", data_dir=records_dir)
    assert isinstance(random.images, RecordImages) and isinstance(memory.images, np.ndarray)
    assert "random access (ArrayRecord)" in random.provenance
    assert random.class_names == ("left", "middle", "right") and random.num_classes == 3
    assert random.image_shape == (8, 8, 1) and len(random) == 60
    np.testing.assert_array_equal(random.labels, memory.labels)
    np.testing.assert_array_equal(np.asarray(random.images), memory.images)
    np.testing.assert_array_equal(np.asarray(random.official_test.images), memory.official_test.images)
    random_splits, memory_splits = make_splits(random, seed=4), make_splits(memory, seed=4)
    random_splits.check_disjoint()
    assert random_splits.summary()["train"] == memory_splits.summary()["train"]  # same fingerprints
    assert random_splits.test.fingerprint == memory_splits.test.fingerprint


def test_random_access_batches_follow_the_seed_and_epoch_order(tiny, monkeypatch):
    name, records_dir, _ = tiny
    random = make_splits(load_source(f"tfds:{name}?access=random", data_dir=records_dir), seed=0)
    memory = make_splits(load_source(f"tfds:{name}?access=memory", data_dir=records_dir), seed=0)

    def refuse(*args, **kwargs):
        raise AssertionError("a random-access split must not be read whole")

    monkeypatch.setattr(RecordImages, "__array__", refuse)
    for split_random, split_memory in ((random.train, memory.train), (random.test, memory.test)):
        for training in (True, False):
            got_pipeline = build_pipeline(split_random, batch_size=8, training=training, seed=3, initial_epoch=2)
            want_pipeline = build_pipeline(split_memory, batch_size=8, training=training, seed=3, initial_epoch=2)
            got, want = list(got_pipeline), list(want_pipeline)
            assert len(got) == len(want)
            for (x, y), (wx, wy) in zip(got, want):
                np.testing.assert_array_equal(x.numpy(), wx.numpy())
                np.testing.assert_array_equal(y.numpy(), wy.numpy())
    train, _ = build_training_pipeline(random.train, batch_size=8, seed=3)
    first, second = [y.numpy() for _, y in train], [y.numpy() for _, y in train]
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))


def test_access_is_checked(tiny):
    name, records_dir, tfrecord_dir = tiny
    with pytest.raises(ValueError, match=r"prepared as tfrecord.*--file_format=array_record"):
        load_source(f"tfds:{name}?access=random", data_dir=tfrecord_dir)
    assert isinstance(load_source(f"tfds:{name}", data_dir=records_dir).images, np.ndarray)  # small: auto -> memory
    with pytest.raises(ValueError, match=r"access='disk'. Expected one of: auto, memory, random"):
        load_source(f"tfds:{name}?access=disk", data_dir=records_dir)
    with pytest.raises(ValueError, match=r"unknown option 'acess'.*Did you mean 'access'"):
        load_source(f"tfds:{name}?acess=random", data_dir=records_dir)
