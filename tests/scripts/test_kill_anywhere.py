"""A run killed at any step of an epoch resumes to exactly the uninterrupted run."""

import csv
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers", "kill_run.py")
EPOCHS = 3
TIMING = {"images_per_sec", "input_wait_share"}
# Callbacks of run-mnist's list (quiet, no TensorBoard) to die right after: the backup; the checkpoint
# (after the strength and state callbacks); the CSV logger (after the evaluation); the commit. (The strength
# controller, the scheduled evaluation and the curves pass too; left out to keep the suite short.)
STEPS = ["EpochBackup", "BestModelCheckpoint", "CSVLogger", "EpochCommit", "batch", "weights-write"]
# With <ema>: right after the swap (the model holds the averaged weights, the backup the trained ones),
# and after the checkpoint that saved the averaged ones.
EMA_STEPS = ["SwapEMAWeights", "BestModelCheckpoint"]


def run(*args, expect=0):
    result = subprocess.run([sys.executable, HELPER, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == expect, result.stderr[-3000:]


def rows(run_dir):
    with open(run_dir / "log.csv") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


def report(run_dir):
    data = json.loads((run_dir / "report.json").read_text())
    for key in ("wall_time_s", "images_per_sec", "epochs_this_session", "options"):
        data.pop(key)
    return data


def weights(path):
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


@pytest.fixture(scope="module")
def uninterrupted(tiny_npz, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    run(tiny_npz, run_dir, EPOCHS)
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted_ema(tiny_npz, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full-ema") / "run"
    run(tiny_npz, run_dir, EPOCHS, "ema=0.9")
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_kill_at_any_step_then_resume_matches_the_uninterrupted_run(tiny_npz, tmp_path, uninterrupted, step):
    run_dir = tmp_path / "run"
    run(tiny_npz, run_dir, EPOCHS, f"die={step}:1", expect=17)
    run(tiny_npz, run_dir, EPOCHS, "resume")
    assert_same_run(run_dir, uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("step", EMA_STEPS)
def test_kill_with_ema_then_resume_matches_the_uninterrupted_run(tiny_npz, tmp_path, uninterrupted_ema, step):
    run_dir = tmp_path / "run"
    run(tiny_npz, run_dir, EPOCHS, f"die={step}:1", "ema=0.9", expect=17)
    run(tiny_npz, run_dir, EPOCHS, "resume", "ema=0.9")
    assert_same_run(run_dir, uninterrupted_ema)
    assert json.loads((run_dir / "report.json").read_text())["options"]["ema"] == 0.9


def assert_same_run(run_dir, uninterrupted):
    assert rows(run_dir) == rows(uninterrupted)
    assert report(run_dir) == report(uninterrupted)
    final = f"backup/weights-{EPOCHS}.weights.h5"
    a, b = weights(run_dir / final), weights(uninterrupted / final)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    leftovers = [p.name for p in (run_dir / "backup").iterdir() if ".tmp" in p.name or "candidate" in p.name]
    assert leftovers == []
