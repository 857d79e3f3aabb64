"""Callbacks inside real (tiny) fits."""

import csv
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from augpipe import augment
from augpipe import callbacks
from augpipe import pipelines

HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers")


@pytest.fixture
def tiny(tiny_source):
    splits = pipelines.make_splits(tiny_source, val_size=20, test_size=20, seed=0)
    return {
        # (dataset, EpochCounter)
        "train": pipelines.build_training_pipeline(splits.train, batch_size=32, seed=0),
        "val": pipelines.build_pipeline(splits.val, batch_size=32, training=False),
        "test": pipelines.build_pipeline(splits.test, batch_size=32, training=False),
    }


def make_model(strength=0.3, learning_rate=1e-2):
    keras.utils.set_random_seed(0)
    layer = augment.Augment("mnist", strength=strength, seed=1)
    model = keras.Sequential([keras.Input((12, 12, 1), dtype="uint8"), layer, keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model, layer


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_all_callbacks_write_stable_csv_columns(tiny, tmp_path):
    model, layer = make_model()
    controller = callbacks.AdaptiveStrength(layer, warmup_epochs=1)
    history = model.fit(
        tiny["train"][0], validation_data=tiny["val"], epochs=4, verbose=0, shuffle=False,
        callbacks=callbacks.in_working_order([
            pipelines.EpochSync(tiny["train"][1]),
            controller,
            callbacks.LearningRateControl(warmup_epochs=1, patience=1, strength_controller=controller),
            callbacks.ScheduledEvaluation(tiny["test"], every=3),
            callbacks.ThroughputMonitor(batch_size=32),
            keras.callbacks.CSVLogger(tmp_path / "log.csv"),
            callbacks.TrainingCurves(tmp_path / "curves.png"),
        ]),
    )
    rows = read_csv(tmp_path / "log.csv")
    assert len(rows) == 4
    for key in ("test_loss", "test_accuracy", "aug_strength", "aug_signal", "learning_rate", "images_per_sec", "input_wait_share"):
        assert key in rows[0], key
    evaluated = [not math.isnan(float(row["test_loss"])) for row in rows]
    assert evaluated == [False, False, True, True]  # every=3, plus the last epoch
    assert float(rows[0]["learning_rate"]) == pytest.approx(1e-2 / 2, rel=1e-5)  # warmup epoch 1 of 2
    assert all(float(row["images_per_sec"]) > 0 for row in rows)
    assert history.history["test_accuracy"][2] == pytest.approx(float(rows[2]["test_accuracy"]))
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "curves.png").shape[2] in (3, 4)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or p.startswith(".curves")]


def test_scheduled_evaluation_does_not_disturb_training_metrics(tiny):
    runs = []
    for with_eval in (False, True):
        model, _ = make_model(strength=0.0)
        extra = [callbacks.ScheduledEvaluation(tiny["test"], every=1)] if with_eval else []
        history = model.fit(
            tiny["train"][0], validation_data=tiny["val"], epochs=3, verbose=0, shuffle=False,
            callbacks=callbacks.in_working_order([pipelines.EpochSync(tiny["train"][1])] + extra),
        )
        runs.append(history.history)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(runs[0][key], runs[1][key], rtol=1e-6)
    assert all(not math.isnan(v) for v in runs[1]["test_loss"])


@pytest.mark.parametrize(
    "guarded",
    [
        keras.callbacks.EarlyStopping(monitor="test_loss"),
        keras.callbacks.ModelCheckpoint("best.keras", monitor="test_accuracy"),
        keras.callbacks.ReduceLROnPlateau(monitor="test_loss"),
    ],
)
def test_test_monitor_guard_raises_in_fit(tiny, guarded):
    model, _ = make_model()
    with pytest.raises(ValueError, match="monitors 'test_.*held-out test key"):
        model.fit(
            tiny["train"][0], epochs=1, verbose=0, shuffle=False,
            callbacks=callbacks.in_working_order([guarded, callbacks.ScheduledEvaluation(tiny["test"], every=1)]),
        )


def test_strength_changes_between_epochs_without_retrace(tiny):
    import tensorflow as tf

    model, layer = make_model(strength=0.0)
    probe = np.random.default_rng(0).integers(0, 255, (16, 12, 12, 1), dtype=np.uint8)
    traces, seen = [], []
    policy = layer.policy

    class CountingPolicy:
        def __call__(self, images, strength, seed):
            if not tf.executing_eagerly():
                traces.append(1)  # Python code in a tf.function runs only while tracing
            return policy(images, strength, seed)

    layer.policy = CountingPolicy()

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((float(layer.strength.numpy()), layer(probe, training=True).numpy(), len(traces)))

    model.fit(
        tiny["train"][0], epochs=3, verbose=0, shuffle=False,
        callbacks=[callbacks.StrengthSchedule(layer, "step:0.0,0.5,1.0:1"), Probe()],
    )
    assert [s for s, _, _ in seen] == [0.0, 0.5, 1.0]
    converted = layer(probe, training=False).numpy()
    np.testing.assert_array_equal(seen[0][1], converted)
    assert not np.array_equal(seen[1][1], converted) and not np.array_equal(seen[2][1], seen[1][1])
    # Keras traces its train step during the first epoch; assigning the
    # strength in later epochs must not add a single trace.
    assert traces and [count for _, _, count in seen] == [len(traces)] * 3


def test_lr_control_composes_with_a_keras_schedule(tiny):
    base = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=5, decay_rate=0.5)
    model, _ = make_model(learning_rate=base)
    history = model.fit(
        tiny["train"][0], validation_data=tiny["val"], epochs=3, verbose=0, shuffle=False,
        callbacks=[callbacks.LearningRateControl(warmup_epochs=1, decay=None, patience=1, factor=0.5)],
    )
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, callbacks.MultiplierSchedule) and schedule.base is base
    step = int(model.optimizer.iterations.numpy())
    expected = float(base(step)) * history.history["lr_multiplier"][-1]
    assert history.history["learning_rate"][-1] == pytest.approx(expected, rel=1e-5)
    assert history.history["lr_multiplier"][0] == pytest.approx(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["device", "host", "host-mixup"])
def test_exact_resume_matches_uninterrupted_run(tmp_path, placement):
    script = os.path.join(HELPERS, "resume_run.py")

    def run(*args):
        result = subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    run(tmp_path / "b1", tmp_path / "full.csv", 6, 0, placement)
    run(tmp_path / "b2", tmp_path / "split.csv", 6, 3, placement)
    assert len(read_csv(tmp_path / "split.csv")) == 3
    run(tmp_path / "b2", tmp_path / "split.csv", 6, 0, placement)
    full, split = read_csv(tmp_path / "full.csv"), read_csv(tmp_path / "split.csv")
    assert [r["epoch"] for r in split] == [str(i) for i in range(6)]
    assert list(full[0]) == list(split[0])
    for a, b in zip(full, split):
        assert a == b  # every logged value, test_*, strength and lr included
    weights_full = np.load(tmp_path / "full.csv.npz")
    weights_split = np.load(tmp_path / "split.csv.npz")
    for key in weights_full.files:
        np.testing.assert_array_equal(weights_full[key], weights_split[key])
