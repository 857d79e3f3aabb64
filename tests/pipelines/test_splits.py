import numpy as np
import pytest

from augpipe.pipelines import Source, make_splits


def test_embedded_default_sizes_and_stratification(embedded_splits):
    assert [len(s) for s in embedded_splits] == [3500, 500, 1000]
    assert embedded_splits.train.class_counts() == [350] * 10
    assert embedded_splits.val.class_counts() == [50] * 10
    assert embedded_splits.test.class_counts() == [100] * 10
    embedded_splits.check_disjoint()
    indices = [set(s.indices.tolist()) for s in embedded_splits]
    assert not (indices[0] & indices[1]) and not (indices[0] & indices[2]) and not (indices[1] & indices[2])
    assert len(set.union(*indices)) == 5000


def test_same_seed_same_splits_other_seed_differs(tiny_source):
    a = make_splits(tiny_source, val_size=20, test_size=40, seed=3)
    b = make_splits(tiny_source, val_size=20, test_size=40, seed=3)
    c = make_splits(tiny_source, val_size=20, test_size=40, seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.indices, y.indices)
        assert x.fingerprint == y.fingerprint
    assert a.test.fingerprint != c.test.fingerprint


def test_fingerprint_is_order_independent_and_content_sensitive(tiny_source):
    splits = make_splits(tiny_source, seed=0)
    from augpipe.pipelines import fingerprint_images

    assert fingerprint_images(splits.train.images[::-1]) == splits.train.fingerprint
    changed = splits.train.images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert fingerprint_images(changed) != splits.train.fingerprint


def test_planted_duplicate_is_detected(tiny_source):
    images = tiny_source.images.copy()
    splits = make_splits(tiny_source, seed=0)
    # Copy a test image over a training image: byte-identical, other label.
    images[splits.train.indices[0]] = images[splits.test.indices[0]]
    planted = Source.from_arrays(images, tiny_source.labels)
    with pytest.raises(ValueError, match=r"Splits overlap: 1 image\(s\) have the same bytes .*test\[0\] = train\[0\]"):
        make_splits(planted, seed=0).check_disjoint()


def test_every_overlap_is_named_up_to_ten_and_counted_and_can_be_dropped(tiny_source):
    # Found on main: only the first duplicate was named, so a user fixed one and met the next.
    images = tiny_source.images.copy()
    splits = make_splits(tiny_source, seed=0)
    for k in range(12):  # twelve test images copied over twelve training images
        images[splits.train.indices[k]] = images[splits.test.indices[k]]
    planted = make_splits(Source.from_arrays(images, tiny_source.labels), seed=0)
    with pytest.raises(ValueError, match=r"Splits overlap: 12 image\(s\).*\(and 2 more\).*drop_duplicates") as error:
        planted.check_disjoint()
    assert str(error.value).count(" = ") == 10
    kept, removed = planted.without_duplicates()
    assert removed == 12 and len(kept.train) == len(planted.train) and len(kept.test) == len(planted.test) - 12
    kept.check_disjoint()


def test_official_test_is_used(tiny_source):
    source = Source.from_arrays(
        tiny_source.images, tiny_source.labels, test=(tiny_source.images[:7] // 2, tiny_source.labels[:7])
    )
    splits = make_splits(source, val_size=0.1, seed=0)
    assert splits.test_is_official and len(splits.test) == 7 and splits.test.indices is None
    assert len(splits.train) + len(splits.val) == len(source)
    with pytest.raises(ValueError, match="official test split.*test_size=None"):
        make_splits(source, test_size=10)


def test_sizes_too_large(tiny_source):
    with pytest.raises(ValueError, match="val_size=100 plus test_size=100 leaves no training data.*200 examples"):
        make_splits(tiny_source, val_size=100, test_size=100)


def test_class_too_small_to_stratify():
    images = np.arange(23 * 16, dtype=np.uint8).reshape(23, 4, 4)
    labels = [0] * 11 + [1] * 11 + [2]
    with pytest.raises(ValueError, match=r"Class 2 \('2'\) has only 1 example\(s\), too few to stratify into 3"):
        make_splits(Source.from_arrays(images, labels), val_size=3, test_size=3)


def test_summary_is_json_ready(embedded_splits):
    import json

    summary = json.loads(json.dumps(embedded_splits.summary()))
    assert summary["train"]["size"] == 3500 and len(summary["test"]["fingerprint"]) == 16
