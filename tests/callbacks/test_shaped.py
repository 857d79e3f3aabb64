"""ShapedStrength: a weak-to-strong ramp, a ceiling moved by the controller, a weak final stretch."""

import math

import pytest

from augpipe import augment, callbacks


def _run(shaped, signals):
    """Drives the callback through epochs with the given signal values; returns the logs."""
    rows = []
    shaped.on_train_begin()
    for epoch, value in enumerate(signals):
        shaped.on_epoch_begin(epoch)
        logs = {"probe_accuracy": 0.9 + value, "val_accuracy": 0.9, "loss": 0.1}
        shaped.on_epoch_end(epoch, logs)
        rows.append(logs)
    return rows


def test_the_strength_is_the_ceiling_times_the_shape():
    layer = augment.Augment("mnist", seed=0)
    shaped = callbacks.ShapedStrength(layer, initial_ceiling=0.8, total_epochs=20)
    rows = _run(shaped, [0.01] * 20)  # inside the dead band: the ceiling holds
    used = [row["aug_strength"] for row in rows]
    # ramp over round(0.3 * 20) = 6 epochs, then the ceiling, then round(0.15 * 20) = 3 weak epochs at half
    assert used[:6] == pytest.approx([0.8 * (e + 1) / 6 for e in range(6)])
    assert used[6:17] == pytest.approx([0.8] * 11)
    assert used[17:] == pytest.approx([0.4] * 3)
    assert all(row["aug_ceiling"] == pytest.approx(0.8) for row in rows)


def test_the_controller_moves_the_ceiling_not_the_shape():
    layer = augment.Augment("mnist", seed=0)
    shaped = callbacks.ShapedStrength(layer, initial_ceiling=0.5, total_epochs=10, speed=0.05)
    rows = _run(shaped, [0.2] * 4 + [-0.2] * 6)  # overfitting, then underfitting
    ceilings = [row["aug_ceiling"] for row in rows]
    assert ceilings[:4] == pytest.approx([0.55, 0.6, 0.65, 0.7])
    assert ceilings[4:] == pytest.approx([0.65, 0.6, 0.55, 0.5, 0.45, 0.4])
    # epoch 5 (0-based) uses the ceiling after epoch 4, at full shape
    assert rows[5]["aug_strength"] == pytest.approx(0.65)
    # the layer holds what the next epoch will use: the last epoch's weak share of the ceiling
    assert float(layer.strength.numpy()) == pytest.approx(0.5 * 0.4)


def test_the_shape_takes_the_fit_epochs_and_checks_its_arguments():
    layer = augment.Augment("mnist", seed=0)
    shaped = callbacks.ShapedStrength(layer)
    shaped.set_params({"epochs": 30})
    shaped.on_train_begin()
    assert shaped.total_epochs == 30 and shaped.shape(8) == pytest.approx(1.0) and shaped.shape(29) == 0.5
    with pytest.raises(ValueError, match="ramp_fraction=0.9 and final_fraction=0.2.*sum <= 1"):
        callbacks.ShapedStrength(layer, ramp_fraction=0.9, final_fraction=0.2)
    with pytest.raises(ValueError, match="initial_ceiling"):
        callbacks.ShapedStrength(layer, initial_ceiling=1.5)


def test_learning_rate_control_raises_the_ceiling_before_it_cuts():
    layer = augment.Augment("mnist", seed=0)
    shaped = callbacks.ShapedStrength(layer, initial_ceiling=0.5, total_epochs=10)
    _run(shaped, [0.0, 0.0])
    assert shaped.raise_strength(0.1)
    assert shaped.ceiling == pytest.approx(0.6)
    # the next epoch (2, on the ramp of 3 epochs: shape 1) uses the raised ceiling at once
    assert float(layer.strength.numpy()) == pytest.approx(0.6)


def test_the_grammar_reads_shaped_and_its_signal():
    spec = callbacks.parse_strength("shaped")
    assert (spec.kind, spec.signal, spec.needs_probe, spec.fixed) == ("shaped", "probe_gap", True, None)
    assert callbacks.parse_strength("shaped:accuracy_gap").needs_probe is False
    layer = augment.Augment("mnist", seed=0)
    assert isinstance(spec.callback(layer), callbacks.ShapedStrength)
    with pytest.raises(ValueError, match="unknown signal 'probe'.*shaped:SIGNAL"):
        callbacks.parse_strength("shaped:probe")
    assert math.isclose(spec.initial, 0.0)
