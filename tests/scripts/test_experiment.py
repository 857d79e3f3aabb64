"""The MNIST experiment as a library: named stages callable from Python, plain errors, no mutation."""

import dataclasses
import json

import pytest

from augpipe.scripts import experiment


def test_errors_name_options_plainly_and_the_cli_spells_them_as_flags():
    config = experiment.ExperimentConfig(strength="linear:0.1")
    with pytest.raises(experiment.ConfigError) as caught:
        experiment.check_config(config)
    assert "Invalid `strength` 'linear:0.1'" in str(caught.value) and "--" not in str(caught.value)
    assert caught.value.render(lambda name: "--" + name.replace("_", "-")).startswith("Invalid --strength")
    with pytest.raises(experiment.ConfigError, match="`resume` and `overwrite` contradict"):
        experiment.check_config(experiment.ExperimentConfig(resume=True, overwrite=True))
    assert isinstance(caught.value, ValueError)  # a plain ValueError for library callers


def test_the_stages_run_one_by_one_and_leave_the_config_alone(tiny_npz, tmp_path):
    config = experiment.ExperimentConfig(source=tiny_npz, model="mlp", epochs=2, batch_size=32, quiet=True,
                                         tensorboard=False, run_dir=str(tmp_path / "run"))
    before = dataclasses.asdict(config)
    experiment.check_config(config)
    resolved, run_dir = experiment.open_run_dir(config)
    data = experiment.load_data(resolved)
    assert experiment.prepare_run_dir(resolved, run_dir) is True  # created only now, after the data loaded
    experiment.write_config(resolved, run_dir, data)
    parts = experiment.build_experiment_model(resolved, data)
    assert parts.model.layers[1] is parts.augment_layer  # device placement: the layer is in the model
    inputs = experiment.build_inputs(resolved, data, parts)
    callback_list = experiment.build_callbacks(resolved, run_dir, parts, inputs)
    history = experiment.fit(resolved, run_dir, parts, inputs, callback_list)
    report = experiment.write_report(resolved, run_dir, data, parts, inputs, history, wall_time_s=1.0)
    assert report["epochs_run"] == 2 and json.loads((run_dir / "report.json").read_text()) == report
    assert dataclasses.asdict(config) == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3


def test_resume_returns_the_saved_options_in_a_new_config(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    first = experiment.ExperimentConfig(source=tiny_npz, model="mlp", epochs=1, batch_size=32, quiet=True,
                                        tensorboard=False, run_dir=str(run_dir))
    experiment.run_experiment(first)
    again = experiment.ExperimentConfig(run_dir=str(run_dir), resume=True, epochs=2)
    resolved, _ = experiment.open_run_dir(again, explicit={"epochs", "resume", "run_dir"})
    assert resolved.model == "mlp" and resolved.source == tiny_npz and resolved.epochs == 2
    assert again.model == "cnn"  # unchanged
    with pytest.raises(experiment.ConfigError, match="`resume` cannot change `model`"):
        experiment.open_run_dir(dataclasses.replace(again, model="cnn"), explicit={"model", "resume", "run_dir"})


def test_reported_test_accuracy_is_the_count_of_correct_predictions(tiny_npz, tmp_path):
    import keras
    import numpy as np

    import augpipe  # noqa: F401  (registers the custom objects best.keras needs)
    from augpipe import pipelines

    config = experiment.ExperimentConfig(source=tiny_npz, model="mlp", epochs=3, batch_size=32, quiet=True,
                                         tensorboard=False, run_dir=str(tmp_path / "run"))
    report, run_dir = experiment.run_experiment(config)
    splits = pipelines.make_splits(pipelines.load_source(tiny_npz), seed=config.seed)
    model = keras.models.load_model(run_dir / "best.keras")
    predictions = model.predict(splits.test.images, batch_size=64, verbose=0).argmax(-1)
    correct = int((predictions == splits.test.labels).sum())
    assert report["test_accuracy"] == pytest.approx(correct / len(splits.test.labels), abs=1e-9)


def test_jit_compile_trains_the_experiment_under_xla_and_may_change_on_resume(tiny_npz, tmp_path, monkeypatch):
    from augpipe.augment.engine import GatedPolicy

    static_traces = []
    original = GatedPolicy.apply_static
    monkeypatch.setattr(GatedPolicy, "apply_static", lambda self, *a: static_traces.append(1) or original(self, *a))
    run_dir = tmp_path / "run"
    config = experiment.ExperimentConfig(source=tiny_npz, epochs=2, batch_size=32, quiet=True, tensorboard=False,
                                         run_dir=str(run_dir), jit_compile=True)
    report, _ = experiment.run_experiment(config)
    assert report["epochs_run"] == 2 and static_traces  # the step was traced under XLA, on the static path
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["options"]["jit_compile"] is True
    # Same draws either way (augment.ops' XLA-proof generators): a resume may turn XLA off.
    again = experiment.ExperimentConfig(run_dir=str(run_dir), resume=True, epochs=3, jit_compile=False)
    resolved, _ = experiment.open_run_dir(again, explicit={"epochs", "resume", "run_dir", "jit_compile"})
    assert resolved.jit_compile is False and resolved.source == tiny_npz
