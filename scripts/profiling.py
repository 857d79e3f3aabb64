"""Input-pipeline profiling as a library: `profile_input(...) -> dict`.

Every stage is measured in the same process, interleaved over repeats after a
warm-up, and reported as images/sec (median, min, max) and as a ratio to the
raw ceiling, so the comparison survives a noisy machine.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from augpipe.validation import check_int

# Albumentations asks the network for updates on import unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

PEERS = ("keras", "keras-randaugment", "keras-augmix", "albumentations")
MODELS = ("none", "mlp", "cnn")
# --quick: about a minute on 2 cores (measured: see the README).
QUICK = {"repeats": 2, "warmup": 1, "images_per_measurement": 4096, "compare": ("keras",)}


def resolve_policy(spec):
    """A policy name, a JSON string (`{"name": ..., "config": ...}`) or a path to such a JSON file.

    Returns what `augment.get_policy` takes; raises ValueError with the
    three accepted forms otherwise.

    >>> resolve_policy("mnist")
    'mnist'
    >>> resolve_policy('{"name": "ops", "config": {"ops": ["rotate"]}}')["name"]
    'ops'
    """
    import json
    import pathlib

    from augpipe import augment

    if not isinstance(spec, str):
        return spec
    text = spec.strip()
    if text.startswith("{"):
        try:
            resolved = json.loads(text)
        except ValueError as error:
            raise ValueError(f"The policy {spec!r} is not valid JSON ({error}).") from None
    elif text.endswith(".json"):
        path = pathlib.Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"Policy file not found: {str(path)!r}.")
        try:
            resolved = json.loads(path.read_text())
        except ValueError as error:
            raise ValueError(f"Policy file {str(path)!r} is not valid JSON ({error}).") from None
    else:
        resolved = text
    if isinstance(resolved, dict) and "name" not in resolved:
        raise ValueError(
            f"A policy spec needs a 'name' (and optionally 'config'). Received: {spec!r}. "
            'Expected e.g. {"name": "ops", "config": {"ops": {"rotate": [1.0, 30]}}}.'
        )
    augment.get_policy(resolved)  # validates, with the registry's did-you-mean
    return resolved


def load_user_model(spec: str):
    """A compiled model from `file.keras`, `package.module:function` or `path/to/file.py:function`."""
    import importlib
    import importlib.util
    import pathlib

    import keras

    if spec.endswith(".keras"):
        path = pathlib.Path(spec).expanduser()
        if not path.is_file():
            raise ValueError(f"Model file not found: {str(path)!r}.")
        return keras.models.load_model(path, safe_mode=True)
    module_name, sep, function_name = spec.rpartition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(
            f"Unknown model {spec!r}. Expected none, mlp, cnn, a saved model (FILE.keras), or a function "
            "returning a compiled model (package.module:function or path/to/file.py:function)."
        )
    if module_name.endswith(".py"):
        file_spec = importlib.util.spec_from_file_location("augpipe_user_model", module_name)
        if file_spec is None or not pathlib.Path(module_name).is_file():
            raise ValueError(f"Model file not found: {module_name!r}.")
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"{module_name!r} has no function {function_name!r}.")
    model = function()
    if not isinstance(model, keras.Model):
        raise ValueError(f"{spec!r} returned {type(model).__name__}, not a keras.Model.")
    return model
# The TF profiler's input-bound thresholds.
VERDICTS = ((0.05, "not input-bound"), (0.20, "moderately input-bound"), (float("inf"), "highly input-bound"))
GEOMETRIC_OPS = ("rotate", "scale", "shear", "translate")


def verdict(share: float) -> str:
    for limit, text in VERDICTS:
        if share < limit:
            return text
    return VERDICTS[-1][1]


def _check_batch_sizes(batch_sizes) -> list:
    sizes = list(batch_sizes)
    if not sizes:
        raise ValueError("Received: batch_sizes=[]. Expected at least one positive batch size.")
    return [check_int("batch_size", size) for size in sizes]


def _check_compare(compare) -> list:
    peers = [p for p in compare if p]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"Unknown peer(s) {unknown} in compare. Expected any of: {', '.join(PEERS)}.")
    return peers


SYNTHETIC_DEFAULT = 2048


def load_images(source: str, synthetic: Optional[int], seed: int = 0, image_size=None,
                channels: Optional[int] = None) -> np.ndarray:
    """The source's uint8 images, or `synthetic` seeded random ones of the same shape.

    `image_size` `(H, W)` and `channels` (1 or 3) ask for synthetic images of
    that shape (`synthetic` of them, 2048 by default) instead of the source's.
    """
    from augpipe import pipelines

    if image_size is None and channels is None:
        images = pipelines.load_source(source).images
        if synthetic is None:
            return images
        shape = images.shape[1:]
    else:
        if channels is not None and channels not in (1, 3):
            raise ValueError(f"Received: channels={channels!r}. Expected 1 (gray) or 3 (colour).")
        if image_size is not None:
            image_size = tuple(image_size)
            if len(image_size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in image_size):
                raise ValueError(f"Received: image_size={image_size!r}. Expected (height, width), each >= 2.")
        if image_size is None or channels is None:
            fallback = pipelines.load_source(source).image_shape
            image_size = image_size or tuple(fallback[:2])
            channels = channels or fallback[2]
        shape = (*image_size, channels)
        synthetic = SYNTHETIC_DEFAULT if synthetic is None else synthetic
    check_int("synthetic", synthetic)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (synthetic,) + tuple(shape), dtype=np.uint8)


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


def _model_for_measurement(model_kind, images, layer, jit_compile=None):
    """Our CNN or MLP behind `layer`, or a user's model behind it (it gets float [0, 1] images).

    `jit_compile`: None is Keras' "auto" (XLA on a GPU, not on a CPU).
    """
    import keras

    from augpipe.scripts.models import build_model

    jit = "auto" if jit_compile is None else jit_compile
    if model_kind in ("mlp", "cnn"):
        model = build_model(model_kind, images.shape[1:], 10, layer)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
        return model
    user = load_user_model(model_kind)
    expected = tuple(user.input_shape[1:])
    if expected != tuple(images.shape[1:]):
        raise ValueError(f"The model {model_kind!r} takes inputs of shape {expected}, but the images have shape "
                         f"{tuple(images.shape[1:])}. Profile it with a matching --source.")
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
                        jit_compile=None) -> dict:
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

    labels = np.arange(len(images)) % 10
    source = pipelines.Source.from_arrays(images, labels, num_classes=10)
    split = pipelines.make_splits(source, val_size=0, test_size=0.01, seed=seed).train
    layer = augment.Augment(policy, strength=strength, seed=seed, placement=placement)
    model = _model_for_measurement(model_kind, images, layer, jit_compile)
    real = pipelines.build_pipeline(
        split, batch_size=batch_size, training=True, seed=seed, drop_remainder=True,
        host_augment=layer if placement == "host" else None,
    ).repeat()
    first = next(iter(real))
    synthetic = tf.data.Dataset.from_tensors(first).repeat()
    models = {"pipeline": (model, real), "synthetic": (model, synthetic)}
    if placement == "device":
        models["no_augmentation"] = (
            _model_for_measurement(model_kind, images, augment.Augment("none", seed=seed), jit_compile), synthetic)
        models["geometric"] = (
            _model_for_measurement(model_kind, images, geometric_layer(strength, seed), jit_compile), synthetic)
        models["keras_chain"] = (
            _model_for_measurement(model_kind, images, KerasChainFront(strength, seed), False), synthetic)
        models["no_augmentation_no_xla"] = (
            _model_for_measurement(model_kind, images, augment.Augment("none", seed=seed), False), synthetic)
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


def context() -> dict:
    import albumentations
    import keras

    return {
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "albumentations": albumentations.__version__,
        },
        "cpu_count": os.cpu_count(),
        "threading": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf_data": "AUTOTUNE",
        },
        "gpu_used": bool(tf.config.list_physical_devices("GPU")),
        "machine": platform.machine(),
    }


def profile_input(
    *,
    source: str = "mnist-embedded",
    synthetic: Optional[int] = None,
    batch_sizes: Sequence[int] = (256,),
    policy: str = "mnist",
    strength: float = 1.0,
    repeats: int = 5,
    warmup: int = 2,
    compare: Sequence[str] = ("keras", "albumentations"),
    model: str = "none",
    images_per_measurement: int = 16384,
    progress: Optional[Callable[[str], None]] = None,
    seed: int = 0,
    jit_compile: Optional[bool] = None,
    image_size: Optional[Sequence[int]] = None,
    channels: Optional[int] = None,
    resize: str = "stretch",
) -> dict:
    """Profiles the input pipeline and returns a plain dict.

    A `folder:DIR` source is profiled with its decoding (see
    `folder_stages`): `image_size` is the size files are resized to, and the
    peer is Keras' folder pipeline with its layers.

    Returns:
        `{"context": ..., "settings": ..., "results": {batch_size: {"inside_tf":
        {stage: summary}, "from_python": {stage: summary}}}, "model": {...}}`,
        where a summary holds images/sec `median`, `min`, `max`, the
        `repeats` and `ratio_to_raw`, and `model` (with `model != "none"`)
        holds the input-bound share and verdict for host and device placement.
    """
    from augpipe import augment

    progress = progress or (lambda message: None)
    batch_sizes = _check_batch_sizes(batch_sizes)
    peers = _check_compare(compare)
    if model not in MODELS and not (model.endswith(".keras") or ":" in model):
        raise ValueError(
            f"Unknown model {model!r}. Expected none, mlp, cnn, a saved model (FILE.keras), or a function "
            "returning a compiled model (package.module:function or path/to/file.py:function)."
        )
    policy = resolve_policy(policy)
    augment.check_strength(strength)
    check_int("repeats", repeats)
    check_int("warmup", warmup, minimum=0)
    check_int("images_per_measurement", images_per_measurement)
    from augpipe.pipelines.sources import is_folder_spec

    folder = is_folder_spec(source)
    if folder:
        if model != "none" or synthetic is not None:
            raise ValueError("--model and --synthetic work with in-memory sources; profile a folder: source "
                             "without them (its stages include decoding).")
        stages, loaded = folder_stages(source, image_size, channels, resize, policy, strength, peers, seed)
        images = loaded.images
    else:
        images = load_images(source, synthetic, seed, image_size, channels)
        stages = build_stages(images, policy, strength, peers, seed)
    results = {}
    for batch_size in batch_sizes:
        num_batches = max(2, images_per_measurement // batch_size)
        built = {}
        for name, make in stages.items():
            made = make(batch_size)
            built[name] = StageRunner(*made) if isinstance(made, tuple) else StageRunner(made)
        progress(f"batch {batch_size}: warming up {len(built)} stages")
        started = time.perf_counter()
        for runner in built.values():
            for _ in range(max(warmup, 1)):
                runner.inside_tf(num_batches)
                runner.from_python(num_batches)
        if batch_size == batch_sizes[0]:
            per_pass = (time.perf_counter() - started) / max(warmup, 1)
            # A training-step measurement costs about three stage passes per timed fit (measured with --quick).
            model_passes = 0 if model == "none" else 2 * len(batch_sizes) * (2 + min(repeats, 3)) * 1.5
            estimate = per_pass * (repeats * len(batch_sizes) + max(warmup, 1) * (len(batch_sizes) - 1) + model_passes)
            progress(f"estimate: about {estimate:.0f} s more ({len(built)} stages x {len(batch_sizes)} batch size(s) "
                     f"x {repeats} repeats; --quick for about a minute)")
        timings = {way: {name: [] for name in built} for way in ("inside_tf", "from_python")}
        for repeat in range(repeats):
            progress(f"batch {batch_size}: repeat {repeat + 1}/{repeats}")
            for name, runner in built.items():
                seconds = runner.inside_tf(num_batches)
                timings["inside_tf"][name].append(num_batches * batch_size / seconds)
                seconds = runner.from_python(num_batches)
                timings["from_python"][name].append(num_batches * batch_size / seconds)
        results[batch_size] = {}
        for way, per_stage in timings.items():
            raw = statistics.median(per_stage["raw"])
            results[batch_size][way] = {name: _summary(values, raw) for name, values in per_stage.items()}
        inside = results[batch_size]["inside_tf"]
        if folder:
            results[batch_size]["ratios"] = folder_ratios(inside)
            continue
        derived = {"ours_full_vs_bare_warp": inside["ours_host"]["median"] / inside["bare_warp"]["median"]}
        if "keras_chain" in inside:
            derived["ours_geometric_vs_keras_chain"] = inside["ours_geometric_host"]["median"] / inside["keras_chain"]["median"]
        if "keras_randaugment" in inside:
            derived["ours_full_vs_keras_randaugment"] = inside["ours_host"]["median"] / inside["keras_randaugment"]["median"]
        if "keras_augmix" in inside:
            derived["ours_full_vs_keras_augmix"] = inside["ours_host"]["median"] / inside["keras_augmix"]["median"]
        if "albumentations" in inside:
            derived["ours_geometric_vs_albumentations"] = (
                inside["ours_geometric_host"]["median"] / inside["albumentations"]["median"]
            )
        results[batch_size]["ratios"] = derived
    model_results = None
    if model != "none":
        model_results = []
        for placement in ("device", "host"):
            for batch_size in batch_sizes:
                progress(f"model {model}: {placement} placement, batch {batch_size}")
                model_results.append(
                    {
                        "batch_size": batch_size,
                        **measure_input_bound(
                            images, batch_size, model, policy, strength, placement,
                            num_batches=max(4, images_per_measurement // batch_size // 2), repeats=max(1, min(repeats, 3)),
                            seed=seed, jit_compile=jit_compile,
                        ),
                    }
                )
    return {
        "context": context(),
        "settings": {
            "source": source,
            "synthetic": None if folder else synthetic if image_size is None and channels is None else len(images),
            "resize": resize if folder else None,
            "image_shape": list(images.shape[1:]),
            "num_images": int(len(images)),
            "batch_sizes": batch_sizes,
            "policy": policy,
            "strength": strength,
            "repeats": repeats,
            "warmup": warmup,
            "compare": peers,
            "model": model,
            "jit_compile": jit_compile,
            "images_per_measurement": images_per_measurement,
        },
        "results": {str(k): v for k, v in results.items()},
        "model": model_results,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def folder_ratios(inside: dict) -> dict:
    """A folder profile's ratios: ours over Keras' folder pipeline, like for like."""
    ratios = {}
    if "keras_decode_chain" in inside:
        ratios["ours_decode_geometric_vs_keras_decode_chain"] = (
            inside["ours_decode_geometric"]["median"] / inside["keras_decode_chain"]["median"])
        ratios["ours_decode_vs_keras_decode"] = inside["ours_decode"]["median"] / inside["keras_decode"]["median"]
        ratios["ours_cached_geometric_vs_keras_decode_chain"] = (
            inside["ours_cached_geometric"]["median"] / inside["keras_decode_chain"]["median"])
    return ratios


def _jit_name(jit_compile) -> str:
    return {None: "auto", True: "on", False: "off"}[jit_compile]


def format_table(report: dict) -> str:
    lines = []
    for batch_size, result in report["results"].items():
        inside, python = result["inside_tf"], result["from_python"]
        lines.append(f"batch {batch_size}  (images/sec: median [min-max]; x raw)")
        lines.append(f"  {'stage':<22} {'inside TF':>28} {'from Python':>28}")
        for name in inside:
            a, b = inside[name], python[name]
            lines.append(
                f"  {name:<22} {a['median']:>9.0f} [{a['min']:.0f}-{a['max']:.0f}] x{a['ratio_to_raw']:.2f}"
                f"  {b['median']:>9.0f} [{b['min']:.0f}-{b['max']:.0f}] x{b['ratio_to_raw']:.2f}"
            )
        for key, value in result["ratios"].items():
            lines.append(f"  {key}: {value:.2f}x")
    for row in report.get("model") or []:
        lines.append(
            f"model {row['model']} batch {row['batch_size']} ({row['placement']} augmentation): step "
            f"{row['step_time_pipeline_ms']:.1f} ms vs {row['step_time_synthetic_ms']:.1f} ms with in-memory input: "
            f"{100 * row['input_bound_share']:.1f}% input-bound -> {row['verdict']}"
        )
        if "augmentation_share_of_step" in row:
            versus = row["keras_chain_cost_vs_ours_geometric"]
            lines.append(
                f"  XLA {_jit_name(row['jit_compile'])}: step {row['step_time_synthetic_ms']:.1f} ms with augmentation, "
                f"{row['step_time_no_augmentation_ms']:.1f} ms without ({row['step_with_vs_without_augmentation']:.2f}x; "
                f"augmentation {100 * row['augmentation_share_of_step']:.1f}% of the step); geometric ops "
                f"{row['step_time_geometric_ms']:.1f} ms vs Keras' chain {row['step_time_keras_chain_ms']:.1f} ms "
                f"(XLA off; {row['step_time_no_augmentation_no_xla_ms']:.1f} ms without augmentation): Keras' chain costs "
                + (f"{versus:.1f}x ours" if versus is not None else "n/a (ours below the noise)")
            )
    ctx = report["context"]
    lines.append(
        f"context: TF {ctx['versions']['tensorflow']}, Keras {ctx['versions']['keras']}, {ctx['cpu_count']} CPUs, "
        f"GPU used: {ctx['gpu_used']}, peak RSS {report['peak_rss_mb']:.0f} MB"
    )
    return "\n".join(lines)
