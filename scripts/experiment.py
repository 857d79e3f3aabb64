"""The MNIST experiment as a library, in named stages a user can call from Python.

`run_experiment(config)` runs them in order; each can also be called alone:

1. `check_config(config)`: validate every option.
2. `open_run_dir(config)`: create, refuse, replace or reopen the run
   directory; returns the resolved config (on a resume, the saved options)
   and the directory. The given config is never mutated.
3. `load_data(config)`: the source and its stratified, disjoint splits.
4. `build_experiment_model(config, data, strategy)`: `Augment -> backbone`,
   compiled.
5. `build_inputs(...)` and `build_callbacks(...)`: the tf.data pipelines
   and the callbacks, in a working order.
6. `fit(...)`: `model.fit`, with run-safety errors turned into plain ones.
7. `write_report(...)`: evaluate the best model on the held-out test split
   and write `report.json`.

Errors are plain exceptions (`ConfigError`, `RunError`, `Interrupted`) whose
messages name options as `<name>`; `ExperimentError.render` spells them for
the caller: `name` for Python, `--name` for the `run-mnist` command
(`augpipe.scripts.run_mnist`, the click layer).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import json
import math
import os
import pathlib
import platform
import re
import shutil
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from augpipe import augment, callbacks, pipelines
from augpipe.pipelines import distribute
from augpipe.scripts.models import MODELS, build_model
from augpipe.validation import check_int

PLACEMENTS = ("device", "host")
STRATEGIES = ("default", "mirrored", "multiworker")
# Adaptive runs start here: the controller then moves it by 0.05 per epoch.
ADAPTIVE_INITIAL_STRENGTH = 0.3
# Hold it while the first epochs' fast learning dominates the gap signal.
ADAPTIVE_WARMUP_EPOCHS = 2
# Options a resume may change; the others must match the saved run.
RESUMABLE_OVERRIDES = ("epochs", "patience", "eval_every", "quiet", "tensorboard", "jit_compile",
                       "cache", "memory_budget_mb", "cache_dir")
# Options of folder:DIR sources only.
FOLDER_OPTIONS = ("image_size", "channels", "resize", "skip_bad_images", "cache", "memory_budget_mb", "cache_dir")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Every option of the experiment, with the defaults the README's results use."""

    source: str = "mnist"
    value_range: Optional[tuple] = None  # npz: the range of float images (default 0-255)
    layout: Optional[str] = None  # npz: channels_last (default) or channels_first
    # folder:DIR sources (see pipelines.load_folder)
    image_size: Optional[tuple] = None
    channels: Optional[int] = None  # None: 3 if any file has colour, else 1
    resize: Optional[str] = None  # stretch (default), crop or pad
    skip_bad_images: bool = False
    cache: Optional[str] = None  # auto (default), memory, stream or file
    memory_budget_mb: Optional[int] = None  # default 0: decode every epoch
    cache_dir: Optional[str] = None
    download: bool = False
    model: str = "cnn"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 2e-3
    policy: str = "mnist"
    strength: str = "adaptive"
    placement: str = "device"
    mixup: bool = False
    eval_every: int = 5
    patience: Optional[int] = None
    seed: int = 0
    deterministic: bool = False
    jit_compile: Optional[bool] = None  # XLA for the training step: None is Keras' "auto" (on for a GPU, off for a CPU)
    run_dir: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    tensorboard: bool = True
    quiet: bool = False
    data_dir: Optional[str] = None
    # Distribution (see pipelines.distribute)
    strategy: str = "default"
    data_service: Optional[str] = None
    local_data_service: int = 0
    local_data_service_on_all_interfaces: bool = False

    def options(self) -> dict:
        return dataclasses.asdict(self)


_OPTION = re.compile(r"<(" + "|".join(f.name for f in dataclasses.fields(ExperimentConfig)) + r")>")


