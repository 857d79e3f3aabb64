"""profile-input: the dict, the JSON, the CLI. No timing assertions."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from augpipe.scripts import profiling
from augpipe.scripts.profile_input import main

TINY = dict(synthetic=256, batch_sizes=[64], repeats=1, warmup=0, images_per_measurement=128)


def test_profile_dict_has_documented_fields_and_positive_ratios():
    report = profiling.profile_input(compare=["keras", "keras-randaugment", "albumentations"], **TINY)
    assert set(report) >= {"context", "settings", "results", "model", "peak_rss_mb"}
    assert report["context"]["cpu_count"] >= 1 and "tensorflow" in report["context"]["versions"]
    assert "gpu_used" in report["context"] and "intra_op" in report["context"]["threading"]
    result = report["results"]["64"]
    for way in ("inside_tf", "from_python"):
        stages = result[way]
        for name in ("raw", "bare_warp", "ours_host", "ours_geometric_host", "ours_device", "keras_chain",
                     "keras_randaugment", "albumentations"):
            summary = stages[name]
            assert summary["median"] > 0 and summary["min"] <= summary["median"] <= summary["max"]
            assert summary["ratio_to_raw"] > 0
    assert all(value > 0 for value in result["ratios"].values())
    assert set(result["ratios"]) == {
        "ours_full_vs_bare_warp", "ours_geometric_vs_keras_chain", "ours_geometric_vs_albumentations",
        "ours_full_vs_keras_randaugment",
    }
    assert report["model"] is None


def test_colour_images_of_any_size_against_keras_randaugment_and_augmix():
    report = profiling.profile_input(compare=["keras-randaugment", "keras-augmix"], policy="trivialaugment",
                                     image_size=(20, 24), channels=3, **{**TINY, "synthetic": 64})
    assert report["settings"]["image_shape"] == [20, 24, 3] and report["settings"]["num_images"] == 64
    ratios = report["results"]["64"]["ratios"]
    assert ratios["ours_full_vs_keras_randaugment"] > 0 and ratios["ours_full_vs_keras_augmix"] > 0
    with pytest.raises(ValueError, match=r"Received: channels=2. Expected 1 \(gray\) or 3 \(colour\)"):
        profiling.load_images("mnist-embedded", None, channels=2)
    # Without --synthetic, a size asks for the default number of synthetic images.
    assert profiling.load_images("mnist-embedded", None, image_size=(8, 8)).shape == (2048, 8, 8, 1)


def test_model_stage_gives_a_verdict():
    report = profiling.profile_input(compare=[], model="mlp", **TINY)
    rows = report["model"]
    assert {row["placement"] for row in rows} == {"device", "host"}
    for row in rows:
        assert 0.0 <= row["input_bound_share"] <= 1.0
        assert row["verdict"] in ("not input-bound", "moderately input-bound", "highly input-bound")
        assert row["step_time_pipeline_ms"] > 0 and row["step_time_synthetic_ms"] > 0
    device = next(row for row in rows if row["placement"] == "device")
    # The step without augmentation and with Keras' chain instead of ours, on the same batch.
    assert device["step_time_no_augmentation_ms"] > 0 and device["step_time_keras_chain_ms"] > 0
    assert 0.0 <= device["augmentation_share_of_step"] < 1.0
    assert device["step_with_vs_without_augmentation"] > 0


def test_model_stage_under_xla():
    report = profiling.profile_input(compare=[], model="mlp", jit_compile=True, **TINY)
    device = next(row for row in report["model"] if row["placement"] == "device")
    assert device["jit_compile"] is True and report["settings"]["jit_compile"] is True
    assert device["step_time_synthetic_ms"] > 0 and device["step_time_no_augmentation_ms"] > 0
    assert "XLA on" in profiling.format_table(report)


def test_verdict_thresholds():
    assert profiling.verdict(0.01) == "not input-bound"
    assert profiling.verdict(0.10) == "moderately input-bound"
    assert profiling.verdict(0.30) == "highly input-bound"


def test_cli_writes_valid_json(tmp_path):
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(
        main,
        ["--synthetic", "256", "--batch-sizes", "32,64", "--repeats", "1", "--warmup", "0", "--images", "128",
         "--compare", "keras", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"32", "64"}
    assert "keras_chain" in result.stdout and "ours_host" in result.stdout
    assert "repeat 1/1" in result.stderr  # progress goes to stderr


def test_cli_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in ("--batch-sizes", "--compare", "--synthetic", "--model", "--json", "--repeats", "--warmup"):
        assert option in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--compare", "keras,dali"], "unknown peer\\(s\\) dali"),
        (["--batch-sizes", "0"], "batch sizes must be positive"),
        (["--batch-sizes", "32,abc"], "comma-separated list of positive integers"),
        (["--policy", "mnsit"], "Unknown policy 'mnsit'"),
    ],
)
def test_cli_bad_arguments(args, message):
    import re

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output


def test_library_bad_arguments():
    with pytest.raises(ValueError, match=r"Unknown peer\(s\) \['dali'\]"):
        profiling.profile_input(compare=["dali"], **TINY)
    with pytest.raises(ValueError, match=r"Received: batch_size=0. Expected an int >= 1"):
        profiling.profile_input(**{**TINY, "batch_sizes": [0]})


USER_MODEL = """
import keras


