#!/usr/bin/env bash
# The colour-photo policies against Keras 3's RandAugment(num_ops=2) and AugMix, host-side tf.data,
# synthetic RGB images: batch 128 at 32x32 and batch 32 at 224x224 (the sizes of the issue's table).
# Run on an otherwise idle machine. Results: benchmarks/results/colour_*.json and .txt.
set -euo pipefail
cd "$(dirname "$0")/.."
for policy in trivialaugment randaugment; do
  profile-input --image-size 32 32 --channels 3 --synthetic 4096 --batch-sizes 128 --policy "$policy" \
    --compare keras-randaugment,keras-augmix --repeats 3 --warmup 1 --images 4096 \
    --json "benchmarks/results/colour_${policy}_32.json" | tee "benchmarks/results/colour_${policy}_32.txt"
  profile-input --image-size 224 224 --channels 3 --synthetic 256 --batch-sizes 32 --policy "$policy" \
    --compare keras-randaugment,keras-augmix --repeats 3 --warmup 1 --images 256 \
    --json "benchmarks/results/colour_${policy}_224.json" | tee "benchmarks/results/colour_${policy}_224.txt"
done
