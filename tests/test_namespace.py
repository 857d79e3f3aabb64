"""One import name: augpipe installs `augpipe` and nothing else, and never imports bare names."""

import importlib
import os
import pathlib
import pkgutil
import re
import shutil
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import augpipe
from augpipe import augment, callbacks, pipelines

ROOT = pathlib.Path(__file__).resolve().parents[1]
BARE = ("pipelines", "augment", "callbacks", "scripts")


def _bare_modules():
    return sorted(name for name in sys.modules if name.split(".")[0] in BARE)


def _subprocess_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", NO_ALBUMENTATIONS_UPDATE="1")
    env.pop("PYTHONPATH", None)
    return env


def test_package_exposes_version_and_the_three_libraries():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", augpipe.__version__)
    assert augpipe.pipelines is pipelines and augpipe.augment is augment and augpipe.callbacks is callbacks
    assert set(augpipe.__all__) == {"__version__", "augment", "callbacks", "pipelines"}


@pytest.mark.slow
def test_wheel_holds_augpipe_and_nothing_else_at_top_level(tmp_path):
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        check=True, capture_output=True, env=_subprocess_env(),
    )
    (wheel,) = (tmp_path / "wheels").glob("augpipe-*.whl")
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top if not name.endswith(".dist-info")} == {"augpipe"}
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("", "pipelines/", "augment/", "callbacks/", "scripts/"):
        assert f"augpipe/{package}__init__.py" in names
    assert "augpipe/data/mnist_5k.npz" in names  # the embedded digits travel inside the package
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "run-mnist = augpipe.scripts.run_mnist:main" in text
    assert "profile-input = augpipe.scripts.profile_input:main" in text
    assert "score-run = augpipe.scripts.score_run:main" in text


def test_no_bare_module_is_imported_after_everything_and_a_fit(tiny_source):
    for package in (pipelines, augment, callbacks, augpipe.scripts):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
    splits = pipelines.make_splits(tiny_source, seed=0)
    train, epoch = pipelines.build_training_pipeline(splits.train, batch_size=32)
    model = keras.Sequential([keras.Input((12, 12, 1), dtype="uint8"), augment.Augment("mnist", strength=0.5, seed=0),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train, epochs=1, verbose=0, callbacks=[pipelines.EpochSync(epoch)])
    assert _bare_modules() == []


@pytest.mark.slow
def test_readme_example_runs_beside_a_users_own_modules(tmp_path):
    from test_readme import readme_example

    # The most common file names in a training folder; importing any of them from augpipe would fail loudly.
    for name in ("callbacks.py", "augment.py", "pipelines.py", "scripts/__init__.py"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"raise ImportError('augpipe imported the user\\'s own {name}')\n")
    (tmp_path / "train.py").write_text(readme_example())
    result = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True, text=True,
                            env=_subprocess_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 4


def test_saved_model_loads_in_a_fresh_process_after_import_augpipe_alone(tmp_path):
    model = keras.Sequential([keras.Input((12, 12, 1), dtype="uint8"), augment.Augment("mnist", strength=0.3, seed=0),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(callbacks.MultiplierSchedule(1e-3)), "mse")
    path = tmp_path / "model.keras"
    model.save(path)
    code = (
        "import sys, augpipe, keras\n"
        f"model = keras.models.load_model({str(path)!r})\n"
        "layer = model.layers[0]\n"
        "assert type(layer) is augpipe.augment.Augment, type(layer)\n"
        "assert type(model.optimizer._learning_rate) is augpipe.callbacks.MultiplierSchedule\n"
        "print(round(float(layer.strength.numpy()), 3))\n"
        "bare = [m for m in sys.modules if m.split('.')[0] in ('pipelines', 'augment', 'callbacks', 'scripts')]\n"
        "assert not bare, bare\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env=_subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "0.3"
    np.testing.assert_allclose(model.layers[0].strength.numpy(), 0.3)
