#!/usr/bin/env bash
# Reproduces the README's Results and Performance tables on this machine.
# Run it on an otherwise idle machine: the runs are timed.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/mnist_table.py --out benchmarks/results/mnist_table.md
profile-input --model cnn --json benchmarks/results/profile_input.json | tee benchmarks/results/profile_input.txt
# At run-mnist's own settings (batch 128, the adaptive controller's starting strength 0.3):
profile-input --model cnn --batch-sizes 128 --strength 0.3 --compare none --repeats 3 \
  --json benchmarks/results/profile_input_run_mnist_settings.json | tee benchmarks/results/profile_input_run_mnist_settings.txt
# What each part of the mnist policy costs against the bare warp:
python benchmarks/augment_ablation.py | tee benchmarks/results/augment_ablation.txt
# Colour photos (synthetic RGB): the photo policies against Keras' RandAugment and AugMix, 32x32 and 224x224.
benchmarks/colour_policies.sh
# The XLA-compiled CNN step with and without augmentation (CPU):
profile-input --model cnn --jit-compile --compare none --repeats 3 \
  --json benchmarks/results/profile_xla_cpu.json | tee benchmarks/results/profile_xla_cpu.txt
benchmarks/folder_pipeline.sh
