"""What each part of the `mnist` policy costs, side by side in one run.

Usage: python benchmarks/augment_ablation.py [--batch-size 256] [--strength 1.0] [--repeats 9]

Every variant is a host-side `tf.data` map over the same uint8 batches,
measured with `profile-input`'s `StageRunner` (fresh warmed iterator per
measurement, repeats interleaved) and reported as images/sec, milliseconds
per batch and the ratio to the bare single `ImageProjectiveTransformV3` warp.
Run it on an otherwise idle machine.
"""

import argparse
import statistics

import numpy as np
import tensorflow as tf

from augpipe import augment
from augpipe.augment import ops
from augpipe.augment.policies import MnistPolicy
from augpipe.scripts.profiling import StageRunner, mapped_stage

GEOMETRIC = ["rotate", "scale", "shear", "translate"]


def variants(strength, height, width):
    def policy(names):
        layer = augment.Augment(
            augment.get_policy("ops", ops={name: MnistPolicy.DEFAULTS[name] for name in names}),
            strength=strength,
            seed=0,
        )
        return lambda batch: layer(batch, training=True)

    def bare_warp(batch):
        angles = tf.random.uniform([tf.shape(batch)[0]], -0.35, 0.35)
        return ops.apply_affine(ops.to_float(batch), ops.rotation_matrix(angles, height, width))

    return {
        "bare warp": bare_warp,
        "conversion only": ops.to_float,
        "geometric": policy(GEOMETRIC),
        "geometric + elastic": policy(GEOMETRIC + ["elastic"]),
        "geometric + erase + noise": policy(GEOMETRIC + ["erase", "noise"]),
        "full mnist": policy(list(MnistPolicy.DEFAULTS)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    images = np.random.default_rng(0).integers(0, 256, (5000, 28, 28, 1), dtype=np.uint8)
    runners = {
        name: StageRunner(mapped_stage(images, args.batch_size, fn))
        for name, fn in variants(args.strength, 28, 28).items()
    }
    rates = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, runner in runners.items():
            rates[name].append(args.batches * args.batch_size / runner.inside_tf(args.batches))
    reference = statistics.median(rates["bare warp"])
    print(f"batch {args.batch_size}, strength {args.strength}, median of {args.repeats} repeats")
    print(f"{'variant':28s} {'img/s':>9s} {'ms/batch':>9s} {'x bare warp':>12s}")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:28s} {median:9.0f} {1e3 * args.batch_size / median:9.3f} {median / reference:12.2f}")


if __name__ == "__main__":
    main()
