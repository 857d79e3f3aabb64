"""benchmarks/strength_study.py: the table's arithmetic, and the committed raw records.

The README's Results table is generated from the records, so a wrong pick
of the grid-search constant or a wrong paired difference would put a wrong
claim in the README.
"""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("strength_study", ROOT / "benchmarks" / "strength_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(config, seed, val, test, default=False):
    return {"dataset": "mnist", "config": config, "seed": seed, "val_accuracy": val, "test_accuracy": test,
            "epochs": 2, "wall_s": 10.0, "strength": [0.5, 0.5], "default": default}


def test_table_picks_the_constant_by_val_and_pairs_by_seed(study):
    records = [
        # seed 0: constant:0.5 has the best val; seed 1: a val tie between 0.25 and 1 goes to the weaker, 0.25.
        record("constant:0.25", 0, 0.90, 0.95), record("constant:0.5", 0, 0.95, 0.96), record("constant:1", 0, 0.91, 0.99),
        record("constant:0.25", 1, 0.97, 0.93), record("constant:0.5", 1, 0.92, 0.99), record("constant:1", 1, 0.97, 0.98),
        record("shaped", 0, 0.96, 0.97, default=True), record("shaped", 1, 0.96, 0.96, default=True),
    ]
    text = study.table(records)
    # by val: 0.96 (seed 0), 0.93 (seed 1); differences +1, +3 points: mean +2, SE stdev([1, 3]) / sqrt(2) = 1.
    assert "per seed (constant:0.5, constant:0.25): +2.00 ± 1.00 points (paired mean ± SE, 2 seeds): " \
           "higher by more than one SE" in text
    # best by mean test: constant:1 (0.985); differences -2, -2: mean -2, SE 0.
    assert "the best constant by test accuracy (`constant:1`): -2.00 ± 0.00 points" in text
    assert "lower by more than one SE" in text
    assert "| mnist | `shaped` (default) | 2 | 96.50 ± 0.71 |" in text


def test_a_constant_default_is_also_compared_with_off_and_the_controllers(study):
    records = [record(c, s, 0.9, t, default=c == "constant:0.5")
               for c, tests in (("constant:0.5", (0.97, 0.99)), ("off", (0.95, 0.96)), ("shaped", (0.98, 0.98)))
               for s, t in zip((0, 1), tests)]
    text = study.table(records)
    assert "| mnist | `constant:0.5` (default) | 2 |" in text
    # default - off: +2, +3 -> +2.50 ± 0.50; default - shaped: -1, +1 -> 0.00 ± 1.00
    assert "- mnist: `constant:0.5` - `off`: +2.50 ± 0.50 points (paired mean ± SE, 2 seeds): " \
           "higher by more than one SE" in text
    assert "- mnist: `constant:0.5` - `shaped`: +0.00 ± 1.00 points (paired mean ± SE, 2 seeds): equal" in text
    # The default is not compared with itself.
    assert "`constant:0.5` - `constant:0.5`" not in text


def test_mark_default_moves_the_flag_to_the_new_default(study):
    records = [record("shaped", 0, 0.9, 0.9, default=True), record("constant:0.5", 0, 0.9, 0.9),
               record("constant:0.5", 1, 0.9, 0.9)]
    marked = study.mark_default(records, "constant:0.5")
    assert [r["default"] for r in marked] == [False, True, True]
    assert records[0]["default"] is True, "the records passed in are left as they were"


def test_committed_default_runs_are_run_mnists_default(study):
    # The table's "(default)" row and its comparisons are about what run-mnist runs today.
    from augpipe.scripts.config import ExperimentConfig

    records = study.load(ROOT / "benchmarks" / "results" / "strength_study.json")
    for dataset in study.DATASETS:
        marked = {r["config"] for r in records if r["dataset"] == dataset and r["default"]}
        assert marked == {ExperimentConfig().strength}, f"{dataset}: the default runs are {marked}"


def test_a_difference_that_rounds_to_zero_reads_equal(study):
    # Float noise: 100 * a - 100 * b over seeds can sum to -1e-15; the table printed "-0.00 ... lower".
    records = [record("constant:0.5", s, 0.9, t) for s, t in ((0, 0.1 + 0.2), (1, 0.7))]
    records += [record("shaped", s, 0.9, t, default=True) for s, t in ((0, 0.3), (1, 0.7))]
    text = study.table(records)
    assert "(`constant:0.5`): +0.00 ± 0.00 points (paired mean ± SE, 2 seeds): equal" in text
    assert "-0.00" not in text and "lower" not in text
    assert study.verdict(0.004, 0.5) == "equal"
    assert study.verdict(0.3, 0.5) == "higher, within one SE"
    assert study.verdict(-0.3, 0.2) == "lower by more than one SE"


def test_interval_is_a_t_interval(study):
    mean, std, half = study.interval([98.0, 99.0, 100.0])
    assert (mean, std) == (99.0, 1.0)
    assert half == pytest.approx(4.303 / 3 ** 0.5)


def test_committed_records_are_complete_and_paired(study):
    records = json.loads((ROOT / "benchmarks" / "results" / "strength_study.json").read_text())
    assert records, "benchmarks/results/strength_study.json holds no run"
    keys = {"dataset", "config", "seed", "val_accuracy", "test_accuracy", "epochs", "wall_s", "strength", "default",
            "code_version"}
    for r in records:
        assert keys <= set(r), f"record {r.get('dataset')}/{r.get('config')}/{r.get('seed')} lacks {keys - set(r)}"
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1
        assert len(r["strength"]) == r["epochs"]
    assert {r["dataset"] for r in records} == set(study.DATASETS), "the study covers every data set it defines"
    for dataset in {r["dataset"] for r in records}:
        rows = [r for r in records if r["dataset"] == dataset]
        seeds = {}
        for r in rows:
            seeds.setdefault(r["config"], []).append(r["seed"])
        # Paired: every config of a data set ran the same seeds, each once.
        assert all(sorted(s) == sorted(set(s)) for s in seeds.values()), f"{dataset}: a seed ran twice"
        assert len({tuple(sorted(s)) for s in seeds.values()}) == 1, f"{dataset}: configs ran different seeds"
        assert sorted(next(iter(seeds.values()))) == list(study.SEEDS), f"{dataset}: not every seed ran"
        # Every config the script defines for the data set ran (the linear ramp is named by the run's epochs).
        epochs = max(r["epochs"] for r in rows)
        assert set(seeds) == set(study.configs(dataset, epochs)), f"{dataset}: configs differ from the script's"
        # One code version per data set, and one default config.
        assert len({r["code_version"] for r in rows}) == 1, f"{dataset}: records from several commits"
        assert len({r["config"] for r in rows if r["default"]}) == 1


def test_run_resumes_from_its_own_results_file(study, tmp_path, monkeypatch):
    # A study of a new recipe writes to another file; a second run skips what that file holds, runs the rest.
    results = tmp_path / "next.json"
    study.save([record("off", 0, 0.9, 0.9)], results)
    ran = []

    def fake_run_one(dataset, config, flags, seed, work):
        ran.append((config, seed))
        return record(config, seed, 0.95, 0.94)

    monkeypatch.setattr(study, "run_one", fake_run_one)
    monkeypatch.setattr(study, "prepare", lambda dataset, work: [])
    args = study.argparse.Namespace(dataset="mnist", seeds="0,1", configs="off,constant:0.5", work=str(tmp_path),
                                    results=str(results))
    study.run(args)
    assert ran == [("constant:0.5", 0), ("off", 1), ("constant:0.5", 1)]
    records = study.load(results)
    assert [(r["config"], r["seed"]) for r in records] == [("off", 0)] + ran
    assert all(r["code_version"] and "default" in r for r in records[1:])
    assert all(r["machine"] == study.machine() and "cores" in r["machine"] for r in records[1:])
    assert study.load(tmp_path / "missing.json") == []


def test_readme_and_markdown_tables_match_the_committed_records(study):
    # Both are generated by `table`; a hand edit or a forgotten regeneration would show stale figures.
    expected = study.table(study.load(ROOT / "benchmarks" / "results" / "strength_study.json"))
    assert (ROOT / "benchmarks" / "results" / "strength_study.md").read_text() == expected
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n", readme.index("<!-- strength-study-table")) + 1
    assert readme[start:readme.index("<!-- end strength-study-table -->")] == expected
