"""The README's library example runs as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("<!-- readme-example")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


def test_readme_first_screen_has_the_two_commands():
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]
    assert "pip install . && run-mnist" in commands[0]
    assert 'pip install ".[test]" && python -m pytest' in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install ".[test]"' in ci and "python -m pytest" in ci


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    lines = (tmp_path / "run" / "log.csv").read_text().splitlines()
    header = lines[0].split(",")
    for key in ("test_loss", "test_accuracy", "aug_strength", "learning_rate", "val_accuracy"):
        assert key in header
    assert len(lines) == 4  # header + 3 epochs


RUNNER = """
import os, sys
import tensorflow as tf
tf.config.experimental.enable_op_determinism()
from augpipe import callbacks
die_at = int(sys.argv[1])
if die_at >= 0:
    import keras
    original = callbacks.resumable

    class Die(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == die_at and batch == 5:
                os._exit(17)  # like a SIGKILL: no cleanup at all

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    callbacks.resumable = lambda *a, **k: original(*a, **k) + [Die()]
exec(compile(open("example.py").read(), "README.md", "exec"), {})
"""


@pytest.mark.slow
def test_readme_example_killed_and_run_again_equals_an_uninterrupted_run(tmp_path):
    import csv
    import os
    import subprocess
    import sys

    def run(folder, die_at):
        folder.mkdir(exist_ok=True)
        (folder / "example.py").write_text(readme_example())
        (folder / "runner.py").write_text(RUNNER)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        return subprocess.run([sys.executable, "runner.py", str(die_at)], cwd=folder, capture_output=True,
                              text=True, env=env, timeout=600)

    def rows(folder):
        with open(folder / "run" / "log.csv") as handle:
            return [{k: v for k, v in r.items() if k not in ("images_per_sec", "input_wait_share")}
                    for r in csv.DictReader(handle)]

    full = run(tmp_path / "full", -1)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = run(tmp_path / "killed", 1)
    assert killed.returncode == 17, killed.stderr[-3000:]
    assert len(rows(tmp_path / "killed")) == 1  # epoch 0 committed, epoch 1 lost mid-way
    again = run(tmp_path / "killed", -1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert rows(tmp_path / "killed") == rows(tmp_path / "full")
