"""Input-pipeline profiling as a library: `profile_input(settings) -> dict`.

`profile_input` checks a `ProfileSettings` and runs its stages in order
(`STAGES`: load the inputs, measure the throughput of each pipeline stage,
then the training step with a model); `scripts.profile_stages` holds what is
measured.

Every stage is measured in the same process, interleaved over repeats after a
warm-up, and reported as images/sec (median, min, max) and as a ratio to the
raw ceiling, so the comparison survives a noisy machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import resource
import statistics
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from augpipe import pipelines
from augpipe.scripts.profile_stages import (  # noqa: F401  (re-exported: earlier versions defined them here)
    GEOMETRIC_OPS,
    VERDICTS,
    StageRunner,
    _summary,
    build_stages,
    check_user_model,
    folder_stages,
    geometric_layer,
    keras_chain,
    load_user_model,
    mapped_stage,
    measure_input_bound,
    raw_stage,
    verdict,
)
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


def load_images(source, synthetic: Optional[int], seed: int = 0, image_size=None,
                channels: Optional[int] = None) -> np.ndarray:
    """The source's uint8 images, or `synthetic` seeded random ones of the same shape.

    `source` is a spec or an already loaded `Source` (then nothing is read again).

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


def context() -> dict:
    from importlib import metadata

    import keras

    def version(name):  # read from the package metadata: importing albumentations just to report it costs
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "albumentations": version("albumentations"),
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


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    """What `profile_input` measures, checked by `checked()`.

    Attributes:
        source: any spec `load_source` accepts; a `folder:DIR` source is
            profiled with its decoding (`folder_stages`), resized to
            `image_size`, and its peer is Keras' folder pipeline.
        synthetic: use N seeded random uint8 images of the source's shape.
        batch_sizes: the batch sizes to time.
        policy: a policy name, JSON spec or `.json` file (`resolve_policy`).
        strength: the one strength every stage runs at.
        repeats, warmup: timed and untimed passes per stage.
        compare: the peers (`PEERS`).
        model: none, mlp, cnn, `FILE.keras` or a builder spec: also time a
            training step fed from memory against one fed by the pipeline.
        images_per_measurement: images per timed pass.
        seed: the seed of every draw.
        jit_compile: XLA for the model's training step (None: Keras' auto).
        image_size, channels, resize: a folder's decoding; for other
            sources, synthetic images of that shape.
    """

    source: str = "mnist-embedded"
    synthetic: Optional[int] = None
    batch_sizes: Sequence[int] = (256,)
    policy: Any = "mnist"
    strength: float = 1.0
    repeats: int = 5
    warmup: int = 2
    compare: Sequence[str] = ("keras", "albumentations")
    model: str = "none"
    images_per_measurement: int = 16384
    seed: int = 0
    jit_compile: Optional[bool] = None
    image_size: Optional[Sequence[int]] = None
    channels: Optional[int] = None
    resize: str = "stretch"

    def checked(self) -> "ProfileSettings":
        """A copy with every setting validated and normalized; a ValueError names the bad one."""
        from augpipe import augment

        if self.model not in MODELS and not (self.model.endswith(".keras") or ":" in self.model):
            raise ValueError(
                f"Unknown model {self.model!r}. Expected none, mlp, cnn, a saved model (FILE.keras), or a function "
                "returning a compiled model (package.module:function or path/to/file.py:function)."
            )
        augment.check_strength(self.strength)
        check_int("repeats", self.repeats)
        check_int("warmup", self.warmup, minimum=0)
        check_int("images_per_measurement", self.images_per_measurement)
        folder = pipelines.sources.is_folder_spec(self.source)
        if folder and (self.model != "none" or self.synthetic is not None):
            raise ValueError("--model and --synthetic work with in-memory sources; profile a folder: source "
                             "without them (its stages include decoding).")
        return dataclasses.replace(self, batch_sizes=_check_batch_sizes(self.batch_sizes),
                                   compare=_check_compare(self.compare), policy=resolve_policy(self.policy))

    @property
    def folder(self) -> bool:
        return pipelines.sources.is_folder_spec(self.source)


@dataclasses.dataclass
class Profile:
    """One profile in progress: the settings, what each stage of `profile_input` left, and the report."""

    settings: ProfileSettings
    progress: Callable[[str], None]
    images: Any = None
    labels: Any = None  # the source's labels (None for synthetic images)
    num_classes: int = 10
    stages: dict = dataclasses.field(default_factory=dict)
    results: dict = dataclasses.field(default_factory=dict)
    model_results: Optional[list] = None


def load_inputs(profile: Profile) -> None:
    """Stage 1: the images and the pipeline stages to time (a folder's include decoding)."""
    s = profile.settings
    if s.folder:
        profile.stages, loaded = folder_stages(s.source, s.image_size, s.channels, s.resize, s.policy, s.strength,
                                               s.compare, s.seed)
        profile.images = loaded.images
    else:
        source = pipelines.load_source(s.source)
        own = s.synthetic is None and s.image_size is None and s.channels is None
        profile.images = source.images if own else load_images(source, s.synthetic, s.seed, s.image_size,
                                                                 s.channels)
        profile.labels, profile.num_classes = (source.labels if own else None), source.num_classes
        if s.model not in MODELS:  # a user's model: checked against the data before anything is timed
            check_user_model(load_user_model(s.model), s.model, profile.images.shape[1:], profile.num_classes)
        profile.stages = build_stages(profile.images, s.policy, s.strength, s.compare, s.seed)


