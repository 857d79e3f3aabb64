"""What `profile_input` measures: the pipeline stages, their runner, and the training-step measurement.

Each stage is a function `batch_size -> tf.data.Dataset` of image batches (or
`(dataset, device_fn)` when the work runs after the iterator); `StageRunner`
times it inside TensorFlow and from Python; `measure_input_bound` times a
training step fed from memory against one fed by the pipeline.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import numpy as np
import tensorflow as tf

from augpipe.scripts.models import check_user_model, load_user_model  # noqa: F401  (re-exported)


# The TF profiler's input-bound thresholds.
VERDICTS = ((0.05, "not input-bound"), (0.20, "moderately input-bound"), (float("inf"), "highly input-bound"))
GEOMETRIC_OPS = ("rotate", "scale", "shear", "translate")


def verdict(share: float) -> str:
    for limit, text in VERDICTS:
        if share < limit:
            return text
    return VERDICTS[-1][1]


# ----------------------------------------------------------------------------
# Stages: each is a function batch_size -> tf.data.Dataset of image batches,
# or (dataset, device_fn) when the work runs after the iterator.


def raw_stage(images, batch_size):
    """The ceiling: batches of `images` with no work at all, repeated forever."""
    return tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch_size).prefetch(tf.data.AUTOTUNE)


def mapped_stage(images, batch_size, fn):
    """Batches of `images` with `fn` applied per batch inside tf.data (parallel calls), repeated forever."""
    return (
        tf.data.Dataset.from_tensor_slices(images)
        .repeat()
        .batch(batch_size)
        .map(fn, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def keras_chain(strength: float, seed: int = 0):
    """Keras' layers doing what the `mnist` policy's geometric ops do: equivalent
    ranges at strength 1 (rotate 20 deg, translate 12 %, zoom 15 %)."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomRotation(20.0 / 360.0 * strength, fill_mode="constant", seed=seed),
            keras.layers.RandomTranslation(0.12 * strength, 0.12 * strength, fill_mode="constant", seed=seed),
            keras.layers.RandomZoom(0.15 * strength, fill_mode="constant", seed=seed),
        ]
    )


def KerasChainFront(strength: float, seed: int = 0):  # noqa: N802 - a layer, named like one
    """`keras_chain` behind a conversion to float [0, 1]: a model front that takes uint8 like `Augment`."""
    import keras

    return keras.Sequential([keras.layers.Rescaling(1.0 / 255.0), *keras_chain(strength, seed).layers])


def geometric_layer(strength: float, seed: int = 0, placement: str = "device"):
    """augpipe's `Augment` with the `mnist` policy's geometric ops only (the peer of `keras_chain`)."""
    from augpipe import augment

    return augment.Augment(
        augment.get_policy("ops", ops={k: augment.policies.MnistPolicy.DEFAULTS[k] for k in GEOMETRIC_OPS}),
        strength=strength,
        seed=seed,
        placement=placement,
    )


def folder_stages(source, image_size, channels, resize, policy, strength: float, compare, seed: int = 0) -> tuple:
    """The stages of a folder source, decode included: `(stages, loaded source)`.

    Ours: the training pipeline (`build_pipeline(..., training=True)`) that
    decodes every epoch (cache "stream"), bare, with the `mnist` policy's
    geometric ops and with `policy` on the host; and with the decoded images
    kept in memory (cache "memory"), bare (`raw`, the ceiling) and with the
    geometric ops. Keras' peer (with "keras" in `compare`):
    `keras.utils.image_dataset_from_directory` at the same size, colour mode
    and aspect handling, bare and with `keras_chain` mapped over its batches.
    """
    import dataclasses

    import keras

    from augpipe import augment, pipelines

    if image_size is None:
        raise ValueError(f"{source!r} needs an image size: every file is resized to it (--image-size H W).")
    loaded = pipelines.load_source(source, image_size=tuple(image_size), channels=channels, resize=resize,
                                   cache="stream")
    streamed = pipelines.Split("train", loaded.images, loaded.labels, loaded.num_classes)
    kept = dataclasses.replace(streamed, images=dataclasses.replace(loaded.images, cache="memory"))
    geometric = geometric_layer(strength, seed, placement="host")
    ours = augment.Augment(policy, strength=strength, seed=seed, placement="host")

    def pipeline(split, host_augment=None):
        def make(batch_size):
            dataset = pipelines.build_pipeline(split, batch_size=batch_size, training=True, seed=seed, repeat=True,
                                               host_augment=host_augment)
            return dataset.map(lambda images, labels: images)

        return make

    stages = {
        "raw": pipeline(kept),
        "ours_cached_geometric": pipeline(kept, geometric),
        "ours_decode": pipeline(streamed),
        "ours_decode_geometric": pipeline(streamed, geometric),
        "ours_decode_policy": pipeline(streamed, ours),
    }
    if "keras" in compare:
        root = source.strip()[len("folder:"):]
        chain = keras_chain(strength, seed)

        def keras_folder(augmented):
            def make(batch_size):
                dataset = keras.utils.image_dataset_from_directory(
                    root, image_size=tuple(image_size), batch_size=batch_size, seed=seed, shuffle=True,
                    color_mode="grayscale" if loaded.image_shape[-1] == 1 else "rgb",
                    crop_to_aspect_ratio=resize == "crop", pad_to_aspect_ratio=resize == "pad", verbose=False)
                if augmented:
                    dataset = dataset.map(lambda images, labels: chain(images / 255.0, training=True),
                                          num_parallel_calls=tf.data.AUTOTUNE)
                else:
                    dataset = dataset.map(lambda images, labels: images)
                return dataset.repeat().prefetch(tf.data.AUTOTUNE)

            return make

        stages["keras_decode"] = keras_folder(False)
        stages["keras_decode_chain"] = keras_folder(True)
    return stages, loaded


