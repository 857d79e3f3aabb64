"""Keras' own callbacks beside augpipe's, and a held-out set that cannot steer training."""

import csv
import json
import math

import keras
import numpy as np
import pytest

from augpipe import augment, callbacks, pipelines


@pytest.fixture
def tiny(tiny_source):
    splits = pipelines.make_splits(tiny_source, val_size=20, test_size=20, seed=0)
    train, epoch = pipelines.build_training_pipeline(splits.train, batch_size=32, seed=0)
    return {
        "train": train,
        "epoch": epoch,
        "val": pipelines.build_pipeline(splits.val, batch_size=32, training=False),
        "test": pipelines.build_pipeline(splits.test, batch_size=32, training=False),
    }


def make_model(learning_rate=1e-2):
    keras.utils.set_random_seed(0)
    layer = augment.Augment("mnist", strength=0.3, seed=1)
    model = keras.Sequential([keras.Input((12, 12, 1), dtype="uint8"), layer, keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model, layer


class RateProbe(keras.callbacks.Callback):
    """Records the rate the optimizer really applies in each epoch (read at its last batch)."""

    def __init__(self):
        super().__init__()
        self.rates = {}

    def on_train_batch_end(self, batch, logs=None):
        self.rates[self.epoch] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


def always_cut():
    # min_delta so large that no epoch counts as an improvement: a cut every epoch after the first.
    return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=1e9)


def halve_after_first(epoch, lr):
    return lr if epoch < 1 else lr * 0.5


def run(tiny, extra, epochs=4):
    model, _ = make_model()
    probe = RateProbe()
    history = model.fit(tiny["train"], validation_data=tiny["val"], epochs=epochs, verbose=0, shuffle=False,
                        callbacks=callbacks.in_working_order([pipelines.EpochSync(tiny["epoch"])] + extra + [probe]))
    return history.history["learning_rate"], [probe.rates[e] for e in range(epochs)]


@pytest.mark.parametrize("control_first", [True, False])
def test_scheduler_and_plateau_set_the_base_that_the_multiplier_scales(tiny, control_first):
    # Keras alone: the base rates the two callbacks produce, epoch by epoch.
    keras_only, _ = run(tiny, [keras.callbacks.LearningRateScheduler(halve_after_first), always_cut()])
    control = callbacks.LearningRateControl(warmup_epochs=1, decay=None)  # multiplier 0.5, then 1
    keras_callbacks = [keras.callbacks.LearningRateScheduler(halve_after_first), always_cut()]
    extra = [control] + keras_callbacks if control_first else keras_callbacks + [control]
    logged, used = run(tiny, extra)
    multipliers = [0.5, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(logged, used, rtol=1e-6)  # the log says the rate really used
    np.testing.assert_allclose(used, [r * m for r, m in zip(keras_only, multipliers)], rtol=1e-5)
    assert used[1] < used[0] / 0.5 and used[3] < used[2]  # the scheduler's step and the plateau's cuts show


def test_without_learning_rate_control_keras_callbacks_are_untouched(tiny):
    schedule = keras.callbacks.LearningRateScheduler(halve_after_first)
    logged, used = run(tiny, [schedule, always_cut()])
    np.testing.assert_allclose(logged[0], 1e-2, rtol=1e-6)
    assert schedule.model.__class__.__name__ == "Sequential"  # no view left behind


def test_the_adapted_callbacks_are_released_after_fit(tiny):
    schedule = keras.callbacks.LearningRateScheduler(halve_after_first)
    run(tiny, [callbacks.LearningRateControl(decay=None), schedule], epochs=1)
    assert "on_epoch_end" not in vars(schedule) and schedule.model.__class__.__name__ == "Sequential"


def test_controllers_hold_on_epochs_without_validation(tiny, tmp_path):
    model, layer = make_model()
    controller = callbacks.AdaptiveStrength(layer, warmup_epochs=0, speed=0.1)
    control = callbacks.LearningRateControl(decay=None, monitor="val_loss", patience=1)
    log = tmp_path / "log.csv"
    model.fit(tiny["train"], validation_data=tiny["val"], validation_freq=2, epochs=4, verbose=0, shuffle=False,
              callbacks=[pipelines.EpochSync(tiny["epoch"]), controller, control, keras.callbacks.CSVLogger(str(log))])
    rows = list(csv.DictReader(open(log)))
    assert len(rows) == 4
    for row in rows[0::2]:  # epochs 1 and 3 (0-based 0, 2): no validation
        assert math.isnan(float(row["aug_signal"])) and math.isnan(float(row["lr_plateau_wait"]))
    # The strength held over the unvalidated epoch: the epoch after it ran at the same strength.
    assert float(rows[1]["aug_strength"]) == pytest.approx(float(rows[0]["aug_strength"]))
    assert not math.isnan(float(rows[1]["aug_signal"]))


def test_a_signal_cannot_read_the_test_set(tiny):
    model, layer = make_model()
    controller = callbacks.AdaptiveStrength(layer, signal=lambda logs: logs["accuracy"] - logs["test_accuracy"])
    with pytest.raises(ValueError, match="'test_accuracy' is a held-out test key"):
        model.fit(tiny["train"], validation_data=tiny["val"], epochs=1, verbose=0, shuffle=False,
                  callbacks=callbacks.in_working_order([callbacks.ScheduledEvaluation(tiny["test"], every=1), controller]))


class KeyedStop(keras.callbacks.Callback):
    """A user's early stopping that keeps its key under another attribute name."""

    def __init__(self, key):
        super().__init__()
        self.watch = key


def test_guard_sees_a_test_key_under_any_attribute_name(tiny):
    model, _ = make_model()
    with pytest.raises(ValueError, match="KeyedStop monitors 'test_accuracy'"):
        model.fit(tiny["train"], validation_data=tiny["val"], epochs=1, verbose=0, shuffle=False,
                  callbacks=callbacks.in_working_order([callbacks.ScheduledEvaluation(tiny["test"], every=1),
                                                        KeyedStop("test_accuracy")]))
    # A file name that starts with "test_" is not a key.
    checkpoint = keras.callbacks.ModelCheckpoint("test_model.keras", monitor="val_loss")
    callbacks.check_no_test_monitor([checkpoint])


def test_guard_warns_loudly_when_it_cannot_see_the_other_callbacks(tiny):
    evaluation = callbacks.ScheduledEvaluation(tiny["test"], every=1)
    with pytest.warns(RuntimeWarning, match="cannot see the other callbacks.*in_working_order"):
        evaluation.on_train_begin()


def _scripted_stop(values, state_dir, kill_after=None):
    """Feeds val_accuracy values to EarlyStopping epoch by epoch; a 'kill' makes a fresh instance."""

    class Model:
        stop_training = False

    stop = callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=2, state_dir=state_dir)
    stop.set_model(Model())
    stop.on_train_begin()
    for epoch, value in enumerate(values):
        if kill_after is not None and epoch == kill_after:
            stop = callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=2, state_dir=state_dir)
            stop.set_model(Model())
            stop.on_train_begin()
        stop.on_epoch_begin(epoch)
        stop.on_epoch_end(epoch, {"val_accuracy": value})
        if stop.model.stop_training:
            return epoch
    return None