class ExperimentError(Exception):
    """Base of the experiment's errors. Options appear in the message as `<name>`."""

    def __init__(self, message: str):
        self.template = message
        super().__init__(self.render())

    def render(self, spell: Callable[[str], str] = lambda name: f"`{name}`") -> str:
        """The message with each `<option>` spelled by `spell` (the CLI passes `--option-name`)."""
        return _OPTION.sub(lambda match: spell(match.group(1)), self.template)


class ConfigError(ExperimentError, ValueError):
    """A bad option or combination of options (the command exits 2)."""


class RunError(ExperimentError):
    """A runtime failure with a one-line reason (the command exits 1)."""


class Interrupted(ExperimentError):
    """The run stopped on Ctrl-C at a safe point; the backup is kept. `run_dir` says where."""

    def __init__(self, run_dir):
        self.run_dir = str(run_dir)
        super().__init__(f"interrupted; the backup in {self.run_dir!r} is kept")


@dataclasses.dataclass
class Data:
    """What `load_data` returns: the source and its splits."""

    source: pipelines.Source
    splits: pipelines.Splits


@dataclasses.dataclass
class ModelParts:
    """What `build_experiment_model` returns."""

    model: keras.Model
    augment_layer: augment.Augment  # owns the strength, in the model or on the host
    loss: keras.losses.Loss
    metrics: list


@dataclasses.dataclass
class Inputs:
    """What `build_inputs` returns."""

    train: distribute.TrainingInput
    val: tf.data.Dataset
    test: tf.data.Dataset
    initial_epoch: int


# ----------------------------------------------------------------------------
# Validation


def parse_strength(spec: str):
    """`adaptive`, `off`, `constant:X` or a schedule spec -> (kind, initial, schedule)."""
    if spec == "adaptive":
        return "adaptive", ADAPTIVE_INITIAL_STRENGTH, None
    if spec == "off":
        return "off", 0.0, None
    try:
        schedule = callbacks.parse_schedule(spec)
    except ValueError as error:
        raise ConfigError(f"Invalid <strength> {spec!r}: {error} Or use 'adaptive' or 'off'.") from None
    return "schedule", schedule(0), schedule


def check_config(config: ExperimentConfig) -> None:
    """Stage 1: raises `ConfigError` for any bad option or combination."""
    if config.model not in MODELS:
        raise ConfigError(f"Unknown <model> {config.model!r}. Expected one of: {', '.join(MODELS)}.")
    if config.placement not in PLACEMENTS:
        raise ConfigError(f"Unknown <placement> {config.placement!r}. Expected one of: {', '.join(PLACEMENTS)}.")
    try:
        augment.get_policy(config.policy)
    except ValueError as error:
        raise ConfigError(f"<policy>: {error}") from None
    parse_strength(config.strength)
    if not pipelines.sources.is_folder_spec(config.source):
        given = [name for name in FOLDER_OPTIONS if getattr(config, name) not in (None, False)]
        if given:
            raise ConfigError(
                f"{', '.join(f'<{name}>' for name in given)} apply only to a <source> folder:DIR (image files of "
                f"any size). Received them with <source> {config.source!r}: drop them."
            )
    elif config.image_size is None:
        raise ConfigError(f"<source> {config.source!r} needs <image_size>: every image is resized to it (e.g. 64 64).")
    for name in ("epochs", "batch_size", "eval_every"):
        try:
            check_int(name, getattr(config, name))
        except ValueError as error:
            raise ConfigError(f"<{name}>: {error}") from None
    if not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
        raise ConfigError(f"<learning_rate> must be > 0. Received: {config.learning_rate!r}.")
    if config.patience is not None and config.patience < 1:
        raise ConfigError(f"<patience> must be a positive integer. Received: {config.patience!r}.")
    if config.resume and config.overwrite:
        raise ConfigError("<resume> and <overwrite> contradict each other: pick one.")
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"Unknown <strategy> {config.strategy!r}. Expected one of: {', '.join(STRATEGIES)}.")
    if config.data_service and config.local_data_service:
        raise ConfigError("<data_service> and <local_data_service> contradict each other: pick one.")
    if config.data_service:
        try:
            distribute.parse_service_address(config.data_service)
        except ValueError as error:
            raise ConfigError(f"<data_service>: {error}") from None
    if config.local_data_service and not config.local_data_service_on_all_interfaces:
        raise ConfigError(
            f"<local_data_service> refused: {distribute.ALL_INTERFACES_RISK} Add "
            "<local_data_service_on_all_interfaces> to run the demo anyway, only on a machine whose "
            "ports other hosts cannot reach (see the README's security section)."
        )
    if (config.data_service or config.local_data_service) and (config.placement == "host" or config.mixup):
        raise ConfigError(
            "The tf.data service cannot run host-side augmentation or MixUp/CutMix: its workers "
            "cannot read the trainer's strength and probability variables. Use <placement> device "
            "and no <mixup> with <data_service> or <local_data_service>."
        )


