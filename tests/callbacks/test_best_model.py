"""The best model's rule: better or tied (the later epoch wins a tie), the same for the checkpoint, the curves and the report."""


import keras
import pytest

from augpipe import callbacks
from augpipe.scripts import experiment


@pytest.mark.parametrize("values, mode, expected", [
    ([0.5, 0.8, 0.8, 0.7], "max", 2),  # a tie goes to the later epoch
    ([0.5, 0.8, 0.9, 0.9, 0.9], "max", 4),
    ([0.9, 0.4, 0.4, 0.6], "min", 2),
    ([0.9, 0.3, 0.4, 0.3], "min", 3),
    ([float("nan"), 0.7, None, float("nan")], "max", 1),  # epochs without a finite value never win
    ([0.6, float("inf"), 0.5], "max", 0),
    ([float("nan"), None], "max", None),
    ([], "max", None),
])
def test_best_position_takes_the_later_of_tied_epochs(values, mode, expected):
    assert callbacks.best_position(values, mode) == expected


def test_checkpoint_keeps_the_later_of_tied_epochs(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    checkpoint = callbacks.BestModelCheckpoint(tmp_path / "best.keras", state_dir=tmp_path / "backup")
    checkpoint.set_model(model)
    saved = []
    for epoch, accuracy in enumerate([0.5, 0.8, 0.8, 0.7, float("nan")]):
        checkpoint.on_epoch_begin(epoch)
        checkpoint.on_epoch_end(epoch, {"val_accuracy": accuracy})
        saved.append(checkpoint.candidate_epoch)
    assert saved == [0, 1, 2, None, None]
    assert (checkpoint.best, checkpoint.best_epoch) == (0.8, 2)
    assert checkpoint.candidate_path(2).is_file() and not checkpoint.candidate_path(3).exists()


def test_report_curves_and_checkpoint_name_the_same_epoch(tmp_path):
    accuracies = [0.5, 0.9, 0.7, 0.9, 0.85]
    rows = [{"epoch": str(e), "val_accuracy": str(a)} for e, a in enumerate(accuracies)]
    rows.insert(2, {"epoch": "1.5", "val_accuracy": ""})  # an epoch without validation (validation_freq)
    assert experiment._best_row(rows)["epoch"] == "3"
    curves = callbacks.TrainingCurves(tmp_path / "curves.png")
    for epoch, accuracy in enumerate(accuracies):
        curves.on_epoch_end(epoch, {"val_accuracy": accuracy})
    assert curves.best_epoch() == 4  # 1-based: the same model as the report's epoch index 3
    assert experiment._best_row([]) == {}