def test_early_stopping_resumes_exactly(tmp_path):
    values = [0.5, 0.6, 0.55, 0.58, 0.59, 0.7]
    uninterrupted = _scripted_stop(values, tmp_path / "a")
    assert uninterrupted == 3
    for kill_after in range(1, 4):
        assert _scripted_stop(values, tmp_path / f"k{kill_after}", kill_after=kill_after) == uninterrupted
    # Keras' own restarts its count after the kill, and stops later.
    with pytest.raises(ValueError, match="cannot monitor 'test_loss'"):
        callbacks.EarlyStopping(monitor="test_loss")


def docs_example() -> str:
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "keras_callbacks.md").read_text()
    marker = text.index("<!-- keras-callbacks-example")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


def test_the_ported_article_script_runs_and_its_scheduler_steps_show(tmp_path, monkeypatch):
    code = docs_example()
    # A short run: 4 epochs, with the scheduler's decay starting after epoch 2 instead of 10.
    code = code.replace("EPOCHS = 15", "EPOCHS = 4").replace("if epoch < 10:", "if epoch < 2:")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "keras_callbacks.md", "exec"), {})
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 4 and (tmp_path / "best.keras").is_file()
    for key in ("test_accuracy", "aug_strength", "learning_rate", "lr_multiplier", "val_accuracy"):
        assert key in rows[0], key
    rates = [float(r["learning_rate"]) for r in rows]
    multipliers = [float(r["lr_multiplier"]) for r in rows]
    bases = [rate / m for rate, m in zip(rates, multipliers)]
    # Held for epochs 0-1 (unless the plateau cut), then the scheduler's exp(-0.1) steps.
    assert bases[0] == pytest.approx(1e-3, rel=1e-5)
    assert bases[3] <= bases[2] * math.exp(-0.1) * 1.0001
    assert math.isnan(float(rows[0]["test_accuracy"])) and not math.isnan(float(rows[1]["test_accuracy"]))


