"""The strength study: strength configs x seeds x data sets, each run a `run-mnist` process.

Usage:
    python benchmarks/strength_study.py run DATASET [--seeds 0,1,2,3,4] [--configs C1,C2] [--work DIR] [--results FILE]
    python benchmarks/strength_study.py table [--out benchmarks/results/strength_study.md] [--results FILE]
    python benchmarks/strength_study.py mark-default [--results FILE]

DATASET is `mnist` (the embedded 5,000 digits, run-mnist's defaults),
`shapes` (the drawn-shapes folder, `pipelines.write_shapes_folder`) or
`photos` (crops of the photographs scikit-image and scikit-learn ship,
`benchmarks/photo_folder.py`, val and test crops from bands of each
photograph that no training crop touches; needs `pip install ".[bench]"`).

Each run appends one record to `benchmarks/results/strength_study.json` as
soon as it ends, and a run already there is skipped, so the study can be run
in pieces (per data set, per seed) and stopped at any time. Every config of
a data set runs on the same splits and seeds (the split and the model's
initialization follow `--seed`), so differences between configs are paired.
A record: `dataset`, `config` (the `--strength` spec or policy that ran it),
`seed`, `val_accuracy` (the best epoch's, which picks the model),
`test_accuracy` (that model on the test split), `epochs`, `wall_s`,
`strength` (per epoch), `default` (whether the config is run-mnist's
default strength: set when it ran, and by `mark-default` after the default
changes to another config the study ran), `flags`, `code_version` (the commit) and
`machine` (the CPU model, cores and vector extensions; older records lack
it).

`table` prints and writes the README's table: per data set and config, mean
± std and a 95 % t-interval of test accuracy, and the paired differences of
the default against the constant a user's grid search picks by validation
accuracy (per seed, among the four constants) and against the best constant
by mean test accuracy (an upper bound no user gets), and against `off`
and the controllers (`shaped`, `adaptive:probe_gap`, `adaptive`) when the
default is none of them.
"""

import argparse
import csv
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "strength_study.json"
SEEDS = (0, 1, 2, 3, 4)
CONSTANTS = ("constant:0.25", "constant:0.5", "constant:0.75", "constant:1")
# The configs the default is also compared with, when it is not one of them: no augmentation, the controllers.
COMPARED = ("off", "shaped", "adaptive:probe_gap", "adaptive")

# Per data set: the flags every run shares, and its epochs (the linear ramp spans them).
DATASETS = {
    "mnist": {"flags": ["--source", "mnist-embedded"], "epochs": None},
    "shapes": {"flags": ["--image-size", "32", "--batch-size", "32"], "epochs": 10},
    "photos": {"flags": ["--image-size", "32", "--model", str(ROOT / "benchmarks" / "study_models.py") + ":bn_cnn",
                         "--policy", "cifar", "--batch-size", "64"], "epochs": 20},
}


def configs(dataset: str, epochs: int) -> dict:
    """Config name -> the run-mnist flags that run it."""
    found = {"off": ["--strength", "off"]}
    found.update({c: ["--strength", c] for c in CONSTANTS})
    found[f"linear:0:1:{epochs}"] = ["--strength", f"linear:0:1:{epochs}"]
    found["adaptive"] = ["--strength", "adaptive"]  # the old controller: accuracy_gap
    found["adaptive:probe_gap"] = ["--strength", "adaptive:probe_gap"]  # the sign integrator on the probe
    found["shaped"] = ["--strength", "shaped"]
    if dataset == "mnist":  # what LearningRateControl's plateau cuts add to the plain cosine of the default
        found["shaped+lr-patience:3"] = ["--strength", "shaped", "--lr-patience", "3"]
    if dataset == "photos":  # the fixed recipes people use, at full strength
        found["trivialaugment"] = ["--policy", "trivialaugment", "--strength", "1"]
        found["randaugment"] = ["--policy", "randaugment", "--strength", "1"]
    return found


def default_strength() -> str:
    from augpipe.scripts.config import ExperimentConfig

    return ExperimentConfig().strength


def default_epochs() -> int:
    from augpipe.scripts.config import ExperimentConfig

    return ExperimentConfig().epochs


def prepare(dataset: str, work: pathlib.Path) -> list:
    """Builds the data set under `work` once; returns its `--source` flags."""
    if dataset == "mnist":
        return []
    if dataset == "shapes":
        folder = work / "shapes"
        if not folder.is_dir():
            from augpipe.pipelines.synthetic import write_shapes_folder

            write_shapes_folder(folder, per_class=300)
        return ["--source", f"folder:{folder}"]
    folder = work / "photos-val"
    if not folder.is_dir():
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import photo_folder

        photo_folder.write(folder, per_class=300, test_per_class=60, seed=0, val_per_class=30)
    # train/, val/ and test/: val and test crops come from bands of each photograph no training crop touches.
    return ["--source", f"folder:{folder}"]


