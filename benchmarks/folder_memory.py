"""Resident memory while a folder source streams one epoch, for a small and a large folder of the same kind.

Each size runs in its own process (a fresh TensorFlow), which loads the
folder (`folder:DIR`, decoded every epoch: the default), builds the training
pipeline with host-side `mnist`-policy augmentation, and iterates one epoch,
sampling its resident set size (RSS) after every batch. Reported per folder:
RSS after loading (TensorFlow, the paths and labels), peak RSS during the
epoch, and its growth over the load; then the difference of the peaks between
the large and the small folder (the issue's target: under 150 MB from 2,000
to 20,000 images).

    python benchmarks/folder_memory.py --sizes 2000,20000 --json benchmarks/results/folder_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(folder: str, image_size: int, batch_size: int) -> dict:
    from augpipe import augment, pipelines

    source = pipelines.load_source(f"folder:{folder}", image_size=(image_size, image_size))
    split = pipelines.Split("train", source.images, source.labels, source.num_classes)
    layer = augment.Augment("mnist", strength=1.0, seed=0, placement="host")
    train, _ = pipelines.build_training_pipeline(split, batch_size=batch_size, seed=0, host_augment=layer)
    loaded = rss_mb()
    peak, seen = loaded, 0
    for images, _ in train:
        seen += int(images.shape[0])
        peak = max(peak, rss_mb())
    return {"images": len(source), "cache": source.images.cache, "seen": seen, "rss_after_load_mb": loaded,
            "peak_rss_epoch_mb": peak, "epoch_growth_mb": peak - loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000", help="Folder sizes (images), comma-separated.")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workdir", default=None, help="Where the folders are written (a temporary one by default).")
    parser.add_argument("--json", default=None)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.image_size, args.batch_size)))
        return
    from augpipe.pipelines.synthetic import write_shapes_folder

    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="augpipe-folder-memory-"))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        folder = workdir / f"shapes{size}"
        if not folder.exists():
            write_shapes_folder(folder, per_class=size // 4, seed=size, png_fraction=0.0)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        out = subprocess.run([sys.executable, __file__, "--measure", str(folder), "--image-size", str(args.image_size),
                              "--batch-size", str(args.batch_size)], check=True, capture_output=True, text=True, env=env)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['images']:>6} images ({row['cache']}): RSS after load {row['rss_after_load_mb']:.0f} MB, "
              f"peak during the epoch {row['peak_rss_epoch_mb']:.0f} MB (+{row['epoch_growth_mb']:.0f} MB)")
    result = {"rows": rows, "image_size": args.image_size, "batch_size": args.batch_size}
    if len(rows) >= 2:
        result["peak_difference_mb"] = rows[-1]["peak_rss_epoch_mb"] - rows[0]["peak_rss_epoch_mb"]
        print(f"peak RSS, {rows[-1]['images']} vs {rows[0]['images']} images: "
              f"{result['peak_difference_mb']:+.0f} MB (target: under 150 MB)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