# ----------------------------------------------------------------------------
# Stage 2: the run directory


def default_run_dir() -> pathlib.Path:
    """`runs/<timestamp>-<pid>`: two runs started in the same second never share a default name."""
    return pathlib.Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def is_augpipe_run(run_dir: pathlib.Path) -> bool:
    """True when `run_dir/config.json` is one augpipe wrote: its options, and versions naming augpipe."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(saved, dict)
        and isinstance(saved.get("options"), dict)
        and isinstance(saved.get("versions"), dict)
        and "augpipe" in saved["versions"]
        and "splits" in saved
    )


def _lock_path(run_dir: pathlib.Path) -> pathlib.Path:
    # Beside the directory, not in it: replacing the directory must not drop the lock.
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def lock_run_dir(run_dir: pathlib.Path):
    """Holds an exclusive lock on `run_dir` for one run (an flock, which a dead process releases).

    Raises `ConfigError` naming the process that holds it.
    """
    path = _lock_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as error:
        raise RunError(f"cannot use <run_dir> {str(run_dir)!r}: {_describe(error)}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"Run directory {str(run_dir)!r} is in use by process {holder}. Wait for it to end, "
                "or choose another <run_dir>."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def _describe(error: OSError) -> str:
    """One line for an OSError: what failed, on which file."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    return f"{reason}{where}"


def resolve_resume(config: ExperimentConfig, run_dir: pathlib.Path, explicit: Optional[set] = None) -> ExperimentConfig:
    """On a resume, the saved options, except those in `RESUMABLE_OVERRIDES` given explicitly."""
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise ConfigError(
            f"<resume>: {str(run_dir)!r} has no config.json, so there is no run to resume. Start it without <resume>."
        )
    backup = run_dir / "backup"
    if (backup / "latest.weights.h5").exists() and not (backup / "commit.json").exists():
        raise ConfigError(
            f"<resume>: {str(run_dir)!r} was written by an earlier augpipe (a Keras BackupAndRestore backup, "
            "no commit marker), which this version cannot continue without losing its log. Finish it with "
            "the version that started it, or start a new run."
        )
    try:
        options = json.loads(saved.read_text())["options"]
    except (OSError, ValueError, KeyError) as error:
        raise RunError(f"cannot read {str(saved)!r} ({type(error).__name__}: {error}).") from None
    explicit = explicit or set()
    changes = {}
    for key, value in options.items():
        if key in ("run_dir", "resume", "overwrite") or not hasattr(config, key):
            continue
        given = getattr(config, key)
        if key in explicit and key not in RESUMABLE_OVERRIDES and _as_saved(given) != value:
            raise ConfigError(
                f"<resume> cannot change <{key}> (saved: {value!r}, given: {given!r}). "
                f"Only {', '.join(f'<{name}>' for name in RESUMABLE_OVERRIDES)} may change."
            )
        if key not in explicit:
            changes[key] = value
    return dataclasses.replace(config, **changes)


