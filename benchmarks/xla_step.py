"""The XLA-compiled CNN training step with device-side augmentation inside, against the same step without it.

One in-memory batch (no input pipeline in the way), both models compiled
with `jit_compile=True`, warmed up, then timed in interleaved repeats
(median). Prints the two step times and their ratio; `--json` writes them.

    python benchmarks/xla_step.py --batch-size 256 --repeats 7 --steps 20
"""

import argparse
import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from augpipe import augment
from augpipe.pipelines import load_source
from augpipe.scripts.models import build_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--policy", default="mnist")
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--jit-compile", default="true", choices=["true", "false"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    jit = args.jit_compile == "true"
    source = load_source("mnist-embedded")
    images, labels = source.images[: args.batch_size], source.labels[: args.batch_size]
    batch = tf.data.Dataset.from_tensors((images, labels)).repeat()
    models = {}
    for name, policy in (("with_augmentation", args.policy), ("without_augmentation", "none")):
        layer = augment.Augment(policy, strength=args.strength, seed=0)
        model = build_model("cnn", source.image_shape, source.num_classes, layer)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
        model.fit(batch, steps_per_epoch=3, epochs=1, verbose=0)  # trace and compile
        models[name] = model
    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(batch, steps_per_epoch=args.steps, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - start) / args.steps)
    step = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "batch_size": args.batch_size, "policy": args.policy, "strength": args.strength, "jit_compile": jit,
        "step_ms": {name: 1000 * value for name, value in step.items()},
        "step_ms_all": {name: [round(1000 * v, 1) for v in values] for name, values in times.items()},
        "ratio_with_vs_without": step["with_augmentation"] / step["without_augmentation"],
        "devices": [d.device_type for d in tf.config.list_physical_devices()],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
