"""`ema`: the run measures and keeps an exponential moving average of the weights, and backs up the trained ones."""


import click.testing
import keras
import numpy as np
import pytest

from augpipe import callbacks
from augpipe.callbacks import commit
from augpipe.scripts import experiment, run_mnist


def tiny_config(spec, run_dir, **changes):
    options = dict(source=spec, model="mlp", epochs=3, batch_size=32, quiet=True, tensorboard=False,
                   run_dir=str(run_dir), eval_every=1, ema=0.5)
    options.update(changes)
    return experiment.ExperimentConfig(**options)


def test_best_model_and_val_figures_are_the_averaged_weights_and_the_backup_the_trained_ones(tiny_npz, tmp_path):
    config, run_dir = experiment.open_run_dir(tiny_config(tiny_npz, tmp_path / "run"))
    data = experiment.load_data(config)
    experiment.prepare_run_dir(config, run_dir)
    experiment.write_config(config, run_dir, data)
    parts = experiment.build_experiment_model(config, data)
    inputs = experiment.build_inputs(config, data, parts)
    found = experiment.build_callbacks(config, run_dir, parts, inputs)
    history = experiment.fit(config, run_dir, parts, inputs, found)
    report = experiment.write_report(config, run_dir, data, parts, inputs, history, wall_time_s=1.0)
    best_epoch = report["best_epoch"]

    best = experiment.load_best_model(run_dir / "best.keras")
    best.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    # The val accuracy logged for the best epoch is the saved model's: validation ran on the averaged weights.
    assert best.evaluate(inputs.val, verbose=0, return_dict=True)["accuracy"] == pytest.approx(
        report["best_val_accuracy"], abs=1e-6)

    # The backup of that epoch holds the trained weights, and the optimizer's average of them: that is best.keras.
    parts.model.load_weights(str(commit._weights_path(run_dir / "backup", best_epoch)))
    optimizer = parts.model.optimizer
    trained = [np.asarray(v) for v in optimizer._trainable_variables]
    averaged = [np.asarray(v) for v in optimizer._model_variables_moving_average]
    saved = {v.path: np.asarray(v) for v in best.trainable_variables}
    kept = [saved[v.path] for v in optimizer._trainable_variables]
    assert any(not np.allclose(t, a) for t, a in zip(trained, averaged)), "with ema=0.5 the average differs"
    for average, in_best in zip(averaged, kept):
        np.testing.assert_allclose(in_best, average, rtol=1e-6, atol=1e-7)


def test_ema_off_keeps_the_trained_weights_and_adds_no_swap(tiny_npz, tmp_path):
    config = tiny_config(tiny_npz, tmp_path / "run", ema=0.0, epochs=1)
    config, run_dir = experiment.open_run_dir(config)
    data = experiment.load_data(config)
    parts = experiment.build_experiment_model(config, data)
    assert not parts.model.optimizer.use_ema
    found = experiment.build_callbacks(config, run_dir, parts, experiment.build_inputs(config, data, parts))
    assert not any(isinstance(c, keras.callbacks.SwapEMAWeights) for c in found)


def test_the_swap_runs_after_the_backup_and_before_the_probe_checkpoint_and_test(tiny_npz, tmp_path):
    config, run_dir = experiment.open_run_dir(tiny_config(tiny_npz, tmp_path / "run", strength="shaped"))
    data = experiment.load_data(config)
    parts = experiment.build_experiment_model(config, data)
    assert parts.model.optimizer.use_ema and parts.model.optimizer.ema_momentum == 0.5
    names = [type(c).__name__ for c in experiment.build_callbacks(config, run_dir, parts,
                                                                  experiment.build_inputs(config, data, parts))]
    swap = names.index("SwapEMAWeights")
    assert names.index("EpochBackup") < swap
    assert swap < min(names.index(n) for n in ("ProbeEvaluation", "BestModelCheckpoint", "ScheduledEvaluation"))
    # A list in another order is sorted the same way, and the move is said.
    shuffled = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True), callbacks.EpochBackup(tmp_path / "b")]
    assert callbacks.working_order_moves(shuffled) == (
        "EpochBackup: moved before SwapEMAWeights (backup runs before weights)",)


def test_a_resume_keeps_the_saved_momentum_and_refuses_another(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    experiment.run_experiment(tiny_config(tiny_npz, run_dir, epochs=1))
    again = experiment.ExperimentConfig(run_dir=str(run_dir), resume=True, epochs=2)
    resolved, _ = experiment.open_run_dir(again, explicit={"run_dir", "resume", "epochs"})
    assert resolved.ema == 0.5 and again.ema == 0.0
    report, _ = experiment.run_experiment(again, explicit={"run_dir", "resume", "epochs"})
    assert report["epochs_run"] == 2 and report["options"]["ema"] == 0.5
    # The optimizer's averages are part of its state: a resume cannot add or drop them.
    with pytest.raises(experiment.ConfigError, match="`resume` cannot change `ema` \\(saved: 0.5, given: 0.0\\)"):
        experiment.open_run_dir(experiment.ExperimentConfig(run_dir=str(run_dir), resume=True, ema=0.0),
                                explicit={"run_dir", "resume", "ema"})


@pytest.mark.parametrize("value", [1.0, -0.1, True, "0.9"])
def test_an_invalid_momentum_is_refused_with_the_fix(value):
    with pytest.raises(experiment.ConfigError) as caught:
        experiment.check_config(experiment.ExperimentConfig(ema=value))
    message = str(caught.value)
    assert "`ema` must be a momentum in [0, 1)" in message and repr(value) in message and "0 turns" in message


def test_the_command_refuses_a_momentum_of_one():
    result = click.testing.CliRunner().invoke(run_mnist.main, ["--ema", "1"])
    assert result.exit_code == 2 and "--ema" in result.output and "0<=x<1" in result.output


def test_the_command_defaults_are_the_library_defaults():
    # run-mnist spells its defaults without importing TensorFlow; they must not drift from ExperimentConfig's.
    config = experiment.ExperimentConfig()
    parsed = run_mnist.main.make_context("run-mnist", []).params
    shared = [name for name in parsed if hasattr(config, name)]
    assert "ema" in shared and len(shared) >= 20
    for name in shared:
        assert parsed[name] == getattr(config, name), f"{name}: {parsed[name]!r} vs {getattr(config, name)!r}"