def _as_saved(value):
    """An option as config.json holds it (tuples are JSON lists)."""
    return list(value) if isinstance(value, tuple) else value


def open_run_dir(config: ExperimentConfig, explicit: Optional[set] = None) -> tuple:
    """Stage 2: creates, refuses, replaces or reopens the run directory.

    Returns `(config, run_dir)`: a new config with `run_dir` filled in and, on
    a resume, the saved options (except `RESUMABLE_OVERRIDES` named in
    `explicit`). The given config is not changed.
    """
    run_dir = pathlib.Path(config.run_dir) if config.run_dir else default_run_dir()
    config = dataclasses.replace(config, run_dir=str(run_dir))
    if config.resume:
        return resolve_resume(config, run_dir, explicit), run_dir
    if run_dir.is_symlink() and config.overwrite:
        # Deleting through a link would empty a directory somewhere else.
        raise ConfigError(
            f"<overwrite> refused: {str(run_dir)!r} is a symbolic link (to {str(run_dir.resolve())!r}). "
            "augpipe never deletes through a link: remove the link, or give the real directory as <run_dir>."
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"<run_dir> {str(run_dir)!r} is a file, not a directory. Choose another <run_dir>.")
    blocked = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ConfigError(f"<run_dir> {str(run_dir)!r} is below {str(blocked)!r}, which is a file. "
                          "Choose another <run_dir>.")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise ConfigError(
                f"Run directory {str(run_dir)!r} already exists. Pass <resume> to continue it, "
                "<overwrite> to replace it, or choose another <run_dir>."
            )
        if not is_augpipe_run(run_dir):
            raise ConfigError(
                f"<overwrite> refused: {str(run_dir)!r} has no config.json written by augpipe, so it does "
                "not look like a run directory. Remove it yourself or choose another <run_dir>."
            )
    return config, run_dir


def prepare_run_dir(config: ExperimentConfig, run_dir: pathlib.Path) -> bool:
    """Stage 2b, once the data is loaded: makes the directory ready for the run's first file.

    With `overwrite`, the old run is replaced only now (moved aside with one
    rename, then removed), so a run that fails earlier (a missing data file,
    say) leaves it untouched. Returns True if the directory was created here.
    """
    try:
        if config.overwrite and not config.resume and run_dir.is_dir() and any(run_dir.iterdir()):
            aside = run_dir.parent / f".{run_dir.name}.replaced-{os.getpid()}"
            os.replace(run_dir, aside)
            # rmtree unlinks symbolic links inside the directory; it never follows them out of it.
            shutil.rmtree(aside)
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot prepare <run_dir> {str(run_dir)!r}: {_describe(error)}") from None
    return created


