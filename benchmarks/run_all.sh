#!/usr/bin/env bash
# Reproduces the README's Results and Performance tables on this machine.
# Run it on an otherwise idle machine: the runs are timed.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/mnist_table.py --out benchmarks/results/mnist_table.md
profile-input --model cnn --json benchmarks/results/profile_input.json | tee benchmarks/results/profile_input.txt
