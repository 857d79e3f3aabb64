"""benchmarks/photo_folder.py: the study's photo folder never repeats a crop.

A repeated crop puts one image in two splits (run-mnist refuses such a run)
or counts it twice; small test regions and flat patches make repeats likely.
These tests use synthetic photographs, so they need no scikit-image.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "photo_folder.py"


@pytest.fixture(scope="module")
def photo_folder():
    spec = importlib.util.spec_from_file_location("photo_folder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crops_of_a_narrow_region_are_distinct(photo_folder):
    # The test region of a 40-pixel-wide photograph is 12 pixels wide: crops of 8-12 pixels
    # there have at most 5 x positions and 29-33 y positions, so 60 plain draws would repeat.
    photo = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    seen = set()
    train = photo_folder.crops(photo, 60, "train", rng, seen)
    test = photo_folder.crops(photo, 60, "test", rng, seen)
    keys = [(c.shape, np.ascontiguousarray(c).tobytes()) for c in train + test]
    assert len(train) == len(test) == 60
    assert len(set(keys)) == 120


def test_flat_photograph_fails_with_a_clear_error(photo_folder):
    photo = np.full((40, 40, 3), 128, np.uint8)  # every crop of one size is the same
    with pytest.raises(ValueError, match=r"Found only \d+ distinct crops of the test region .* expected 40"):
        photo_folder.crops(photo, 40, "test", np.random.default_rng(0))


def column_photo(height=60, width=200):
    # Each pixel holds its column index (0-199 fits uint8), so a crop tells which columns it came from.
    return np.ascontiguousarray(np.broadcast_to(np.arange(width, dtype=np.uint8)[None, :, None], (height, width, 3)))


def test_val_band_lies_between_training_and_test_regions(photo_folder):
    # With a val split, train crops take columns [0, 100), val [100, 140), test [140, 200) of a 200-wide photo.
    photo = column_photo()
    rng = np.random.default_rng(0)
    spans = {}
    for region in ("train", "val", "test"):
        # Rows differ little in a column photo, so draw few crops: distinct ones need distinct sizes or x.
        taken = photo_folder.crops(photo, 5, region, rng, with_val=True)
        spans[region] = (min(int(c.min()) for c in taken), max(int(c.max()) for c in taken))
    assert spans["train"][0] >= 0 and spans["train"][1] < 100
    assert spans["val"][0] >= 100 and spans["val"][1] < 140
    assert spans["test"][0] >= 140 and spans["test"][1] < 200
    # Without a val split the training region reaches 70 % of the width, and there is no val region.
    assert photo_folder.span("train") == (0.0, 0.7)
    with pytest.raises(ValueError, match="val region exists only with a val split"):
        photo_folder.span("val")


def test_folder_with_val_band_loads_with_its_own_val_split(photo_folder, tmp_path, monkeypatch):
    from augpipe.pipelines import load_folder, make_splits

    rng = np.random.default_rng(3)
    monkeypatch.setattr(photo_folder, "photographs",
                        lambda: {name: rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)
                                 for name in photo_folder.CLASSES[:2]})
    counts = photo_folder.write(tmp_path / "photos", per_class=12, test_per_class=4, seed=0, val_per_class=3)
    assert counts == {"classes": ["brick", "grass"], "train": 24, "val": 6, "test": 8}
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["test", "train", "val"]
    splits = make_splits(load_folder(tmp_path / "photos", image_size=(16, 16)), seed=0)
    # The folder's own val split is the val split: nothing is carved out of train/.
    assert (len(splits.train.labels), len(splits.val.labels), len(splits.test.labels)) == (24, 6, 8)
    with pytest.raises(ValueError, match=r"npz file holds train and test only; received val_per_class=3"):
        photo_folder.write(tmp_path / "again", 12, 4, 0, npz=tmp_path / "x.npz", val_per_class=3)