def package_versions() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("augpipe", "tensorflow", "keras", "numpy", "tensorflow-datasets", "albumentations", "click", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def read_log(path) -> list:
    """The rows of a run's `log.csv` as dicts (empty when there is none yet)."""
    if not pathlib.Path(path).is_file():
        return []
    with open(path) as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------
# Stage 3: data


def load_data(config: ExperimentConfig) -> Data:
    """Stage 3: loads the source and makes its seeded, stratified, disjoint splits."""
    folder = {}
    if pipelines.sources.is_folder_spec(config.source):
        folder = dict(
            image_size=config.image_size, channels=config.channels, resize=config.resize,
            on_error="skip" if config.skip_bad_images else None, cache=config.cache, cache_dir=config.cache_dir,
            memory_budget=None if config.memory_budget_mb is None else int(config.memory_budget_mb) << 20,
        )
    try:
        source = pipelines.load_source(config.source, data_dir=config.data_dir, download=config.download,
                                       value_range=config.value_range, layout=config.layout, **folder)
        if source.num_classes < 2:
            raise ValueError(
                f"The source has {source.num_classes} class ({', '.join(map(repr, source.class_names))}): a "
                "classifier needs at least 2. For a folder source, put each class's images in its own subfolder."
            )
        splits = pipelines.make_splits(source, seed=config.seed)
        splits.check_disjoint()
    except (ValueError, FileNotFoundError, ConnectionError, OSError) as error:
        raise RunError(str(error)) from None
    return Data(source, splits)


def write_config(config: ExperimentConfig, run_dir: pathlib.Path, data: Data) -> None:
    """Writes `config.json` for a new run, or records a resume (what it changed) in it."""
    path = run_dir / "config.json"
    if not config.resume:
        payload = {
            "options": config.options(),
            "versions": package_versions(),
            "provenance": data.source.provenance,
            "splits": data.splits.summary(),
        }
        callbacks.atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default))
        return
    saved = json.loads(path.read_text())
    if saved.get("splits", {}).get("train", {}).get("fingerprint") != data.splits.train.fingerprint:
        raise RunError(
            "<resume>: the data no longer matches the saved run (train fingerprint changed). "
            "Resume with the same <source> and <seed>."
        )
    changed = {k: v for k, v in config.options().items()
               if saved["options"].get(k) != _as_saved(v) and k != "resume"}
    saved.setdefault("resumes", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "changed": changed})
    callbacks.atomic_write_text(path, json.dumps(saved, indent=2, default=_json_default))


# ----------------------------------------------------------------------------
# Stage 4: model


def build_experiment_model(config: ExperimentConfig, data: Data, strategy=None) -> ModelParts:
    """Stage 4: `Input -> Augment -> backbone`, compiled with an LR multiplier schedule.

    With host placement the same `Augment` (placement `host`) is in the
    model, where it only converts, and the pipeline runs it.
    """
    strategy = strategy or tf.distribute.get_strategy()
    kind, initial_strength, _ = parse_strength(config.strength)
    policy = "none" if kind == "off" else config.policy
    with strategy.scope():
        aug_layer = augment.Augment(policy, strength=initial_strength, seed=config.seed, name="augment",
                                    placement=config.placement)
        model = build_model(config.model, data.source.image_shape, data.source.num_classes, aug_layer)
        loss, metrics = _loss_and_metrics(config.mixup)
        optimizer = keras.optimizers.Adam(callbacks.MultiplierSchedule(config.learning_rate))
        # None is Keras' "auto": XLA on a GPU, not on a CPU. Augment supports
        # XLA (its static-shape path), so it never turns XLA off.
        jit_compile = "auto" if config.jit_compile is None else config.jit_compile
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)
    return ModelParts(model, aug_layer, loss, metrics)