def build_stages(images, policy: str, strength: float, compare: Sequence[str], seed: int = 0) -> dict:
    import keras

    from augpipe import augment
    from augpipe.augment import ops

    ours = augment.Augment(policy, strength=strength, seed=seed)
    geometric = geometric_layer(strength, seed)
    height, width = images.shape[1:3]

    def bare_warp(batch):
        # The reference: one ImageProjectiveTransformV3 call per batch, with
        # random rotations, on the converted batch.
        floats = ops.to_float(batch)
        angles = tf.random.uniform([tf.shape(batch)[0]], -0.35, 0.35)
        return ops.apply_affine(floats, ops.rotation_matrix(angles, height, width))

    stages = {
        "raw": lambda b: raw_stage(images, b),
        "bare_warp": lambda b: mapped_stage(images, b, bare_warp),
        "ours_host": lambda b: mapped_stage(images, b, lambda x: ours(x, training=True)),
        "ours_geometric_host": lambda b: mapped_stage(images, b, lambda x: geometric(x, training=True)),
        "ours_device": lambda b: (raw_stage(images, b), tf.function(lambda x: ours(x, training=True))),
    }
    if "keras" in compare:
        chain = keras_chain(strength, seed)
        stages["keras_chain"] = lambda b: mapped_stage(images, b, lambda x: chain(ops.to_float(x), training=True))
    if "keras-randaugment" in compare:
        randaugment = keras.layers.RandAugment(value_range=(0, 1), num_ops=2, factor=0.5 * strength, seed=seed)
        stages["keras_randaugment"] = lambda b: mapped_stage(images, b, lambda x: randaugment(ops.to_float(x), training=True))
    if "keras-augmix" in compare:
        augmix = keras.layers.AugMix(value_range=(0, 1), seed=seed)
        stages["keras_augmix"] = lambda b: mapped_stage(images, b, lambda x: augmix(ops.to_float(x), training=True))
    if "albumentations" in compare:
        import albumentations as A

        from augpipe.augment.host import check_albumentations_licence

        check_albumentations_licence()
        compose = A.Compose(
            [
                A.Affine(
                    rotate=(-20 * strength, 20 * strength),
                    translate_percent=(-0.12 * strength, 0.12 * strength),
                    scale=(1 - 0.15 * strength, 1 + 0.15 * strength),
                    p=1.0,
                )
            ]
        )
        stages["albumentations"] = lambda b: mapped_stage(images, b, augment.albumentations_batch(compose, seed=seed))
    return stages


class StageRunner:
    """Times one stage. Each measurement gets a fresh iterator, warmed by two
    batches before the clock starts: building an iterator (tf.data
    instantiates and optimizes every map function again) is not timed, and
    no stage's background threads run while another stage is measured."""

    def __init__(self, dataset, device_fn=None):
        self.dataset = dataset
        self.device_fn = device_fn
        apply = device_fn or (lambda batch: batch)

        @tf.function
        def consume(iterator, count):
            # What `skip(count)` does: pull `count` batches inside TF and
            # hand nothing per batch back to Python.
            total = tf.constant(0.0)
            for _ in tf.range(count):
                total += tf.cast(tf.reshape(apply(next(iterator)), [-1])[0], tf.float32)
            return total

        self._consume = consume

    def _warm_iterator(self):
        iterator = iter(self.dataset)
        self._consume(iterator, tf.constant(2)).numpy()
        return iterator

    def inside_tf(self, num_batches) -> float:
        """Seconds for `num_batches` consumed inside TF."""
        iterator = self._warm_iterator()
        start = time.perf_counter()
        self._consume(iterator, tf.constant(num_batches)).numpy()
        elapsed = time.perf_counter() - start
        del iterator
        return elapsed

    def from_python(self, num_batches) -> float:
        """Seconds for `num_batches` pulled into Python one by one, the way `fit` sees them."""
        iterator = self._warm_iterator()
        start = time.perf_counter()
        for _ in range(num_batches):
            batch = next(iterator)
            if self.device_fn is not None:
                batch = self.device_fn(batch)
        np.asarray(tf.reshape(batch, [-1])[0])
        elapsed = time.perf_counter() - start
        del iterator
        return elapsed


def _summary(values, baseline=None) -> dict:
    result = {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "repeats": [float(v) for v in values],
    }
    if baseline:
        result["ratio_to_raw"] = result["median"] / baseline
    return result


