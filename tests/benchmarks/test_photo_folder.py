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
