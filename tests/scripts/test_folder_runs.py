"""run-mnist and profile-input on folder sources: options, errors, resume, and the accuracy target."""

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augpipe.scripts import profiling
from augpipe.scripts.profile_input import main as profile_main
from augpipe.scripts.run_mnist import main as run_main


def run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args], catch_exceptions=False)


def rows(run_dir):
    with open(run_dir / "log.csv") as handle:
        return list(csv.DictReader(handle))


def test_run_mnist_trains_on_a_folder_and_resumes(shapes_folder, tmp_path):
    run_dir = tmp_path / "run"
    common = ("--source", shapes_folder, "--image-size", 20, 24, "--batch-size", 16, "--eval-every", 1,
              "--run-dir", run_dir, "--quiet", "--no-tensorboard")
    result = run(*common, "--epochs", 1)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["options"]["image_size"] == [20, 24] and "4 class folder(s)" in config["provenance"]
    assert "decoded to 20x24x3" in config["provenance"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["splits"]["test"]["size"] == 12 and 0 <= report["test_accuracy"] <= 1
    import keras

    model = keras.models.load_model(run_dir / "best.keras")
    assert model.input_shape == (None, 20, 24, 3) and model.output_shape == (None, 4)
    resumed = run(*common, "--epochs", 2, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert [row["epoch"] for row in rows(run_dir)] == ["0", "1"]
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["resumes"][0]["changed"] == {"epochs": 2}


def test_image_size_takes_one_or_two_numbers(shapes_folder, tmp_path):
    result = run("--source", shapes_folder, "--image-size", 16, "--channels", 1, "--epochs", 1, "--batch-size", 32,
                 "--run-dir", tmp_path / "r", "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    options = json.loads((tmp_path / "r" / "config.json").read_text())["options"]
    assert options["image_size"] == [16, 16] and options["channels"] == 1


@pytest.mark.parametrize("args, message", [
    (("--source", "mnist-embedded", "--image-size", 32), "<image_size>"),
    (("--source", "mnist-embedded", "--skip-bad-images"), "--skip-bad-images apply only to a --source folder:DIR"),
    (("--source", "folder:anywhere"), "needs --image-size"),
    (("--source", "folder:anywhere", "--image-size", 0), "Invalid value for '--image-size'"),
    (("--source", "folder:anywhere", "--image-size", 8, "--resize", "squash"), "Invalid value for '--resize'"),
])
def test_folder_options_are_checked(args, message, tmp_path):
    result = run(*args, "--run-dir", tmp_path / "r")
    assert result.exit_code == 2
    assert message.replace("<image_size>", "--image-size") in result.output
    assert not (tmp_path / "r").exists()


def test_a_single_class_folder_is_refused_with_a_reason(tmp_path):
    for n in range(6):
        folder = tmp_path / "data" / "cats"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 10), n * 20, np.uint8)).save(folder / f"{n}.png")
    result = run("--source", f"folder:{tmp_path / 'data'}", "--image-size", 8, "--run-dir", tmp_path / "r")
    assert result.exit_code == 1
    assert "1 class ('cats')" in result.output and "needs at least 2" in result.output


def test_a_corrupt_file_stops_the_run_before_training_unless_skipped(shapes_folder, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(shapes_folder[len("folder:"):], folder)
    (folder / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    result = run("--source", f"folder:{folder}", "--image-size", 12, "--epochs", 1, "--run-dir", tmp_path / "r",
                 "--quiet", "--no-tensorboard")
    assert result.exit_code == 1
    assert "broken.jpg" in result.output and "--skip-bad-images" in result.output
    assert not (tmp_path / "r" / "log.csv").exists()
    result = run("--source", f"folder:{folder}", "--image-size", 12, "--epochs", 1, "--run-dir", tmp_path / "r2",
                 "--quiet", "--no-tensorboard", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert "1 undecodable file(s) skipped" in json.loads((tmp_path / "r2" / "config.json").read_text())["provenance"]


def test_profile_input_times_a_folder_against_keras_folder_pipeline(shapes_folder, tmp_path):
    report = profiling.profile_input(source=shapes_folder, image_size=(16, 16), compare=["keras"], batch_sizes=[16],
                                     repeats=1, warmup=0, images_per_measurement=32)
    assert report["settings"]["image_shape"] == [16, 16, 3] and report["settings"]["num_images"] == 60
    stages = report["results"]["16"]["inside_tf"]
    assert set(stages) == {"raw", "ours_cached_geometric", "ours_decode", "ours_decode_geometric",
                           "ours_decode_policy", "keras_decode", "keras_decode_chain"}
    assert all(stage["median"] > 0 for stage in stages.values())
    ratios = report["results"]["16"]["ratios"]
    assert set(ratios) == {"ours_decode_geometric_vs_keras_decode_chain", "ours_decode_vs_keras_decode",
                           "ours_cached_geometric_vs_keras_decode_chain"}
    assert all(value > 0 for value in ratios.values())
    result = CliRunner().invoke(profile_main, ["--source", shapes_folder, "--model", "cnn", "--image-size", "16"])
    assert result.exit_code == 1 and "--model and --synthetic work with in-memory sources" in result.output


@pytest.mark.slow
def test_run_mnist_reaches_95_percent_on_a_shapes_folder_in_10_epochs(tmp_path):
    from augpipe.pipelines.synthetic import write_shapes_folder

    folder = write_shapes_folder(tmp_path / "shapes", per_class=300, seed=0)
    run_dir = tmp_path / "run"
    result = run("--source", f"folder:{folder}", "--image-size", 32, "--batch-size", 32, "--epochs", 10,
                 "--run-dir", run_dir, "--quiet", "--no-tensorboard")
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == 10 and report["splits"]["test"]["size"] == 240
    assert report["test_accuracy"] > 0.95, report["test_accuracy"]