def load(path=RESULTS) -> list:
    path = pathlib.Path(path)
    return json.loads(path.read_text()) if path.is_file() else []


def save(records: list, path=RESULTS) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(records, indent=1) + "\n")
    os.replace(temporary, path)


def code_version() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return result.stdout.strip() + ("+changes" if dirty else "")


def machine() -> str:
    """The CPU that ran the study: its model and vector extensions (wall times, and the float paths that
    make a seed's run bit-identical, depend on them)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    vector = sorted(f for f in flags if f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"))
    return f"{model}, {os.cpu_count()} cores" + (f", {' '.join(vector)}" if vector else "")


def run_one(dataset, config, flags, seed, work) -> dict:
    run_dir = work / "runs" / f"{dataset}-{config.replace(':', '_')}-seed{seed}"
    command = ["run-mnist", "--quiet", "--no-tensorboard", "--seed", str(seed), "--run-dir", str(run_dir),
               "--overwrite", *flags]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    report = json.loads((run_dir / "report.json").read_text())
    with open(run_dir / "log.csv") as handle:
        strength = [round(float(row["aug_strength"]), 4) for row in csv.DictReader(handle)]
    return {
        "dataset": dataset, "config": config, "seed": seed,
        "val_accuracy": report["best_val_accuracy"], "test_accuracy": report["test_accuracy"],
        "epochs": report["epochs_run"], "wall_s": report["wall_time_s"],
        "process_s": round(time.perf_counter() - start, 1), "strength": strength,
        "test_size": report["splits"]["test"]["size"],
    }


def run(args) -> None:
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="strength-study-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = DATASETS[args.dataset]
    epochs = spec["epochs"] or default_epochs()
    table = configs(args.dataset, epochs)
    chosen = args.configs.split(",") if args.configs else list(table)
    unknown = [c for c in chosen if c not in table]
    if unknown:
        raise SystemExit(f"Unknown config(s) {unknown} for {args.dataset}. Expected some of: {', '.join(table)}.")
    source = prepare(args.dataset, work)
    default, version, cpu = default_strength(), code_version(), machine()
    epoch_flags = [] if spec["epochs"] is None else ["--epochs", str(epochs)]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for config in chosen:  # seed-major: a study stopped early still has whole seeds
            records = load(args.results)
            if any((r["dataset"], r["config"], r["seed"]) == (args.dataset, config, seed) for r in records):
                continue
            flags = source + spec["flags"] + epoch_flags + table[config]
            record = run_one(args.dataset, config, flags, seed, work)
            shown = [f.replace(str(ROOT) + os.sep, "") for f in spec["flags"] + epoch_flags + table[config]]
            record.update({"default": config == default, "flags": shown,
                           "code_version": version, "machine": cpu})
            records = load(args.results)
            records.append(record)
            save(records, args.results)
            print(f"{args.dataset} {config} seed {seed}: test {100 * record['test_accuracy']:.2f} %, "
                  f"val {100 * record['val_accuracy']:.2f} %, {record['wall_s']:.0f} s", flush=True)


# ----------------------------------------------------------------------------
# The table

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(values) -> tuple:
    """Mean, std and the half-width of a 95 % t-interval (NaN for one value)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    std = statistics.stdev(values)
    return mean, std, T_975.get(len(values) - 1, 1.96) * std / math.sqrt(len(values))


def paired(default: dict, other: dict) -> tuple:
    """Mean paired difference (default - other, by seed), its standard error, and n."""
    seeds = sorted(set(default) & set(other))
    differences = [default[s] - other[s] for s in seeds]
    if len(differences) < 2:
        return (differences[0] if differences else float("nan")), float("nan"), len(differences)
    return statistics.mean(differences), statistics.stdev(differences) / math.sqrt(len(differences)), len(seeds)


def percent_by_seed(runs: dict) -> dict:
    """Seed -> test accuracy in percent, for one config's runs by seed."""
    return {seed: 100 * r["test_accuracy"] for seed, r in runs.items()}


