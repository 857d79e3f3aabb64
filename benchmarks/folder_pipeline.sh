#!/usr/bin/env bash
# Folder sources (#14): augpipe's folder pipeline against Keras' image_dataset_from_directory with its
# layers, decode included, on 5,000 JPEGs of mixed sizes (48-256 px) resized to 64x64; then resident
# memory while one epoch streams, 2,000 vs 20,000 images. Run on an otherwise idle machine.
# Results: benchmarks/results/folder_*.json and .txt. The folders are written under $WORK (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${WORK:-$(mktemp -d)}"
if [ ! -d "$WORK/jpegs5000" ]; then
  python -c "from augpipe.pipelines.synthetic import write_shapes_folder as w; \
w('$WORK/jpegs5000', per_class=1250, seed=5, min_size=48, max_size=256, png_fraction=0.0)"
fi
profile-input --source "folder:$WORK/jpegs5000" --image-size 64 64 --batch-sizes 128 --compare keras \
  --repeats 3 --warmup 1 --images 5000 \
  --json benchmarks/results/folder_pipeline_64.json | tee benchmarks/results/folder_pipeline_64.txt
python benchmarks/folder_memory.py --sizes 2000,20000 --workdir "$WORK" \
  --json benchmarks/results/folder_memory.json | tee benchmarks/results/folder_memory.txt