def _loss_and_metrics(one_hot: bool) -> tuple:
    """Fresh loss and metric objects (never shared between two compiled models)."""
    if one_hot:
        return (keras.losses.CategoricalCrossentropy(from_logits=True),
                [keras.metrics.CategoricalAccuracy(name="accuracy")])
    return (keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


# ----------------------------------------------------------------------------
# Stage 5: inputs and callbacks


def build_inputs(config: ExperimentConfig, data: Data, parts: ModelParts, strategy=None,
                 initial_epoch: int = 0) -> Inputs:
    """Stage 5a: the training input (one device, a strategy or the tf.data service), val and test."""
    strategy = strategy or tf.distribute.get_strategy()
    host = []
    if config.mixup:
        host.append(augment.MixUpCutMix(num_classes=data.source.num_classes, seed=config.seed))
    if config.placement == "host":
        host.append(parts.augment_layer)
    try:
        train = distribute.build_training_input(
            data.splits.train,
            strategy=strategy,
            batch_size=config.batch_size,
            seed=config.seed,
            host_augment=host or None,
            one_hot=config.mixup,
            data_service=config.data_service,
            local_data_service=config.local_data_service,
            local_data_service_on_all_interfaces=config.local_data_service_on_all_interfaces,
            initial_epoch=initial_epoch,
        )
    except (ValueError, ConnectionError) as error:
        raise RunError(str(error)) from None
    val = pipelines.build_pipeline(data.splits.val, batch_size=config.batch_size, training=False, one_hot=config.mixup)
    test = pipelines.build_pipeline(data.splits.test, batch_size=config.batch_size, training=False, one_hot=config.mixup)
    return Inputs(train, val, test, initial_epoch)


def build_callbacks(config: ExperimentConfig, run_dir: pathlib.Path, parts: ModelParts, inputs: Inputs,
                    schedule_epochs: Optional[int] = None) -> list:
    """Stage 5b: every callback of a run, in a working order.

    Epoch sync and LR control first, then the backup (so a resume restores
    before the controllers read their state), the strength controller,
    run safety, early stopping, best-model checkpointing (its threshold in
    its state), the scheduled test evaluation, the loggers, so they see
    every key the others wrote, and the epoch commit last.

    `schedule_epochs` is the length the learning-rate schedule was laid out
    for (the run's original `epochs`; a resume that extends a run keeps it,
    so the cosine keeps its shape and the rate stays at its final value).
    """
    backup_dir = run_dir / "backup"
    kind, _, schedule = parse_strength(config.strength)
    found = [inputs.train.epoch_sync] if inputs.train.epoch_sync is not None else []
    horizon = schedule_epochs or config.epochs
    lr_control = callbacks.LearningRateControl(
        warmup_epochs=min(2, max(horizon - 1, 0)),
        decay="cosine",
        total_epochs=horizon,
        min_multiplier=0.02,
        state_dir=backup_dir,
    )
    found += [
        lr_control,
        callbacks.EpochBackup(backup_dir),
        callbacks.RandomStateBackup(backup_dir),
    ]
    if kind == "adaptive":
        controller = callbacks.AdaptiveStrength(parts.augment_layer, warmup_epochs=ADAPTIVE_WARMUP_EPOCHS,
                                                state_dir=backup_dir)
        lr_control.strength_controller = controller
        found.append(controller)
    elif kind == "schedule":
        found.append(callbacks.StrengthSchedule(parts.augment_layer, schedule))
    else:
        found.append(callbacks.StrengthSchedule(parts.augment_layer, callbacks.constant(0.0)))
    found += [callbacks.StopOnNonFiniteLoss(), callbacks.GracefulInterrupt(verbose=0 if config.quiet else 1)]
    if config.patience:
        found.append(callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience,
                                             state_dir=backup_dir))
    # Its threshold is part of its state, so a resume keeps the committed one exactly.
    checkpoint = callbacks.BestModelCheckpoint(run_dir / "best.keras", monitor="val_accuracy", mode="max",
                                               state_dir=backup_dir)
    found += [
        checkpoint,
        callbacks.ScheduledEvaluation(inputs.test, every=config.eval_every, state_dir=backup_dir),
        callbacks.ThroughputMonitor(batch_size=config.batch_size),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
    ]
    if config.tensorboard:
        found.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))
        # The same validation images at the current strength, every evaluation period.
        sample = next(iter(inputs.val.unbatch().batch(8).take(1)))[0].numpy()
        found.append(callbacks.AugmentationImages(parts.augment_layer, sample, run_dir / "tensorboard",
                                                  every=config.eval_every))
    found.append(callbacks.TrainingCurves(run_dir / "curves.png", state_dir=backup_dir))
    if not config.quiet:
        found.append(callbacks.EpochLine(config.epochs))
    # Last: epoch k exists once everything above has written its files for it.
    found.append(callbacks.EpochCommit(backup_dir, checkpoint))
    return found


# ----------------------------------------------------------------------------
# Stage 6: fit


