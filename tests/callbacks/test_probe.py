"""The probe: clean training images in inference mode, a strength signal that measures the model, not itself."""

import csv
import json
import math

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from augpipe import augment, callbacks, pipelines
from conftest import make_digits


@pytest.fixture(scope="module")
def data():
    # Val and probe at about run-mnist's sizes (500 and 256): with 60 and 64 images, one epoch's gap between
    # them could cross the controller's dead band by sampling noise alone (3-4 images).
    images, labels = make_digits(num_per_class=80, size=12)
    splits = pipelines.make_splits(pipelines.Source.from_arrays(images, labels), val_size=200, test_size=60, seed=0)
    probe_split = pipelines.make_probe(splits.train, 256, seed=0)
    return {
        "splits": splits,
        "probe_split": probe_split,
        "train": pipelines.build_training_pipeline(splits.train, batch_size=32, seed=0),
        "val": pipelines.build_pipeline(splits.val, batch_size=64, training=False),
        "probe": pipelines.build_pipeline(probe_split, batch_size=64, training=False),
    }


def test_the_probe_is_a_fixed_stratified_sample_of_the_training_split_alone(data):
    splits, probe = data["splits"], data["probe_split"]
    assert len(probe) == 256 and max(probe.class_counts()) - min(probe.class_counts()) <= 1
    assert set(probe.indices) <= set(splits.train.indices)
    assert not set(probe.indices) & (set(splits.val.indices) | set(splits.test.indices))
    again = pipelines.make_probe(splits.train, 256, seed=0)
    np.testing.assert_array_equal(again.indices, probe.indices)
    assert not np.array_equal(pipelines.make_probe(splits.train, 256, seed=1).indices, probe.indices)
    assert len(pipelines.make_probe(splits.train, 10_000, seed=0)) == len(splits.train)
    with pytest.raises(ValueError, match="Received: size=0. Expected a positive number"):
        pipelines.make_probe(splits.train, 0)


def test_probe_figures_from_logits_and_from_probabilities():
    labels = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.95, 0.05], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    figures = callbacks.probe_figures(probabilities, labels, confidence=0.75)
    assert figures["accuracy"] == pytest.approx(0.75)  # argmax of [0.5, 0.5] is class 0
    assert figures["confident"] == pytest.approx(0.5)  # 0.95 and 0.8
    assert figures["loss"] == pytest.approx(-np.mean(np.log([0.95, 0.8, 0.4, 0.5])))
    logits = np.log(probabilities) + 3.0  # the same softmax
    assert callbacks.probe_figures(logits, labels, confidence=0.75) == pytest.approx(figures)