# ----------------------------------------------------------------------------
# Model step: synthetic in-memory input vs the real pipeline


def _model_for_measurement(model_kind, images, layer, jit_compile=None, num_classes: int = 10):
    """Our CNN or MLP behind `layer`, or a user's model behind it (it gets float [0, 1] images).

    `jit_compile`: None is Keras' "auto" (XLA on a GPU, not on a CPU).
    """
    import keras

    from augpipe.scripts.models import build_model

    jit = "auto" if jit_compile is None else jit_compile
    if model_kind in ("mlp", "cnn"):
        model = build_model(model_kind, images.shape[1:], num_classes, layer)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
        return model
    user = load_user_model(model_kind)
    check_user_model(user, model_kind, images.shape[1:], num_classes)
    inputs = keras.Input(images.shape[1:], dtype="uint8")
    model = keras.Model(inputs, user(layer(inputs)))
    model.compile(keras.optimizers.Adam(), user.loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    return model


def _time_fit(model, dataset, num_batches) -> float:
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=num_batches, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start


def measure_input_bound(images, batch_size, model_kind, policy, strength, placement, num_batches, repeats, seed=0,
                        jit_compile=None, labels=None, num_classes: int = 10) -> dict:
    """The training step with in-memory input vs the real pipeline (input-bound share).

    With device placement it also times the same step with augmentation
    off, with augpipe's geometric ops only, and with Keras' layer chain in
    their place, all on the same in-memory batch, to give what augmentation
    costs in the step and how that compares with Keras' layers on the same
    device. Keras' layers have no XLA kernels (`ImageProjectiveTransformV3`),
    so their step, and the augmentation-off step it is compared with, are
    compiled without XLA.
    """
    from augpipe import augment
    from augpipe import pipelines

    # The source's labels and class count (a model with fewer outputs than 10 must train on its own classes).
    labels = np.arange(len(images)) % num_classes if labels is None else np.asarray(labels)
    source = pipelines.Source.from_arrays(images, labels, num_classes=num_classes)
    split = pipelines.make_splits(source, val_size=0, test_size=0.01, seed=seed).train
    layer = augment.Augment(policy, strength=strength, seed=seed, placement=placement)
    model = _model_for_measurement(model_kind, images, layer, jit_compile, num_classes)
    real = pipelines.build_pipeline(
        split, batch_size=batch_size, training=True, seed=seed, drop_remainder=True,
        host_augment=layer if placement == "host" else None,
    ).repeat()
    first = next(iter(real))
    synthetic = tf.data.Dataset.from_tensors(first).repeat()
    models = {"pipeline": (model, real), "synthetic": (model, synthetic)}
    if placement == "device":
        models["no_augmentation"] = (
            _model_for_measurement(model_kind, images, augment.Augment("none", seed=seed), jit_compile, num_classes), synthetic)
        models["geometric"] = (
            _model_for_measurement(model_kind, images, geometric_layer(strength, seed), jit_compile, num_classes), synthetic)
        models["keras_chain"] = (
            _model_for_measurement(model_kind, images, KerasChainFront(strength, seed), False, num_classes), synthetic)
        models["no_augmentation_no_xla"] = (
            _model_for_measurement(model_kind, images, augment.Augment("none", seed=seed), False, num_classes), synthetic)
    for each, dataset in models.values():  # warm-up: tracing and compiling are not timed
        _time_fit(each, dataset, num_batches)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, (each, dataset) in models.items():
            times[name].append(_time_fit(each, dataset, num_batches))
    step = {name: statistics.median(values) / num_batches for name, values in times.items()}
    share = max(0.0, 1.0 - step["synthetic"] / step["pipeline"])
    result = {
        "placement": placement,
        "model": model_kind,
        "jit_compile": jit_compile,
        "step_time_synthetic_ms": 1000 * step["synthetic"],
        "step_time_pipeline_ms": 1000 * step["pipeline"],
        "input_bound_share": share,
        "verdict": verdict(share),
    }
    if placement == "device":
        ours_cost = step["geometric"] - step["no_augmentation"]
        keras_cost = step["keras_chain"] - step["no_augmentation_no_xla"]
        result.update({
            "step_time_no_augmentation_ms": 1000 * step["no_augmentation"],
            "step_time_geometric_ms": 1000 * step["geometric"],
            "step_time_keras_chain_ms": 1000 * step["keras_chain"],
            "step_time_no_augmentation_no_xla_ms": 1000 * step["no_augmentation_no_xla"],
            # What augmentation adds to the step, as a share of the step.
            "augmentation_share_of_step": max(0.0, 1.0 - step["no_augmentation"] / step["synthetic"]),
            "step_with_vs_without_augmentation": step["synthetic"] / step["no_augmentation"],
            # Keras' chain's cost in the step over our geometric ops' cost (same ops, same ranges).
            "keras_chain_cost_vs_ours_geometric": keras_cost / ours_cost if ours_cost > 0 else None,
        })
    return result


# ----------------------------------------------------------------------------