def fit(config: ExperimentConfig, run_dir: pathlib.Path, parts: ModelParts, inputs: Inputs,
        callback_list: list, strategy=None) -> keras.callbacks.History:
    """Stage 6: `model.fit`; a non-finite loss becomes `RunError`, Ctrl-C becomes `Interrupted`."""
    strategy = strategy or tf.distribute.get_strategy()
    train = inputs.train
    try:
        with distribute.multiworker_fit(parts.model, strategy):
            history = parts.model.fit(
                train.dataset,
                validation_data=inputs.val,
                epochs=config.epochs,
                callbacks=callback_list,
                verbose=0,
                shuffle=False,
                steps_per_epoch=train.steps_per_epoch,
            )
    except callbacks.NonFiniteLossError as error:
        raise RunError(
            f"loss became NaN ({error}); the run stopped and kept the last good backup and "
            f"best model in {str(run_dir)!r}. Lower <learning_rate> and resume or start again."
        ) from None
    except KeyboardInterrupt:
        raise Interrupted(run_dir) from None
    finally:
        if train.service is not None:
            train.service.stop()
    if any(isinstance(c, callbacks.GracefulInterrupt) and c.requested for c in callback_list):
        raise Interrupted(run_dir)
    return history


# ----------------------------------------------------------------------------
# Stage 7: report


def write_report(config: ExperimentConfig, run_dir: pathlib.Path, data: Data, parts: ModelParts,
                 inputs: Inputs, history: keras.callbacks.History, wall_time_s: float) -> dict:
    """Stage 7: evaluates the best model (fresh metric objects) on the test split; writes `report.json`."""
    best_path = run_dir / "best.keras"
    if not best_path.is_file():
        parts.model.save(best_path)
    best = load_best_model(best_path)
    loss, metrics = _loss_and_metrics(config.mixup)
    best.compile(loss=loss, metrics=metrics)
    test_results = best.evaluate(inputs.test, verbose=0, return_dict=True)
    rows = read_log(run_dir / "log.csv")
    best_row = max(rows, key=lambda r: float(r.get("val_accuracy", "nan") or "nan")) if rows else {}
    throughput = [float(r["images_per_sec"]) for r in rows if r.get("images_per_sec") not in (None, "", "nan")]
    throughput = [v for v in throughput if math.isfinite(v)]
    report = {
        "test_loss": float(test_results["loss"]),
        "test_accuracy": float(test_results["accuracy"]),
        "best_epoch": int(best_row["epoch"]) + 1 if best_row else None,
        "best_val_accuracy": _finite_or_none(best_row.get("val_accuracy", "nan")) if best_row else None,
        "epochs_run": len(rows),
        "epochs_this_session": len(history.epoch),
        "wall_time_s": round(wall_time_s, 2),
        "images_per_sec": round(float(np.median(throughput)), 1) if throughput else None,
        # The strength the last epoch trained with, and the one the next epoch would use.
        "final_strength": _last_strength(rows, parts),
        "next_strength": float(parts.augment_layer.strength.numpy()),
        "provenance": data.source.provenance,
        "splits": {s.name: {"size": len(s), "fingerprint": s.fingerprint} for s in data.splits},
        "options": config.options(),
    }
    callbacks.atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=_json_default))
    return report


def load_best_model(path) -> keras.Model:
    """Loads a `.keras` file with Keras' safe mode on (augpipe never turns it off).

    Safe mode refuses to deserialize Python code (a `Lambda` layer's
    function), which could run anything; such a file is refused with a
    `RunError`.
    """
    try:
        return keras.models.load_model(path, safe_mode=True)
    except ValueError as error:
        if "safe_mode" not in str(error) and "Lambda" not in str(error):
            raise
        raise RunError(
            f"refused to load {str(path)!r}: it holds Python code (a Lambda layer), which Keras' safe mode "
            "does not deserialize and augpipe never enables. Rebuild the model without Lambda layers."
        ) from None