def table(records: list) -> str:
    lines = ["| data set | config | runs | test accuracy mean ± std (%) | 95 % interval (%) | val accuracy (%) "
             "| mean strength | wall s (mean, max) |", "|---|---|---|---|---|---|---|---|"]
    comparisons = []
    for dataset in DATASETS:
        rows = [r for r in records if r["dataset"] == dataset]
        if not rows:
            continue
        by_config = {}
        for r in rows:
            by_config.setdefault(r["config"], {})[r["seed"]] = r
        for config, runs in by_config.items():
            test = [100 * r["test_accuracy"] for r in runs.values()]
            val = [100 * r["val_accuracy"] for r in runs.values()]
            mean, std, half = interval(test)
            strength = statistics.mean(statistics.mean(r["strength"]) for r in runs.values())
            marker = " (default)" if any(r.get("default") for r in runs.values()) else ""
            wall = [r["wall_s"] for r in runs.values()]
            lines.append(f"| {dataset} | `{config}`{marker} | {len(test)} | {mean:.2f} ± {std:.2f} | "
                         f"{max(mean - half, 0):.2f} - {min(mean + half, 100):.2f} | {statistics.mean(val):.2f} | {strength:.2f} | "
                         f"{statistics.mean(wall):.0f}, {max(wall):.0f} |")
        defaults = [c for c, runs in by_config.items() if any(r.get("default") for r in runs.values())]
        constants = {c: by_config[c] for c in CONSTANTS if c in by_config}
        if not defaults or not constants:
            continue
        default = percent_by_seed(by_config[defaults[0]])
        # A user's grid search: per seed, the constant with the best val accuracy (ties: the weaker).
        picked = {}
        for seed in default:
            candidates = [(runs[seed]["val_accuracy"], -CONSTANTS.index(c), c) for c, runs in constants.items()
                          if seed in runs]
            if candidates:
                picked[seed] = max(candidates)[2]
        by_val = {s: 100 * constants[c][s]["test_accuracy"] for s, c in picked.items()}
        best = max(constants, key=lambda c: statistics.mean(r["test_accuracy"] for r in constants[c].values()))
        by_test = percent_by_seed(constants[best])
        against = [(f"the constant picked by val accuracy per seed ({', '.join(picked[s] for s in sorted(picked))})",
                    by_val), (f"the best constant by test accuracy (`{best}`)", by_test)]
        # What the default is worth against no augmentation and against the controllers, when it is none of them.
        against += [(f"`{c}`", percent_by_seed(by_config[c]))
                    for c in COMPARED if c in by_config and c != defaults[0]]
        for name, other in against:
            difference, error, n = paired(default, other)
            shown = round(difference, 2) + 0.0  # + 0.0: no "-0.00"
            comparisons.append(f"- {dataset}: `{defaults[0]}` - {name}: {shown:+.2f} ± {error:.2f} points "
                               f"(paired mean ± SE, {n} seeds): {verdict(difference, error)}")
    return "\n".join(lines + [""] + comparisons) + "\n"


def verdict(difference: float, error: float) -> str:
    """Words for a paired difference: equal when it rounds to 0.00 points, as the table prints it."""
    if round(difference, 2) == 0:
        return "equal"
    if difference > error:
        return "higher by more than one SE"
    if difference < -error:
        return "lower by more than one SE"
    return "lower, within one SE" if difference < 0 else "higher, within one SE"


def mark_default(records: list, default: str) -> list:
    """The records with `default` set on the runs of config `default` and cleared on the others.

    For a change of run-mnist's default strength to a config the study ran:
    those runs are the new default's (the same flags), and the old default's
    are not any more.
    """
    return [dict(r, default=r["config"] == default) for r in records]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("dataset", choices=list(DATASETS))
    run_parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    run_parser.add_argument("--configs", default=None, help="comma-separated config names (default: all)")
    run_parser.add_argument("--work", default=None, help="where the data sets and run directories go")
    run_parser.add_argument("--results", default=str(RESULTS),
                            help="the records file (another one keeps a study of a new recipe apart until it is whole)")
    table_parser = commands.add_parser("table")
    table_parser.add_argument("--out", default=str(RESULTS.with_suffix(".md")))
    table_parser.add_argument("--results", default=str(RESULTS))
    mark_parser = commands.add_parser("mark-default", help="mark the runs of run-mnist's current default strength")
    mark_parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    elif args.command == "mark-default":
        default = default_strength()
        records = mark_default(load(args.results), default)
        marked = sum(r["default"] for r in records)
        if not marked:
            raise SystemExit(f"No run of the default strength {default!r} in {args.results}; run it first.")
        save(records, args.results)
        print(f"{marked} runs of {default!r} marked as the default")
    else:
        text = table(load(args.results))
        pathlib.Path(args.out).write_text(text)
        print(text)


if __name__ == "__main__":
    main()
