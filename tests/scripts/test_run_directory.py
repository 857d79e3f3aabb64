"""Run directories: replaced only after the new run is ready, one run at a time, one-line failures."""

import errno
import fcntl
import json
import os

import pytest
from click.testing import CliRunner

from augpipe.callbacks import base
from augpipe.scripts import experiment
from augpipe.scripts.run_mnist import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def finished_run(tiny_npz, run_dir):
    result = invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 1, "--batch-size", 64,
                    "--run-dir", run_dir, "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


def test_overwrite_keeps_the_old_run_when_the_new_one_fails_to_start(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    before = finished_run(tiny_npz, run_dir)
    result = invoke("--run-dir", run_dir, "--overwrite", "--source", f"npz:{tmp_path / 'missing.npz'}", "--quiet")
    assert result.exit_code == 1 and "npz file not found" in result.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_overwrite_needs_a_config_that_augpipe_wrote(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    result = invoke("--source", tiny_npz, "--run-dir", run_dir, "--overwrite")
    assert result.exit_code == 2 and "no config.json written by augpipe" in result.output
    assert (run_dir / "config.json").read_text() == "{}"


def test_a_run_that_fails_before_its_first_epoch_does_not_block_a_rerun(tiny_npz, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"

    def broken(*args, **kwargs):
        raise ValueError("a model that cannot be built")

    monkeypatch.setattr(experiment, "build_model", broken)
    result = invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 1, "--run-dir", run_dir, "--quiet")
    assert result.exit_code == 1 and "cannot be built" in result.stderr
    assert not run_dir.exists()
    monkeypatch.undo()
    finished_run(tiny_npz, run_dir)


def test_a_second_run_into_a_directory_in_use_exits_2_naming_the_holder(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    lock = open(tmp_path / ".run.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lock.write("4242\n")
    lock.flush()
    try:
        result = invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 1, "--run-dir", run_dir, "--quiet")
        assert result.exit_code == 2 and "in use by process 4242" in result.output
    finally:
        lock.close()
    # Released (as by a process that died): the directory is usable again.
    finished_run(tiny_npz, run_dir)


def test_default_run_directories_carry_the_process_id():
    assert experiment.default_run_dir().name.endswith(f"-{os.getpid()}")


def test_a_run_dir_below_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    result = invoke("--run-dir", tmp_path / "file" / "run")
    assert result.exit_code == 2 and "which is a file" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_full_disk_or_read_only_directory_is_one_line_and_keeps_what_was_written(tiny_npz, tmp_path,
                                                                                  monkeypatch, code):
    # Simulated: the tests may run as root, for whom a chmod-ed directory stays writable.
    run_dir = tmp_path / "run"
    real = base.atomic_write_text

    def write(path, text):
        if str(path).endswith("report.json"):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, text)

    monkeypatch.setattr(base, "atomic_write_text", write)
    result = invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 2, "--batch-size", 64,
                    "--run-dir", run_dir, "--quiet", "--no-tensorboard")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and os.strerror(code) in errors[0] and "report.json" in errors[0]
    assert "Traceback" not in result.output
    assert json.loads((run_dir / "config.json").read_text())["options"]["epochs"] == 2
    assert (run_dir / "best.keras").is_file() and (run_dir / "log.csv").is_file()


def test_resume_refuses_a_run_in_the_earlier_backup_layout(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    before = finished_run(tiny_npz, run_dir)
    (run_dir / "backup" / "commit.json").unlink()
    (run_dir / "backup" / "latest.weights.h5").write_bytes(b"an earlier layout")
    result = invoke("--run-dir", run_dir, "--resume", "--epochs", 2)
    assert result.exit_code == 2 and "written by an earlier augpipe" in result.output
    assert (run_dir / "log.csv").read_bytes() == before["log.csv"]


def _files(run_dir):
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_a_failed_overwrite_after_the_data_loaded_keeps_the_old_run(tiny_npz, tmp_path):
    # Found on main: the old run was deleted right after the new run's data loaded, so a failure in
    # building the inputs (an unreachable tf.data service) lost both runs.
    run_dir = tmp_path / "run"
    finished_run(tiny_npz, run_dir)
    before = _files(run_dir)
    result = invoke("--overwrite", "--source", tiny_npz, "--model", "mlp", "--epochs", 1, "--run-dir", run_dir,
                    "--data-service", "grpc://127.0.0.1:1", "--quiet", "--no-tensorboard")
    assert result.exit_code == 1 and result.stderr.startswith("Error:"), result.output
    assert _files(run_dir) == before
    assert [p.name for p in tmp_path.iterdir() if "replaced" in p.name] == []


def test_a_failed_overwrite_in_the_model_build_keeps_the_old_run(tiny_npz, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    finished_run(tiny_npz, run_dir)
    before = _files(run_dir)

    def broken(*args, **kwargs):
        raise ValueError("a model that cannot be built")

    monkeypatch.setattr(experiment, "build_model", broken)
    result = invoke("--overwrite", "--source", tiny_npz, "--model", "mlp", "--epochs", 1, "--run-dir", run_dir,
                    "--quiet")
    assert result.exit_code == 1 and "cannot be built" in result.stderr
    assert _files(run_dir) == before


def test_a_kill_inside_the_overwrite_window_finds_the_old_run_back_next_time(tiny_npz, tmp_path, monkeypatch):
    # A kill after the old run was moved aside and before the new one committed an epoch: simulated by a
    # process that stops right there (os._exit skips every cleanup) and leaves both behind.
    run_dir = tmp_path / "run"
    finished_run(tiny_npz, run_dir)
    before = _files(run_dir)

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(experiment, "build_model", killed)
    monkeypatch.setattr(experiment, "_forget_if_nothing_trained", lambda *a, **k: None)
    monkeypatch.setattr(experiment, "restore_replaced", lambda *a, **k: None)  # no cleanup: a kill runs none
    with pytest.raises(Killed):
        invoke("--overwrite", "--source", tiny_npz, "--model", "mlp", "--epochs", 1, "--run-dir", run_dir, "--quiet")
    assert [p.name for p in tmp_path.iterdir() if "replaced" in p.name]  # the old run waits aside
    monkeypatch.undo()
    # The next start of anything on that directory puts the old run back first.
    result = invoke("--run-dir", run_dir, "--resume", "--epochs", 2, "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    assert "restored" in result.stderr
    assert json.loads((run_dir / "report.json").read_text())["epochs_run"] == 2
    assert _files(run_dir)["config.json"] != before["config.json"]  # the resume recorded itself in the old run


def test_a_successful_overwrite_removes_the_old_run_once_the_new_one_trained(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    finished_run(tiny_npz, run_dir)
    result = invoke("--overwrite", "--source", tiny_npz, "--model", "mlp", "--epochs", 2, "--batch-size", 64,
                    "--run-dir", run_dir, "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "report.json").read_text())["epochs_run"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")] == [".run.lock"]


def test_ctrl_c_before_the_new_runs_first_epoch_puts_the_old_run_back(tiny_npz, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    finished_run(tiny_npz, run_dir)
    before = _files(run_dir)

    def interrupted(config, run_dir, *args, **kwargs):
        raise experiment.Interrupted(run_dir)

    monkeypatch.setattr(experiment, "fit", interrupted)
    result = invoke("--overwrite", "--source", tiny_npz, "--model", "mlp", "--epochs", 1, "--run-dir", run_dir,
                    "--quiet", "--no-tensorboard")
    assert result.exit_code == 130
    assert _files(run_dir) == before


@pytest.mark.parametrize("size", ["2", "3"])
def test_an_image_size_the_cnn_cannot_take_is_one_line_before_anything_is_written(shapes_folder, tmp_path, size):
    # Found on main: a 40-line Keras MaxPooling2D traceback.
    run_dir = tmp_path / "run"
    result = invoke("--source", shapes_folder, "--image-size", size, "--epochs", 1, "--run-dir", run_dir, "--quiet")
    assert result.exit_code == 2, result.output
    assert f"--image-size {size} {size} is too small for --model cnn" in result.output
    assert "at least 4 4" in result.output and "Traceback" not in result.output
    assert not run_dir.exists()
    result = invoke("--source", shapes_folder, "--image-size", size, "--model", "mlp", "--epochs", 1,
                    "--run-dir", run_dir, "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output  # the MLP takes any size


def test_an_npz_of_images_too_small_for_the_cnn_is_one_line(tmp_path):
    import numpy as np

    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=np.zeros((40, 2, 2), np.uint8), y_train=np.arange(40) % 2)
    result = invoke("--source", f"npz:{path}", "--epochs", 1, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 1 and result.stderr.startswith("Error:"), result.output
    assert "2x2 images are too small for --model cnn (at least 4x4)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_resume_says_where_it_continues_from(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    finished_run(tiny_npz, run_dir)
    result = invoke("--run-dir", run_dir, "--resume", "--epochs", 2, "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    assert f"resuming the run in '{run_dir}' from epoch 2 (1 committed)" in result.stderr


@pytest.mark.parametrize("damage,content", [
    ("commit.json", '{"epo'),
    ("config.json", "[1, 2]"),
    ("config.json", '{"options": [1]}'),
    ("config.json", '{"options": {"epochs": 5}}'),
])
def test_a_damaged_run_refuses_to_resume_in_one_line_and_changes_nothing(tiny_npz, tmp_path, damage, content):
    # Found on main: tracebacks (JSONDecodeError, TypeError, AttributeError), or a misleading "train fingerprint
    # changed", after config.json had already been rewritten with a "resumes" entry.
    run_dir = tmp_path / "run"
    finished_run(tiny_npz, run_dir)
    target = run_dir / ("backup" if damage == "commit.json" else "") / damage
    target.write_text(content)
    before = _files(run_dir)
    result = invoke("--run-dir", run_dir, "--resume", "--epochs", 2, "--quiet")
    assert result.exit_code == 1, result.output
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error:") and damage in errors[0], result.stderr
    assert "fingerprint" not in errors[0] and "Traceback" not in result.output
    assert _files(run_dir) == before


def test_an_overwrite_with_an_image_size_the_model_cannot_take_keeps_the_old_run(shapes_folder, tmp_path):
    # Found on main: the old run was gone after the model build failed on --image-size 3.
    run_dir = tmp_path / "run"
    first = invoke("--source", shapes_folder, "--image-size", 16, "--model", "mlp", "--epochs", 1, "--run-dir", run_dir,
                   "--quiet", "--no-tensorboard")
    assert first.exit_code == 0, first.output
    before = _files(run_dir)
    result = invoke("--overwrite", "--source", shapes_folder, "--image-size", 3, "--epochs", 1, "--run-dir", run_dir,
                    "--quiet")
    assert result.exit_code == 2 and "too small for --model cnn" in result.output
    assert _files(run_dir) == before


def test_an_unexpected_failure_is_one_line_naming_the_file_with_its_traceback(tiny_npz, tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("a bug in augpipe")

    monkeypatch.setattr(experiment, "build_inputs", bug)
    result = invoke("--source", tiny_npz, "--model", "mlp", "--epochs", 1, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: unexpected KeyError: 'a bug in augpipe' (the traceback is in ")
    log = line.split("the traceback is in ")[1].split(";")[0]
    text = open(log).read()
    assert "Traceback" in text and "def bug" not in text and "a bug in augpipe" in text
    os.remove(log)
