"""Reproduces the README's results table: run-mnist variants x seeds, mean +- std.

Usage: python benchmarks/mnist_table.py [--seeds 0,1,2] [--out results/mnist_table.md] [VARIANT ...]

Each run is a separate `run-mnist` process with default options except the
variant's flags, so the numbers are what the command itself gives.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

VARIANTS = {
    "mlp-none": ["--model", "mlp", "--strength", "off"],
    "cnn-none": ["--strength", "off"],
    "cnn-constant": ["--strength", "constant:0.5"],
    "cnn-adaptive": [],
    "cnn-adaptive-mixup": ["--mixup"],
}


def run(variant, seed, root):
    run_dir = pathlib.Path(root) / f"{variant}-seed{seed}"
    command = ["run-mnist", "--quiet", "--no-tensorboard", "--seed", str(seed), "--run-dir", str(run_dir), "--overwrite"]
    subprocess.run(command + VARIANTS[variant], check=True, stdout=subprocess.DEVNULL)
    return json.loads((run_dir / "report.json").read_text())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="benchmarks/results/mnist_table.md")
    parser.add_argument("variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        "| variant | flags | test accuracy (mean ± std) | wall time s (mean ± std) | per seed |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as root:
        for variant in args.variants:
            reports = [run(variant, seed, root) for seed in seeds]
            accuracy = [r["test_accuracy"] for r in reports]
            wall = [r["wall_time_s"] for r in reports]
            std = lambda values: statistics.stdev(values) if len(values) > 1 else 0.0  # noqa: E731
            line = (
                f"| {variant} | `{' '.join(VARIANTS[variant]) or '(defaults)'}` | "
                f"{100 * statistics.mean(accuracy):.2f} ± {100 * std(accuracy):.2f} % | "
                f"{statistics.mean(wall):.0f} ± {std(wall):.0f} | "
                f"{', '.join(f'{100 * a:.1f}' for a in accuracy)} |"
            )
            lines.append(line)
            print(line, flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
