"""Callback decisions on scripted logs: pure and fast, no training."""

import math

import keras
import numpy as np
import pytest

from augpipe.callbacks.base import atomic_write_text
from augpipe import augment
from augpipe import callbacks
from augpipe.callbacks import schedules


def test_schedules_and_specs():
    assert schedules.constant(0.3)(7) == 0.3
    ramp = callbacks.parse_schedule("linear:0.1:0.8:20")
    assert ramp(0) == pytest.approx(0.1) and ramp(10) == pytest.approx(0.45) and ramp(99) == pytest.approx(0.8)
    cos = callbacks.parse_schedule("cosine:0.8:0.2:10")
    assert cos(0) == pytest.approx(0.8) and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.2)
    stair = callbacks.parse_schedule("step:0.2,0.5,0.9:3")
    assert [stair(e) for e in range(10)] == [0.2] * 3 + [0.5] * 3 + [0.9] * 4
    assert callbacks.parse_schedule(ramp.spec).spec == ramp.spec


@pytest.mark.parametrize(
    "spec,match",
    [
        ("linear:0.1:0.8", "Invalid schedule spec 'linear:0.1:0.8'"),
        ("ramp:0.1", "Expected constant:X, linear"),
        ("constant:1.5", "value 1.5 is outside"),
        ("linear:0.1:0.8:0", r"Received: epochs=0"),
        ("step::3", "Invalid schedule spec"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        callbacks.parse_schedule(spec)


def test_strength_schedule_assigns_and_logs():
    layer = augment.Augment("mnist", strength=0.0, seed=0)
    callback = callbacks.StrengthSchedule(layer, "step:0.1,0.6:2")
    for epoch, expected in [(0, 0.1), (1, 0.1), (2, 0.6)]:
        callback.on_epoch_begin(epoch)
        logs = {}
        callback.on_epoch_end(epoch, logs)
        assert float(layer.strength.numpy()) == pytest.approx(expected)
        assert logs["aug_strength"] == pytest.approx(expected)
    bad = callbacks.StrengthSchedule(layer, lambda epoch: 2.0)
    with pytest.raises(ValueError, match=r"schedule\(0\) returned 2.0. Expected a float in \[0, 1\]"):
        bad.on_epoch_begin(0)


def test_adaptive_strength_sign_rule_with_warmup_and_clamps():
    variable = keras.Variable(0.5, trainable=False)
    controller = callbacks.AdaptiveStrength(variable, target_value=0.0, speed=0.1, warmup_epochs=1, max_strength=0.7)
    gaps = [0.05, 0.05, 0.05, 0.05, -0.02, 0.0]
    used = []
    for epoch, gap in enumerate(gaps):
        controller.on_epoch_begin(epoch)
        logs = {"accuracy": 0.9 + gap, "val_accuracy": 0.9}
        controller.on_epoch_end(epoch, logs)
        used.append(logs["aug_strength"])
        assert logs["aug_signal"] == pytest.approx(gap)
    # warmup holds 0.5; then +0.1, +0.1, clamp at 0.7; -0.1; a zero error holds.
    np.testing.assert_allclose(used, [0.5, 0.5, 0.6, 0.7, 0.7, 0.6])
    assert float(variable.numpy()) == pytest.approx(0.6)


def test_adaptive_strength_loss_ratio_and_errors():
    variable = keras.Variable(0.2, trainable=False)
    controller = callbacks.AdaptiveStrength(variable, signal="loss_ratio", warmup_epochs=0, speed=0.05)
    controller.on_epoch_begin(0)
    controller.on_epoch_end(0, {"loss": 0.1, "val_loss": 0.2})
    assert float(variable.numpy()) == pytest.approx(0.25)
    # An epoch without validation holds the strength and logs a NaN signal.
    logs = {"loss": 0.1}
    controller.on_epoch_end(1, logs)
    assert math.isnan(logs["aug_signal"]) and float(variable.numpy()) == pytest.approx(0.25)
    # Validation ran but the needed key is not there: a configuration error.
    with pytest.raises(ValueError, match=r"needs \['loss', 'val_loss'\].*pass validation_data"):
        controller.on_epoch_end(2, {"loss": 0.1, "val_accuracy": 0.5})
    with pytest.raises(ValueError, match="Expected one of accuracy_gap, loss_ratio, probe_gap, .* or a callable"):
        callbacks.AdaptiveStrength(variable, signal="gap")
    with pytest.raises(ValueError, match=r"min_strength=0.8 > max_strength=0.2"):
        callbacks.AdaptiveStrength(variable, min_strength=0.8, max_strength=0.2)
    with pytest.raises(ValueError, match="Expected an augment.Augment layer or its strength variable"):
        callbacks.AdaptiveStrength("layer")


def test_lr_multiplier_warmup_cosine():
    control = callbacks.LearningRateControl(warmup_epochs=2, decay="cosine", min_multiplier=0.1)
    values = [control.multiplier_for(e, 12) for e in range(13)]
    assert values[0] == pytest.approx(1 / 3) and values[1] == pytest.approx(2 / 3)
    assert values[2] == pytest.approx(1.0)
    assert values[7] == pytest.approx(0.1 + 0.9 * 0.5)
    assert values[12] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[2:], values[3:]))


def test_plateau_cuts_with_patience_cooldown_and_min_lr():
    control = callbacks.LearningRateControl(decay=None, patience=2, factor=0.5, cooldown=1, min_lr=0.2)
    decisions = [control.plateau_step(v) for v in [1.0, 0.9] + [0.95] * 11]
    assert decisions == ["improved", "improved"] + ["wait", "cut_lr", "cooldown"] * 3 + ["wait", "at_min_lr"]
    # 1 -> 0.5 -> 0.25 -> 0.2 (clamped by min_lr / base_lr with base_lr 1), then no lower.
    assert control.plateau_factor == pytest.approx(0.2) and control.num_cuts == 3


def test_plateau_raises_strength_before_cutting_lr():
    variable = keras.Variable(0.5, trainable=False)
    controller = callbacks.AdaptiveStrength(variable, max_strength=0.6, warmup_epochs=0)
    control = callbacks.LearningRateControl(decay=None, patience=1, strength_controller=controller, strength_step=0.1)
    decisions = [control.plateau_step(v) for v in [1.0, 1.0, 1.0, 0.5, 0.6, 0.6]]
    # plateau -> raise strength; persists -> cut; improvement; plateau at max strength -> cut
    assert decisions == ["improved", "raise_strength", "cut_lr", "improved", "cut_lr", "cut_lr"]
    assert controller.strength == pytest.approx(0.6) and float(variable.numpy()) == pytest.approx(0.6)


def test_lr_control_refuses_test_keys_and_bad_args():
    with pytest.raises(ValueError, match="cannot monitor 'test_loss'.*held-out.*'val_\\*'"):
        callbacks.LearningRateControl(monitor="test_loss", patience=2)
    with pytest.raises(ValueError, match=r"Received: factor=1.5"):
        callbacks.LearningRateControl(factor=1.5)
    with pytest.raises(ValueError, match=r"Received: decay='linear'"):
        callbacks.LearningRateControl(decay="linear")


def test_test_monitor_guard():
    guarded = [keras.callbacks.EarlyStopping(monitor="val_loss"), keras.callbacks.ModelCheckpoint("m.keras", monitor="test_accuracy")]
    with pytest.raises(ValueError, match="ModelCheckpoint monitors 'test_accuracy'.*'val_accuracy'"):
        callbacks.check_no_test_monitor(guarded)
    callbacks.check_no_test_monitor([keras.callbacks.EarlyStopping(monitor="val_loss")])


def test_throughput_summary():
    monitor = callbacks.ThroughputMonitor(batch_size=100)
    summary = monitor.summarize([0.1] * 8 + [0.3, 0.3], 100, elapsed=1.4)
    assert summary["images_per_sec"] == pytest.approx(1000 / 1.4)
    assert summary["input_wait_share"] == pytest.approx(0.4 / 1.4)
    assert math.isnan(monitor.summarize([], 100, 1.0)["images_per_sec"])


def test_files_follow_the_umask(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.json", "{}")
        assert stat.S_IMODE(os.stat(tmp_path / "report.json").st_mode) == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "{}")
        assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o600
    finally:
        os.umask(previous)


def test_throughput_monitor_leaves_the_tracing_step_out(monkeypatch):
    from augpipe.callbacks import monitors

    clock = iter([0.0, 0.0, 10.0] + [10.0 + 0.1 * i for i in range(1, 21)] + [12.0])
    monkeypatch.setattr(monitors.time, "perf_counter", lambda: next(clock))
    monitor = callbacks.ThroughputMonitor(batch_size=100)
    monitor.on_train_begin()
    monitor.on_epoch_begin(0)  # t = 0
    monitor.on_train_batch_begin(0)  # t = 0: the first step traces for 10 s
    monitor.on_train_batch_end(0)  # t = 10
    for batch in range(1, 11):  # ten steps of 0.1 s
        monitor.on_train_batch_begin(batch)
        monitor.on_train_batch_end(batch)
    logs = {}
    monitor.on_epoch_end(0, logs)  # t = 12
    assert logs["input_wait_share"] == pytest.approx(0.0, abs=1e-6)  # tracing is not input wait
    assert logs["images_per_sec"] == pytest.approx(1000 / 2.0)  # 10 steps x 100 images in the 2 s after tracing


def test_resumable_says_when_it_continues_an_old_run(tmp_path, capsys):
    from augpipe.callbacks import commit

    callbacks.resumable(tmp_path / "run")
    assert capsys.readouterr().err == ""  # a new run: nothing to say
    (tmp_path / "run" / "backup" / "commit.json").write_text('{"epoch": 3}')
    (tmp_path / "run" / "backup" / "weights-3.weights.h5").write_bytes(b"")
    callbacks.resumable(tmp_path / "run")
    assert capsys.readouterr().err == f"augpipe: resuming the run in '{tmp_path / 'run'}' from epoch 4 (3 committed)\n"
    callbacks.resumable(tmp_path / "run", verbose=0)
    assert capsys.readouterr().err == "" and commit.committed_epoch(tmp_path / "run" / "backup") == 3