def build():
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""


def test_a_policy_spec_and_a_users_own_model(tmp_path):
    (tmp_path / "mine.py").write_text(USER_MODEL)
    spec = '{"name": "ops", "config": {"ops": {"rotate": [1.0, 30.0], "noise": [0.5, 0.1]}}}'
    result = CliRunner().invoke(main, ["--policy", spec, "--model", f"{tmp_path / 'mine.py'}:build",
                                       "--synthetic", "256", "--batch-sizes", "64", "--repeats", "1", "--warmup", "0",
                                       "--images", "128", "--compare", "none", "--json", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["settings"]["policy"]["name"] == "ops" and len(data["model"]) == 2
    assert "estimate: about" in result.stderr
    # The same model saved as a .keras file, and the policy from a JSON file.
    import importlib.util

    loaded = importlib.util.spec_from_file_location("mine", tmp_path / "mine.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    module.build().save(tmp_path / "mine.keras")
    (tmp_path / "policy.json").write_text(spec)
    report = profiling.profile_input(policy=str(tmp_path / "policy.json"), model=str(tmp_path / "mine.keras"),
                                     compare=[], **TINY)
    assert report["settings"]["policy"]["config"]["ops"]["rotate"] == [1.0, 30.0]


@pytest.mark.parametrize("args,message", [
    (["--policy", "{not json"], "not valid JSON"),
    (["--policy", '{"config": {}}'], "needs a 'name'"),
    (["--model", "resnet"], "Unknown model 'resnet'"),
])
def test_policy_and_model_specs_are_checked(args, message):
    result = CliRunner().invoke(main, [*args, "--synthetic", "64", "--images", "64", "--compare", "none"])
    assert result.exit_code != 0 and message in result.output, result.output


def test_quick_runs_the_short_settings(monkeypatch):
    seen = {}

    def fake(**options):
        seen.update(options)
        raise ValueError("stop here")

    monkeypatch.setattr(profiling, "profile_input", fake)
    result = CliRunner().invoke(main, ["--quick", "--synthetic", "64"])
    assert result.exit_code == 1 and "stop here" in result.output
    for key, value in profiling.QUICK.items():
        assert seen[key] == value, key


def test_strength_takes_run_mnists_grammar_with_one_fixed_value(monkeypatch):
    seen = {}

    def fake(**options):
        seen.update(options)
        raise ValueError("stop here")

    monkeypatch.setattr(profiling, "profile_input", fake)
    for spec, value in (("constant:0.5", 0.5), ("0.25", 0.25), ("off", 0.0)):
        result = CliRunner().invoke(main, ["--strength", spec, "--synthetic", "64"])
        assert result.exit_code == 1 and seen["strength"] == value, (spec, result.output)
    result = CliRunner().invoke(main, ["--strength", "adaptive", "--synthetic", "64"])
    assert result.exit_code == 2 and "'adaptive' changes over epochs" in result.output


@pytest.mark.parametrize("write,spec,message", [
    (None, "no_such_module_here:build", "Cannot import 'no_such_module_here'"),
    ("def build():\n    raise RuntimeError('boom')\n", "{py}:build", "build() raised RuntimeError: boom"),
    ("def build(:\n", "{py}:build", "has a syntax error (line 1)"),
    ("not a model\n", "{keras}", "is not a Keras model file"),
    (USER_MODEL.replace("Dense(10)", "Dense(7)"), "{py}:build",
     "outputs shape (None, 7), but the data has 10 classes"),
])
def test_a_bad_model_is_one_line_before_anything_is_timed(tmp_path, write, spec, message):
    # Found on main: 40-70-line tracebacks, Keras' misleading "File not found" for a text file named .keras,
    # and the model checked only after the whole input profile had run.
    py, keras_file = tmp_path / "mine.py", tmp_path / "mine.keras"
    if write is not None:
        (keras_file if "{keras}" in spec else py).write_text(write)
    result = CliRunner().invoke(main, ["--model", spec.format(py=py, keras=keras_file), "--batch-sizes", "64",
                                       "--repeats", "1", "--warmup", "0", "--images", "128", "--compare", "none"])
    assert result.exit_code == 1, result.output
    errors = result.stderr.strip().splitlines()
    assert errors[-1].startswith("Error:") and message in errors[-1], result.stderr
    assert "Traceback" not in result.output and "warming up" not in result.stderr


def test_a_model_of_fewer_classes_trains_on_the_sources_labels(tmp_path):
    # Found on main: any model of fewer than 10 classes crashed after the profile ("label value of 9 is outside
    # the valid range of [0, 6)"): the timing labels were arange(n) % 10 whatever the data.
    images = np.random.default_rng(0).integers(0, 256, (240, 28, 28), np.uint8)
    np.savez(tmp_path / "six.npz", x_train=images, y_train=np.arange(240) % 6)
    (tmp_path / "mine.py").write_text(USER_MODEL.replace("Dense(10)", "Dense(6)"))
    report = profiling.profile_input(source=f"npz:{tmp_path / 'six.npz'}", model=f"{tmp_path / 'mine.py'}:build",
                                     compare=[], batch_sizes=[32], repeats=1, warmup=0, images_per_measurement=64)
    assert len(report["model"]) == 2 and all(row["step_time_pipeline_ms"] > 0 for row in report["model"])