def test_in_working_order_sorts_what_a_raw_list_would_get_wrong_and_says_what_it_moved(tiny, tmp_path):
    model, layer = make_model()
    log = tmp_path / "log.csv"
    evaluation = callbacks.ScheduledEvaluation(tiny["test"], every=5)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=1e9)  # stops after epoch 2
    logger = keras.callbacks.CSVLogger(str(log))
    strength = callbacks.StrengthSchedule(layer, "constant:0.2")
    commit = callbacks.EpochCommit(tmp_path / "backup")
    mine = keras.callbacks.LambdaCallback()  # no stage: it stays right after the callback it followed
    given = [commit, logger, mine, evaluation, strength, pipelines.EpochSync(tiny["epoch"]), stop]
    ordered = callbacks.in_working_order(given)
    assert [type(c).__name__ for c in ordered] == [
        "EpochSync", "StrengthSchedule", "EarlyStopping", "ScheduledEvaluation", "CSVLogger", "LambdaCallback",
        "EpochCommit"]
    moved = callbacks.working_order_moves(given)
    assert "EpochSync: moved before EpochCommit (epoch sync runs before commit)" in moved
    assert not callbacks.working_order_moves(ordered)
    assert evaluation.fit_callbacks is ordered and given[0] is commit  # the given list is not changed
    model.fit(tiny["train"], validation_data=tiny["val"], epochs=10, verbose=0, shuffle=False, callbacks=ordered)
    rows = list(csv.DictReader(open(log)))
    # The early stop's last epoch was evaluated, and the logger saw the keys written before it.
    assert len(rows) < 10 and not math.isnan(float(rows[-1]["test_accuracy"]))
    assert float(rows[0]["aug_strength"]) == pytest.approx(0.2)
    assert json.loads((tmp_path / "backup" / "commit.json").read_text())["epoch"] == len(rows)


def test_a_raw_list_with_two_augpipe_callbacks_in_the_wrong_order_is_refused_with_the_fix(tiny, tmp_path):
    model, layer = make_model()
    for late, early, why in (
        (callbacks.AdaptiveStrength(layer), callbacks.TrainingCurves(tmp_path / "c.png"), "loggers record"),
        (callbacks.LearningRateControl(), callbacks.EpochBackup(tmp_path / "backup"), "installs its schedule"),
        (callbacks.ThroughputMonitor(batch_size=32), callbacks.EpochCommit(tmp_path / "backup"), "commit marker"),
    ):
        with pytest.raises(ValueError, match=f"{type(late).__name__} must come before {type(early).__name__} "
                                             f"in the callback list: .*{why}.*in_working_order"):
            model.fit(tiny["train"], validation_data=tiny["val"], epochs=1, verbose=0, callbacks=[early, late])
    # Orders that do not matter are not refused: the strength control beside the learning-rate control.
    control = callbacks.LearningRateControl(decay=None)
    model.fit(tiny["train"], validation_data=tiny["val"], epochs=1, verbose=0,
              callbacks=[callbacks.StrengthSchedule(layer, "constant:0.1"), control])