def measure_throughput(profile: Profile) -> None:
    """Stage 2: every stage at every batch size, interleaved over the repeats after a warm-up."""
    s = profile.settings
    for batch_size in s.batch_sizes:
        num_batches = max(2, s.images_per_measurement // batch_size)
        built = {}
        for name, make in profile.stages.items():
            made = make(batch_size)
            built[name] = StageRunner(*made) if isinstance(made, tuple) else StageRunner(made)
        profile.progress(f"batch {batch_size}: warming up {len(built)} stages")
        started = time.perf_counter()
        for runner in built.values():
            for _ in range(max(s.warmup, 1)):
                runner.inside_tf(num_batches)
                runner.from_python(num_batches)
        if batch_size == s.batch_sizes[0]:
            _say_estimate(profile, (time.perf_counter() - started) / max(s.warmup, 1), len(built))
        timings = {way: {name: [] for name in built} for way in ("inside_tf", "from_python")}
        for repeat in range(s.repeats):
            profile.progress(f"batch {batch_size}: repeat {repeat + 1}/{s.repeats}")
            for name, runner in built.items():
                for way in ("inside_tf", "from_python"):
                    seconds = getattr(runner, way)(num_batches)
                    timings[way][name].append(num_batches * batch_size / seconds)
        result = {}
        for way, per_stage in timings.items():
            raw = statistics.median(per_stage["raw"])
            result[way] = {name: _summary(values, raw) for name, values in per_stage.items()}
        result["ratios"] = folder_ratios(result["inside_tf"]) if s.folder else stage_ratios(result["inside_tf"])
        profile.results[batch_size] = result


def _say_estimate(profile: Profile, per_pass: float, num_stages: int) -> None:
    s = profile.settings
    sizes = len(s.batch_sizes)
    # A training-step measurement costs about three stage passes per timed fit (measured with --quick).
    model_passes = 0 if s.model == "none" else 2 * sizes * (2 + min(s.repeats, 3)) * 1.5
    estimate = per_pass * (s.repeats * sizes + max(s.warmup, 1) * (sizes - 1) + model_passes)
    profile.progress(f"estimate: about {estimate:.0f} s more ({num_stages} stages x {sizes} batch size(s) "
                     f"x {s.repeats} repeats; --quick for about a minute)")


def stage_ratios(inside: dict) -> dict:
    """An in-memory profile's ratios: ours over the bare warp and over each peer that ran."""
    ratios = {"ours_full_vs_bare_warp": inside["ours_host"]["median"] / inside["bare_warp"]["median"]}
    pairs = (("ours_geometric_vs_keras_chain", "ours_geometric_host", "keras_chain"),
             ("ours_full_vs_keras_randaugment", "ours_host", "keras_randaugment"),
             ("ours_full_vs_keras_augmix", "ours_host", "keras_augmix"),
             ("ours_geometric_vs_albumentations", "ours_geometric_host", "albumentations"))
    for name, ours, peer in pairs:
        if peer in inside:
            ratios[name] = inside[ours]["median"] / inside[peer]["median"]
    return ratios


def measure_training_step(profile: Profile) -> None:
    """Stage 3 (with a model): the step fed from memory against the pipeline, per placement and batch size."""
    s = profile.settings
    if s.model == "none":
        return
    profile.model_results = []
    for placement in ("device", "host"):
        for batch_size in s.batch_sizes:
            profile.progress(f"model {s.model}: {placement} placement, batch {batch_size}")
            profile.model_results.append({"batch_size": batch_size, **measure_input_bound(
                profile.images, batch_size, s.model, s.policy, s.strength, placement,
                num_batches=max(4, s.images_per_measurement // batch_size // 2), repeats=max(1, min(s.repeats, 3)),
                seed=s.seed, jit_compile=s.jit_compile, labels=profile.labels, num_classes=profile.num_classes)})


STAGES = (load_inputs, measure_throughput, measure_training_step)


def profile_input(settings: Optional[ProfileSettings] = None, *, progress: Optional[Callable[[str], None]] = None,
                  **options) -> dict:
    """Profiles the input pipeline and returns a plain dict.

    Pass a `ProfileSettings`, or its fields as keyword arguments. The
    stages (`STAGES`) run in order on one `Profile`.

    Returns:
        `{"context": ..., "settings": ..., "results": {batch_size: {"inside_tf":
        {stage: summary}, "from_python": {stage: summary}, "ratios": ...}},
        "model": [...]}`, where a summary holds images/sec `median`, `min`,
        `max`, the `repeats` and `ratio_to_raw`, and `model` (with a model)
        holds the input-bound share and verdict for host and device placement.
    """
    if settings is None:
        settings = ProfileSettings(**options)
    elif options:
        settings = dataclasses.replace(settings, **options)
    profile = Profile(settings.checked(), progress or (lambda message: None))
    with _without_retracing_warnings():
        for stage in STAGES:
            stage(profile)
    return report(profile)


class _RetracingFilter(logging.Filter):
    """Every stage traces its own consumer once, in the untimed warm-up; TensorFlow calls that retracing."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _without_retracing_warnings():
    logger, quiet = tf.get_logger(), _RetracingFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def report(profile: Profile) -> dict:
    """The plain-dict report of a finished profile."""
    s, images = profile.settings, profile.images
    return {
        "context": context(),
        "settings": {
            "source": s.source,
            "synthetic": None if s.folder else s.synthetic if s.image_size is None and s.channels is None
            else len(images),
            "resize": s.resize if s.folder else None,
            "image_shape": list(images.shape[1:]),
            "num_images": int(len(images)),
            "batch_sizes": s.batch_sizes,
            "policy": s.policy,
            "strength": s.strength,
            "repeats": s.repeats,
            "warmup": s.warmup,
            "compare": s.compare,
            "model": s.model,
            "jit_compile": s.jit_compile,
            "images_per_measurement": s.images_per_measurement,
        },
        "results": {str(k): v for k, v in profile.results.items()},
        "model": profile.model_results,
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
