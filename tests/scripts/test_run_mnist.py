"""run-mnist through click's CliRunner, on tiny data written by the tests."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from augpipe.scripts.run_mnist import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_log(run_dir):
    with open(run_dir / "log.csv") as handle:
        return list(csv.DictReader(handle))


def test_help():
    result = invoke("--help")
    assert result.exit_code == 0
    for option in ("--strength", "--placement", "--resume", "--overwrite", "--eval-every", "--mixup"):
        assert option in result.output


def test_smoke_run_writes_every_artifact(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    result = invoke("--source", tiny_npz, "--epochs", 2, "--batch-size", 32, "--eval-every", 1, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "best.keras", "log.csv", "curves.png", "report.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "backup" / "weights-2.weights.h5").is_file()
    assert json.loads((run_dir / "backup" / "commit.json").read_text())["epoch"] == 2
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents*"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["options"]["epochs"] == 2 and config["options"]["source"] == tiny_npz
    assert "tensorflow" in config["versions"] and "npz" in config["provenance"]
    assert len(config["splits"]["train"]["fingerprint"]) == 16
    report = json.loads((run_dir / "report.json").read_text())
    for key in ("test_loss", "test_accuracy", "epochs_run", "wall_time_s", "images_per_sec", "provenance", "best_epoch"):
        assert key in report, key
    assert report["epochs_run"] == 2 and 0.0 <= report["test_accuracy"] <= 1.0
    assert report["splits"]["test"]["size"] == 60
    rows = read_log(run_dir)
    assert len(rows) == 2
    for key in ("test_loss", "test_accuracy", "aug_strength", "learning_rate", "val_accuracy", "images_per_sec"):
        assert key in rows[0], key
    # The default strength is the constant 0.5 (docs/design.md, decision 37): every epoch, and no probe.
    assert [float(r["aug_strength"]) for r in rows] == [0.5, 0.5]
    assert "probe_accuracy" not in rows[0] and report["options"]["strength"] == "constant:0.5"
    assert "test accuracy (best model)" in result.stdout
    assert "epoch   2/2" in result.stderr and "strength" in result.stderr


def test_refuses_existing_run_dir_then_overwrites(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    first = invoke("--source", tiny_npz, "--epochs", 2, "--model", "mlp", "--run-dir", run_dir, "--quiet")
    assert first.exit_code == 0, first.output
    saved = (run_dir / "config.json").read_text()
    result = invoke("--source", tiny_npz, "--epochs", 1, "--model", "mlp", "--run-dir", run_dir)
    assert result.exit_code == 2
    assert "already exists" in result.output and "--resume" in result.output and "--overwrite" in result.output
    assert (run_dir / "config.json").read_text() == saved  # nothing touched
    result = invoke("--source", tiny_npz, "--epochs", 1, "--model", "mlp", "--run-dir", run_dir, "--overwrite", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "config.json").read_text())["options"]["epochs"] == 1
    assert len(read_log(run_dir)) == 1  # the old run's rows are gone with it


def test_overwrite_refuses_a_foreign_directory(tiny_npz, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = invoke("--source", tiny_npz, "--epochs", 1, "--run-dir", tmp_path, "--overwrite")
    assert result.exit_code == 2 and "does not look like a run directory" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_continues_epochs_and_strength(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    first = invoke("--source", tiny_npz, "--epochs", 3, "--model", "mlp", "--batch-size", 32, "--run-dir", run_dir,
                   "--strength", "shaped", "--quiet")
    assert first.exit_code == 0, first.output
    saved = json.loads((run_dir / "backup" / "shaped_strength.json").read_text())
    assert saved["epoch"] == 3
    again = invoke("--run-dir", run_dir, "--resume", "--epochs", 5)
    assert again.exit_code == 0, again.output
    rows = read_log(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    # The resumed epochs run at the ceiling the controller chose before the stop, in the weak final
    # stretch of the 3-epoch curriculum the run was laid out for (half the ceiling).
    assert float(rows[3]["aug_strength"]) == pytest.approx(0.5 * saved["state"]["strength"])
    assert float(rows[4]["aug_strength"]) == pytest.approx(0.5 * float(rows[3]["aug_ceiling"]))
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == 5 and report["epochs_this_session"] == 2
    assert report["options"]["model"] == "mlp"  # the saved options, not the defaults
    config = json.loads((run_dir / "config.json").read_text())
    assert config["options"]["epochs"] == 3 and config["resumes"][0]["changed"] == {"epochs": 5}


def test_resume_refuses_changed_options_and_missing_run(tiny_npz, tmp_path):
    result = invoke("--run-dir", tmp_path / "nothing", "--resume")
    assert result.exit_code == 2 and "no config.json" in result.output
    run_dir = tmp_path / "run"
    assert invoke("--source", tiny_npz, "--epochs", 1, "--model", "mlp", "--run-dir", run_dir, "--quiet").exit_code == 0
    result = invoke("--run-dir", run_dir, "--resume", "--model", "cnn")
    assert result.exit_code == 2 and "cannot change --model" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--policy", "mnsit"], "Unknown policy 'mnsit'.*Did you mean 'mnist'"),
        (["--strength", "linear:0.1"], "Invalid --strength 'linear:0.1'"),
        (["--strength", "constant:2"], "outside"),
        (["--batch-size", "-3"], "batch-size"),
        (["--model", "resnet"], "resnet"),
    ],
)
def test_bad_options_exit_2(args, message, tmp_path):
    result = invoke(*args, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2
    import re

    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_bad_source_exits_1_with_one_line(tmp_path):
    result = invoke("--source", f"npz:{tmp_path / 'missing.npz'}", "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "npz file not found" in error_lines[0]
    assert "Traceback" not in result.output


class NanAfter(__import__("keras").layers.Layer):
    """Passes values through, then turns them into NaN after `steps` training calls."""

    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count")

    def call(self, x, training=None):
        import tensorflow as tf

        if training:
            self.count.assign_add(1.0)
        poison = tf.where(self.count > self.steps, float("nan"), 1.0)
        return x * poison

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


def test_nan_loss_stops_with_a_clear_message(tiny_npz, tmp_path, monkeypatch):
    from augpipe.scripts import models

    original = models.build_backbone
    # 216 training images / 32 = 7 steps per epoch: NaN appears in epoch 3.
    monkeypatch.setattr(models, "build_backbone", lambda kind, n: original(kind, n) + [NanAfter(16)])
    run_dir = tmp_path / "run"
    result = invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 5, "--batch-size", 32, "--run-dir", run_dir, "--quiet")
    assert result.exit_code == 1
    assert "loss became NaN" in result.stderr and "Traceback" not in result.output
    # The last good state is kept: the backup is from the end of epoch 2.
    assert json.loads((run_dir / "backup" / "commit.json").read_text())["epoch"] == 2
    assert (run_dir / "best.keras").is_file()
    assert len(read_log(run_dir)) == 2


@pytest.mark.slow
def test_ctrl_c_stops_at_a_safe_point_and_prints_the_resume_command(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "augpipe.scripts.run_mnist", "--source", tiny_npz, "--model", "mlp", "--epochs", "200",
         "--batch-size", "16", "--run-dir", str(run_dir), "--no-tensorboard"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if line.startswith("epoch") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert f"run-mnist --run-dir {run_dir} --resume" in stderr
    epochs_done = len(read_log(run_dir))
    assert 1 <= epochs_done < 200
    # The backup matches the last whole epoch.
    assert json.loads((run_dir / "backup" / "commit.json").read_text())["epoch"] == epochs_done
    assert (run_dir / "backup" / f"weights-{epochs_done}.weights.h5").is_file()


@pytest.mark.parametrize("extra", [["--placement", "host"], ["--mixup"], ["--placement", "host", "--mixup", "--strength", "linear:0.2:0.6:2"]])
def test_placement_and_mixup_variants_run(tiny_npz, tmp_path, extra):
    run_dir = tmp_path / "run"
    result = invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 2, "--batch-size", 32, "--run-dir", run_dir, "--quiet", *extra)
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == 2 and 0.0 <= report["test_accuracy"] <= 1.0
    rows = read_log(run_dir)
    if "linear:0.2:0.6:2" in extra:
        assert [float(r["aug_strength"]) for r in rows] == pytest.approx([0.2, 0.4])


@pytest.mark.slow
def test_first_screen_has_no_tensorflow_startup_lines(tiny_npz, tmp_path):
    # The installed command, in an environment a user has: no TF_CPP_MIN_LOG_LEVEL, no CUDA_VISIBLE_DEVICES.
    command = os.path.join(os.path.dirname(sys.executable), "run-mnist")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    result = subprocess.run(
        [command, "--source", tiny_npz, "--model", "mlp", "--epochs", "1", "--batch-size", "64",
         "--run-dir", str(tmp_path / "run"), "--no-tensorboard"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first_lines = result.stderr.splitlines()[:5]
    assert first_lines, "run-mnist printed nothing to stderr"
    noise = [line for line in result.stderr.splitlines()
             if re.match(r"^[IWE]\d{4} |WARNING: All log messages|To enable the following|.*cuInit", line)]
    assert noise == [], noise
    assert "test accuracy" in result.stdout.lower() or "test_accuracy" in result.stdout


def test_summary_strength_is_the_one_the_last_epoch_used(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    result = invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 4, "--batch-size", 32, "--run-dir", run_dir,
                    "--strength", "linear:0.1:0.9:4", "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    last = float(read_log(run_dir)[-1]["aug_strength"])
    report = json.loads((run_dir / "report.json").read_text())
    assert report["final_strength"] == pytest.approx(last)
    assert re.search(rf"strength \(last epoch\)\s+{last:.2f}", result.stdout), result.stdout


def test_extending_a_run_keeps_the_schedule_shape_and_says_so(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    assert invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 4, "--batch-size", 32,
                  "--run-dir", run_dir, "--quiet", "--no-tensorboard").exit_code == 0
    result = invoke("--run-dir", run_dir, "--resume", "--epochs", 6)
    assert result.exit_code == 0, result.output
    assert "keeps its 4-epoch shape" in result.stderr
    rates = [float(r["learning_rate"]) for r in read_log(run_dir)]
    # The cosine laid out for 4 epochs ends at 2e-3 x 0.02 and stays there; it is not stretched to 6
    # (which would have raised the rate of the extra epochs again).
    assert rates[4] <= rates[3]
    assert rates[4] == pytest.approx(2e-3 * 0.02, rel=1e-5) and rates[5] == pytest.approx(2e-3 * 0.02, rel=1e-5)


def test_channels_first_float_npz_trains_with_the_flags_and_is_refused_without(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((200, 3, 12, 10)).astype(np.float32)
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=images, y_train=np.arange(200) % 5)  # train-only
    result = invoke("--source", f"npz:{path}", "--model", "mlp", "--epochs", 1, "--run-dir", tmp_path / "a", "--quiet")
    assert result.exit_code == 1 and "looks channels-first" in result.stderr and "--layout channels_first" in result.stderr
    assert not (tmp_path / "a").exists()  # nothing left that blocks a rerun
    result = invoke("--source", f"npz:{path}", "--value-range", 0, 1, "--layout", "channels_first", "--model", "mlp",
                    "--epochs", 1, "--batch-size", 32, "--run-dir", tmp_path / "a", "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "report.json").read_text())["splits"]["test"]["size"] > 0


def test_lr_patience_turns_on_the_plateau_rule_and_is_refused_below_one(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    result = invoke("--source", tiny_npz, "--epochs", 3, "--model", "mlp", "--batch-size", 32, "--run-dir", run_dir,
                    "--quiet", "--no-tensorboard", "--lr-patience", 1, "--strength", "shaped")
    assert result.exit_code == 0, result.output
    rows = read_log(run_dir)
    assert all(float(r["lr_plateau_wait"]) in (0.0, 1.0) for r in rows)  # the plateau rule counted every epoch
    assert json.loads((run_dir / "report.json").read_text())["options"]["lr_patience"] == 1
    plain = invoke("--source", tiny_npz, "--epochs", 1, "--model", "mlp", "--batch-size", 32, "--run-dir",
                   tmp_path / "plain", "--quiet", "--no-tensorboard")
    assert plain.exit_code == 0 and "lr_plateau_wait" not in read_log(tmp_path / "plain")[0]
    refused = invoke("--lr-patience", 0, "--run-dir", tmp_path / "never")
    assert refused.exit_code == 2 and "--lr-patience" in refused.output and not (tmp_path / "never").exists()
