"""run-mnist --model takes your own model: a builder function or a saved .keras file, Augment in front."""

import json

import keras
import pytest
from click.testing import CliRunner

from augpipe.scripts.run_mnist import main

BUILDER = """
import keras


def build(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes, activation="softmax")])


def logits(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])


def wrong(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(3)])
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def builder(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(BUILDER)
    return path


@pytest.mark.parametrize("function", ["build", "logits"])
def test_a_builder_function_trains_behind_augment(tiny_npz, tmp_path, builder, function):
    run_dir = tmp_path / "run"
    result = invoke("--source", tiny_npz, "--model", f"{builder}:{function}", "--epochs", 2, "--batch-size", 32,
                    "--run-dir", run_dir, "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["options"]["model"] == f"{builder}:{function}" and report["epochs_run"] == 2
    # Softmax outputs train with a probability loss, logits with a logit loss: both learn the tiny digits.
    assert report["test_accuracy"] > 0.5
    model = keras.models.load_model(run_dir / "best.keras")
    assert type(model.layers[1]).__name__ == "Augment"
    # A resume treats the model spec like every other option.
    changed = invoke("--run-dir", run_dir, "--resume", "--model", "cnn")
    assert changed.exit_code == 2 and "cannot change --model" in changed.output


def test_a_saved_keras_file_is_a_model(tiny_npz, tmp_path, builder):
    import importlib.util

    spec = importlib.util.spec_from_file_location("mine", builder)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build((28, 28, 1), 10).save(tmp_path / "saved.keras")
    result = invoke("--source", tiny_npz, "--model", tmp_path / "saved.keras", "--epochs", 1, "--batch-size", 32,
                    "--run-dir", tmp_path / "run", "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("spec,message", [
    ("{builder}:wrong", "outputs shape (None, 3), but the data has 10 classes"),
    ("{builder}:missing", "has no function 'missing'"),
    ("resnet", "Unknown --model 'resnet'"),
])
def test_a_model_that_does_not_fit_is_one_line_and_leaves_nothing(tiny_npz, tmp_path, builder, spec, message):
    run_dir = tmp_path / "run"
    result = invoke("--source", tiny_npz, "--model", spec.format(builder=builder), "--epochs", 1,
                    "--run-dir", run_dir, "--quiet")
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert "Traceback" not in result.output and not run_dir.exists()
