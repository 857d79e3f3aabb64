"""Per-class results in the report, and score-run: a finished run's best model on any source."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from augpipe.pipelines.synthetic import write_shapes_folder
from augpipe.scripts.run_mnist import main as run_main
from augpipe.scripts.score_run import main as score_main


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("scored")
    write_shapes_folder(root / "train", per_class=12, seed=0)
    write_shapes_folder(root / "held_out", per_class=6, seed=3)
    run_dir = root / "run"
    result = CliRunner().invoke(run_main, ["--source", f"folder:{root / 'train'}", "--test-source",
                                           f"folder:{root / 'held_out'}", "--image-size", "16", "--model", "mlp",
                                           "--epochs", "2", "--batch-size", "16", "--run-dir", str(run_dir),
                                           "--quiet", "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    return root, run_dir, result.stdout


def test_the_report_has_per_class_figures_a_confusion_matrix_and_the_weakest_class(finished):
    root, run_dir, stdout = finished
    report = json.loads((run_dir / "report.json").read_text())
    names = report["class_names"]
    assert names == sorted(p.name for p in (root / "train").iterdir())
    confusion = np.array(report["test_confusion"])
    assert confusion.shape == (len(names), len(names)) and confusion.sum() == report["splits"]["test"]["size"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(report["test_accuracy"], abs=1e-6)
    for index, name in enumerate(names):
        row = report["test_per_class"][name]
        assert row["count"] == confusion[index].sum() == 6 and row["correct"] == confusion[index, index]
    weakest = report["weakest_class"]
    assert report["test_per_class"][weakest]["accuracy"] == min(r["accuracy"] for r in report["test_per_class"].values())
    assert f"weakest class (test)" in stdout and weakest in stdout
    assert (run_dir / "confusion.png").stat().st_size > 0


def test_score_run_reproduces_the_reported_test_figure_on_the_held_out_folder(finished, tmp_path):
    root, run_dir, _ = finished
    out = tmp_path / "scores.json"
    result = CliRunner().invoke(score_main, [str(run_dir), "--source", f"folder:{root / 'held_out'}",
                                             "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    scores = json.loads(out.read_text())
    assert scores["accuracy"] == pytest.approx(report["test_accuracy"], abs=1e-6)
    assert scores["confusion"] == report["test_confusion"]
    assert "every image of folder:" in result.stdout and "confusion" in result.stdout


def test_score_run_matches_classes_by_name_and_refuses_an_unknown_one(finished, tmp_path):
    root, run_dir, _ = finished
    fewer = tmp_path / "fewer"
    shutil.copytree(root / "held_out", fewer)
    first = sorted(fewer.iterdir())[0].name
    shutil.rmtree(fewer / first)
    result = CliRunner().invoke(score_main, [str(run_dir), "--source", f"folder:{fewer}", "--json",
                                             str(tmp_path / "f.json")])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "f.json").read_text())
    assert scores["per_class"][first]["count"] == 0 and sum(r["count"] for r in scores["per_class"].values()) == 18
    (fewer / "hexagon").mkdir()
    shutil.copy(next((root / "held_out" / first).iterdir()), fewer / "hexagon" / "x.png")
    result = CliRunner().invoke(score_main, [str(run_dir), "--source", f"folder:{fewer}"])
    assert result.exit_code == 1 and "'hexagon' that the training source lacks" in result.stderr
    result = CliRunner().invoke(score_main, [str(tmp_path), "--source", f"folder:{fewer}"])
    assert result.exit_code == 1 and "has no best.keras" in result.stderr