# ----------------------------------------------------------------------------
# All stages


def run_experiment(config: ExperimentConfig, *, explicit: Optional[set] = None,
                   log: Optional[Callable[[str], None]] = None) -> tuple:
    """Runs every stage in order; returns `(report, run_dir)`.

    `explicit` names the options the caller set on purpose (a resume keeps
    the saved value of every other one). `log` receives progress lines.

    Raises:
        ConfigError: bad options.
        RunError: a runtime failure with a one-line reason.
        Interrupted: Ctrl-C at a safe point; the backup is kept.
    """
    log = log or (lambda message: None)
    check_config(config)
    config, run_dir = open_run_dir(config, explicit)
    check_config(config)
    started = time.perf_counter()
    with lock_run_dir(run_dir):
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        data = load_data(config)
        log(f"data: {data.source.provenance}")
        log(f"splits: train {len(data.splits.train)}, val {len(data.splits.val)}, test {len(data.splits.test)}")
        created = prepare_run_dir(config, run_dir)
        try:
            write_config(config, run_dir, data)
            strategy = distribute.make_strategy(config.strategy)
            parts = build_experiment_model(config, data, strategy)
            # A kill may have left files of an epoch that was never committed: drop them.
            initial_epoch = callbacks.roll_back_to_commit(run_dir) if config.resume else 0
            inputs = build_inputs(config, data, parts, strategy, initial_epoch=initial_epoch)
            if inputs.train.service is not None:
                log(f"tf.data service: dispatcher {inputs.train.service.target} with "
                    f"{config.local_data_service} worker(s)")
            horizon = original_epochs(run_dir) if config.resume else config.epochs
            if horizon != config.epochs:
                log(f"resume: {config.epochs} epochs instead of {horizon}; the learning-rate schedule keeps its "
                    f"{horizon}-epoch shape (after epoch {horizon} the rate stays at its final value)")
            callback_list = build_callbacks(config, run_dir, parts, inputs, schedule_epochs=horizon)
            history = fit(config, run_dir, parts, inputs, callback_list, strategy)
            report = write_report(config, run_dir, data, parts, inputs, history, time.perf_counter() - started)
        except OSError as error:
            _forget_if_nothing_trained(run_dir, created)
            raise RunError(f"cannot write the run in {str(run_dir)!r}: {_describe(error)}") from None
        except Interrupted:
            raise  # its message offers a resume: keep what is there
        except BaseException:
            _forget_if_nothing_trained(run_dir, created)
            raise
    return report, run_dir


def original_epochs(run_dir: pathlib.Path) -> int:
    """The `epochs` a run was started with (its config.json), which a resume may extend."""
    return int(json.loads((run_dir / "config.json").read_text())["options"]["epochs"])


def _forget_if_nothing_trained(run_dir: pathlib.Path, created: bool) -> None:
    """A run this call created that failed before its first epoch leaves nothing that blocks a rerun."""
    if created and not (run_dir / "backup" / "commit.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)


def _last_strength(rows: list, parts: ModelParts) -> float:
    value = rows[-1].get("aug_strength") if rows else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(parts.augment_layer.strength.numpy())


def summary_table(report: dict) -> str:
    rows = [
        ("test accuracy (best model)", f"{report['test_accuracy']:.4f}"),
        ("test loss (best model)", f"{report['test_loss']:.4f}"),
        ("best epoch (val)", str(report["best_epoch"])),
        ("epochs run", str(report["epochs_run"])),
        ("strength (last epoch)", f"{report['final_strength']:.2f}"
         + (f" (next: {report['next_strength']:.2f})"
            if abs(report.get("next_strength", report["final_strength"]) - report["final_strength"]) > 1e-9 else "")),
        ("images/sec (median)", str(report["images_per_sec"])),
        ("wall time (s)", f"{report['wall_time_s']:.1f}"),
        ("data", report["provenance"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
