"""The reason is the only line: no library or decoder noise around augpipe's own messages."""

import os
import re
import subprocess
import sys

# TensorFlow's C++ startup notices (see augpipe._startup).
NOISE = re.compile(r"^[IWE]\d{4} |WARNING: All log messages|To enable the following|.*cuInit")


def test_the_readme_pattern_gets_no_keras_shuffle_notice(tmp_path):
    # Found on main: Keras' "`shuffle=True` was passed, but will be ignored" on every fit of a pipeline.
    code = (
        "import keras\n"
        "from augpipe import pipelines\n"
        "splits = pipelines.make_splits(pipelines.load_source('mnist-embedded'), seed=0)\n"
        "train, epoch = pipelines.build_training_pipeline(splits.train, batch_size=500, seed=0)\n"
        "model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])\n"
        "model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
        "model.fit(train, epochs=1, verbose=0)\n"
        "print('trained')\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "trained", result.stderr[-2000:]
    assert "shuffle" not in result.stderr, result.stderr


def command(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def run(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, env=env)


def test_a_corrupt_jpeg_is_one_line_without_libjpegs_own(tmp_path):
    # Found on main: libjpeg's "Improper call to JPEG library in state 201" lines before augpipe's error.
    from augpipe.pipelines.synthetic import write_shapes_folder

    folder = write_shapes_folder(tmp_path / "shapes", per_class=4, seed=0)
    bad = sorted(folder.glob("*/*.jpg"))[0]
    bad.write_bytes(bad.read_bytes()[:200])
    result = run(command("run-mnist"), "--source", f"folder:{folder}", "--image-size", 16, "--epochs", 1,
                 "--run-dir", tmp_path / "run")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: 1 of") and bad.name in lines[0], result.stderr


def test_a_tfds_set_that_is_not_prepared_is_one_line_without_absls_warning(tmp_path):
    # Found on main: absl's "Variant folder ... has no dataset_info.json" before augpipe's error.
    result = run(command("run-mnist"), "--source", "tfds:mnist", "--data-dir", tmp_path / "tfds", "--epochs", 1,
                 "--run-dir", tmp_path / "run")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: tensorflow-datasets dataset 'mnist' is not prepared")


def test_profile_input_has_no_retracing_warning():
    # Found on main: TensorFlow's "triggered tf.function retracing" warning on every run.
    result = run(command("profile-input"), "--quick", "--synthetic", 256, "--images", 128, "--batch-sizes", 64)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "retracing" not in result.stderr, result.stderr
    assert not [line for line in result.stderr.splitlines() if NOISE.match(line)], result.stderr


def test_preview_augment_has_no_tensorflow_startup_lines(tmp_path):
    result = run(command("preview-augment"), "--samples", 2, "--strength", "0,1", "--out", tmp_path / "grid.png")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not [line for line in result.stderr.splitlines() if NOISE.match(line)], result.stderr


def test_help_never_imports_tensorflow():
    # Found on main: --help took 8-24 s because TensorFlow was imported before click parsed anything.
    # (Timed in the README: 0.2 s; a test checks the cause, not the clock.)
    code = (
        "import sys\n"
        "sys.argv = ['run-mnist']\n"
        "from augpipe.scripts import preview_augment, profile_input, run_mnist, score_run\n"
        "for command in (run_mnist.main, profile_input.main, preview_augment.main, score_run.main):\n"
        "    command(['--help'], standalone_mode=False)\n"
        "heavy = [name for name in ('tensorflow', 'keras', 'tensorflow_datasets', 'albumentations', 'matplotlib')\n"
        "         if name in sys.modules]\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "heavy: []"
    assert "--source" in result.stdout and "--strength" in result.stdout