def bn_model(policy="none", strength=0.3):
    keras.utils.set_random_seed(0)
    layer = augment.Augment(policy, strength=strength, seed=0)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((12, 12, 1), dtype="uint8"), layer,
        L.Conv2D(16, 3, padding="same"), L.BatchNormalization(momentum=0.99), L.ReLU(),
        L.Conv2D(16, 3, padding="same"), L.BatchNormalization(momentum=0.99), L.ReLU(),
        L.GlobalAveragePooling2D(), L.Dense(10)])
    model.compile(keras.optimizers.Adam(0.03), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model, layer


def test_batchnorm_lag_raises_the_old_signal_but_not_the_probe_signal(data):
    # A small BatchNorm CNN at a high learning rate with augmentation off: its moving statistics lag, so
    # validation (inference mode) trails training (batch statistics) though nothing overfits and no
    # augmentation could help. The train/val gap reads that as overfitting; the probe sees the same lag.
    strengths = {}
    for signal in ("accuracy_gap", "probe_gap"):
        model, layer = bn_model()
        controller = callbacks.AdaptiveStrength(layer, signal=signal, warmup_epochs=0)
        found = [pipelines.EpochSync(data["train"][1]), controller, callbacks.ProbeEvaluation(data["probe"])]
        history = model.fit(data["train"][0], validation_data=data["val"], epochs=8, verbose=0,
                            callbacks=callbacks.in_working_order(found))
        strengths[signal] = history.history["aug_strength"] + [float(layer.strength.numpy())]
        lag = np.array(history.history["accuracy"]) - np.array(history.history["val_accuracy"])
        assert lag[-4:].mean() > 0.15, lag  # the lag is there in both runs
        probe_gap = np.array(history.history["probe_accuracy"]) - np.array(history.history["val_accuracy"])
        assert np.abs(probe_gap).max() < 0.05, probe_gap  # the probe lags like validation
    assert strengths["accuracy_gap"][-1] >= 0.5  # the old signal pushed 0.3 up
    assert max(strengths["probe_gap"]) <= 0.3 + 1e-6  # the probe signal never raised it


def test_batchnorm_lag_does_not_raise_the_shaped_ceiling(data):
    model, layer = bn_model()
    shaped = callbacks.ShapedStrength(layer, initial_ceiling=0.3, total_epochs=8)
    found = [pipelines.EpochSync(data["train"][1]), shaped, callbacks.ProbeEvaluation(data["probe"])]
    history = model.fit(data["train"][0], validation_data=data["val"], epochs=8, verbose=0,
                        callbacks=callbacks.in_working_order(found))
    lag = np.array(history.history["accuracy"]) - np.array(history.history["val_accuracy"])
    assert lag[-4:].mean() > 0.15, lag
    assert max(history.history["aug_ceiling"]) <= 0.3 + 1e-6, history.history["aug_ceiling"]
    assert max(history.history["aug_strength"]) <= 0.3 + 1e-6


def test_probe_figures_match_an_evaluation_in_inference_mode(data):
    model, _ = bn_model(policy="mnist")
    probe = callbacks.ProbeEvaluation(data["probe"])
    model.fit(data["train"][0], epochs=1, verbose=0, callbacks=callbacks.in_working_order(
        [pipelines.EpochSync(data["train"][1]), probe]))
    evaluated = model.evaluate(data["probe"], verbose=0, return_dict=True)
    assert probe.last["accuracy"] == pytest.approx(evaluated["accuracy"], abs=1e-6)
    assert probe.last["loss"] == pytest.approx(evaluated["loss"], rel=1e-4)


def test_probe_signals_hold_without_validation_and_confidence_needs_none(data, tmp_path):
    model, layer = bn_model(policy="mnist")
    gap = callbacks.AdaptiveStrength(layer, signal="probe_gap", warmup_epochs=0, tolerance=0.0)
    log = tmp_path / "log.csv"
    model.fit(data["train"][0], validation_data=data["val"], validation_freq=2, epochs=4, verbose=0,
              callbacks=callbacks.in_working_order([pipelines.EpochSync(data["train"][1]), gap,
                                                    callbacks.ProbeEvaluation(data["probe"]),
                                                    keras.callbacks.CSVLogger(str(log))]))
    rows = list(csv.DictReader(open(log)))
    for row in rows[0::2]:  # no validation: the signal is NaN and the strength holds
        assert math.isnan(float(row["aug_signal"])) and not math.isnan(float(row["probe_accuracy"]))
    assert float(rows[1]["aug_strength"]) == pytest.approx(float(rows[0]["aug_strength"]))
    confidence = callbacks.AdaptiveStrength(layer, signal="probe_confidence", warmup_epochs=0)
    logs = {"probe_confident": 0.9, "loss": 0.1}  # an epoch without validation
    confidence.on_epoch_begin(0)
    confidence.on_epoch_end(0, logs)
    assert logs["aug_signal"] == pytest.approx(0.9) and float(layer.strength.numpy()) > logs["aug_strength"]


def test_a_probe_signal_without_the_probe_or_after_it_is_a_clear_error(data):
    model, layer = bn_model()
    with pytest.raises(ValueError, match="needs \\['probe_accuracy', 'val_accuracy'\\].*ProbeEvaluation"):
        model.fit(data["train"][0], validation_data=data["val"], epochs=1, verbose=0,
                  callbacks=[callbacks.AdaptiveStrength(layer, signal="probe_gap")])
    with pytest.raises(ValueError, match="ProbeEvaluation must come before AdaptiveStrength.*probe's figures"):
        model.fit(data["train"][0], validation_data=data["val"], epochs=1, verbose=0,
                  callbacks=[callbacks.AdaptiveStrength(layer, signal="probe_gap"),
                             callbacks.ProbeEvaluation(data["probe"])])


def test_the_strength_grammar_names_the_signal():
    spec = callbacks.parse_strength("adaptive:probe_gap")
    assert spec.kind == "adaptive" and spec.signal == "probe_gap" and spec.needs_probe
    assert not callbacks.parse_strength("adaptive").needs_probe
    with pytest.raises(ValueError, match="unknown signal 'probe_gapp'.*Did you mean 'probe_gap'"):
        callbacks.parse_strength("adaptive:probe_gapp")


@pytest.fixture
def op_determinism_for_this_test():
    """--deterministic turns TensorFlow's op determinism on for the whole process; later tests need it off
    (Keras turns XLA off under it). TensorFlow's public API can only turn it on."""
    from tensorflow.python.framework import config as tf_config

    yield
    tf_config.disable_op_determinism()


@pytest.mark.parametrize("strength", ["adaptive:probe_gap", "shaped"])
def test_run_mnist_with_the_probe_signal_logs_the_probe_and_resumes_exactly(strength, tiny_npz, tmp_path, monkeypatch,
                                                                            op_determinism_for_this_test):
    from augpipe.scripts import experiment
    from augpipe.scripts.run_mnist import main

    def run(run_dir, *extra):
        result = CliRunner().invoke(main, ["--source", tiny_npz, "--model", "mlp", "--batch-size", "32",
                                           "--strength", strength, "--deterministic", "--quiet",
                                           "--no-tensorboard", "--run-dir", str(run_dir), "--epochs", "4", *extra])
        assert result.exit_code == 0, result.output
        with open(run_dir / "log.csv") as handle:
            return [{k: v for k, v in row.items() if k not in ("images_per_sec", "input_wait_share")}
                    for row in csv.DictReader(handle)]

    whole = run(tmp_path / "whole")
    assert len(whole) == 4 and all(0.0 <= float(row["probe_accuracy"]) <= 1.0 for row in whole)
    original = experiment.build_callbacks

    def stopping_after_two(*args, **kwargs):  # the run stops after epoch 2 of 4, as if killed there
        stop = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: setattr(stop.model, "stop_training", epoch == 1))
        found = original(*args, **kwargs)
        return callbacks.in_working_order(found[:-1] + [stop] + found[-1:])

    monkeypatch.setattr(experiment, "build_callbacks", stopping_after_two)
    assert len(run(tmp_path / "split")) == 2
    monkeypatch.setattr(experiment, "build_callbacks", original)
    assert run(tmp_path / "split", "--resume") == whole
    report = json.loads((tmp_path / "whole" / "report.json").read_text())
    assert report["options"]["strength"] == strength
    if strength == "shaped":  # the ramp's shape over 4 epochs: 1, 1, 1 then the weak last epoch (half)
        from augpipe.callbacks.grammar import SHAPED_INITIAL_CEILING

        ceilings = [float(row["aug_ceiling"]) for row in whole]
        used = [float(row["aug_strength"]) for row in whole]
        assert used[0] == pytest.approx(SHAPED_INITIAL_CEILING) and used[3] == pytest.approx(0.5 * ceilings[2])
