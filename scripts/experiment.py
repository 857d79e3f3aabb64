"""The MNIST experiment as a library: config, run directory, model, callbacks, report.

`augpipe.scripts.run_mnist` is the click layer over `run_experiment`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import platform
import shutil
import signal
import sys
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from augpipe import augment
from augpipe import callbacks
from augpipe import pipelines

MODELS = ("cnn", "mlp")
PLACEMENTS = ("device", "host")
# Adaptive runs start here: the controller then moves it by 0.05 per epoch.
ADAPTIVE_INITIAL_STRENGTH = 0.3
# Hold it while the first epochs' fast learning dominates the gap signal.
ADAPTIVE_WARMUP_EPOCHS = 2
# Options a resume may change; the others must match the saved run.
RESUMABLE_OVERRIDES = ("epochs", "patience", "eval_every", "quiet", "tensorboard")


class RunError(Exception):
    """A runtime failure with a one-line reason (exit code 1)."""


class UsageError(Exception):
    """A bad option or combination of options (exit code 2)."""


class Interrupted(Exception):
    """The run stopped on Ctrl-C at a safe point; the backup is kept."""


@dataclasses.dataclass
class ExperimentConfig:
    """Every option of `run-mnist`, with the defaults the README's results use."""

    source: str = "mnist"
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

    def options(self) -> dict:
        return dataclasses.asdict(self)


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
        raise UsageError(
            f"Invalid --strength {spec!r}: {error} Or use 'adaptive' or 'off'."
        ) from None
    return "schedule", schedule(0), schedule


def validate(config: ExperimentConfig) -> None:
    if config.model not in MODELS:
        raise UsageError(f"Unknown --model {config.model!r}. Expected one of: {', '.join(MODELS)}.")
    if config.placement not in PLACEMENTS:
        raise UsageError(f"Unknown --placement {config.placement!r}. Expected one of: {', '.join(PLACEMENTS)}.")
    try:
        augment.get_policy(config.policy)
    except ValueError as error:
        raise UsageError(f"--policy: {error}") from None
    parse_strength(config.strength)
    for name in ("epochs", "batch_size", "eval_every"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer. Received: {value!r}.")
    if not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
        raise UsageError(f"--learning-rate must be > 0. Received: {config.learning_rate!r}.")
    if config.patience is not None and config.patience < 1:
        raise UsageError(f"--patience must be a positive integer. Received: {config.patience!r}.")
    if config.resume and config.overwrite:
        raise UsageError("--resume and --overwrite contradict each other: pick one.")
    if config.strategy not in ("default", "mirrored", "multiworker"):
        raise UsageError(f"Unknown --strategy {config.strategy!r}. Expected default, mirrored or multiworker.")
    if config.data_service and config.local_data_service:
        raise UsageError("--data-service and --local-data-service contradict each other: pick one.")
    if config.data_service:
        from augpipe.pipelines import distribute

        try:
            distribute.parse_service_address(config.data_service)
        except ValueError as error:
            raise UsageError(f"--data-service: {error}") from None
    if (config.data_service or config.local_data_service) and (config.placement == "host" or config.mixup):
        raise UsageError(
            "The tf.data service cannot run host-side augmentation or MixUp/CutMix: its workers "
            "cannot read the trainer's strength and probability variables. Use --placement device "
            "and --no-mixup with --data-service/--local-data-service."
        )


# ----------------------------------------------------------------------------
# Run directory


def default_run_dir() -> pathlib.Path:
    return pathlib.Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def prepare_run_dir(config: ExperimentConfig, explicit: Optional[set] = None) -> pathlib.Path:
    """Creates, refuses, replaces or reopens the run directory; returns its path.

    On `resume`, the saved options replace the given ones, except those in
    `RESUMABLE_OVERRIDES` that were passed explicitly (`explicit`).
    """
    run_dir = pathlib.Path(config.run_dir) if config.run_dir else default_run_dir()
    config.run_dir = str(run_dir)
    saved = run_dir / "config.json"
    if config.resume:
        if not saved.is_file():
            raise UsageError(
                f"--resume: {str(run_dir)!r} has no config.json, so there is no run to resume. "
                "Start it without --resume."
            )
        options = json.loads(saved.read_text())["options"]
        explicit = explicit or set()
        for key, value in options.items():
            if key in ("run_dir", "resume", "overwrite"):
                continue
            if key in explicit and key not in RESUMABLE_OVERRIDES and getattr(config, key) != value:
                raise UsageError(
                    f"--resume cannot change --{key.replace('_', '-')} (saved: {value!r}, given: "
                    f"{getattr(config, key)!r}). Only {', '.join(RESUMABLE_OVERRIDES)} may change."
                )
            if key not in explicit and hasattr(config, key):
                setattr(config, key, value)
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise UsageError(
                f"Run directory {str(run_dir)!r} already exists. Pass --resume to continue it, "
                "--overwrite to replace it, or choose another --run-dir."
            )
        if not saved.is_file():
            raise UsageError(
                f"--overwrite refused: {str(run_dir)!r} has no config.json, so it does not look "
                "like a run directory. Remove it yourself or choose another --run-dir."
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def package_versions() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("augpipe", "tensorflow", "keras", "numpy", "tensorflow-datasets", "albumentations", "click", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# ----------------------------------------------------------------------------
# Model


def build_backbone(kind: str, num_classes: int) -> list:
    L = keras.layers
    if kind == "mlp":
        return [L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(num_classes)]
    return [
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dropout(0.3),
        L.Dense(128, activation="relu"),
        L.Dropout(0.3),
        L.Dense(num_classes),
    ]


def build_model(kind: str, input_shape, num_classes: int, augment_layer, input_dtype="uint8") -> keras.Model:
    """`Input -> Augment -> backbone -> logits`."""
    inputs = keras.Input(input_shape, dtype=input_dtype, name="images")
    x = augment_layer(inputs)
    for layer in build_backbone(kind, num_classes):
        x = layer(x)
    return keras.Model(inputs, x, name=f"mnist_{kind}")


# ----------------------------------------------------------------------------
# Callbacks specific to the command


class NanLossError(RuntimeError):
    pass


class StopOnNan(keras.callbacks.Callback):
    """Aborts at the first NaN loss, before any epoch-end backup can save NaN weights."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NanLossError(f"batch {batch + 1}")


class GracefulInterrupt(keras.callbacks.Callback):
    """First Ctrl-C: finish the epoch (a safe point with a backup), then stop."""

    def __init__(self):
        super().__init__()
        self.requested = False
        self._previous = None

    def on_train_begin(self, logs=None):
        self.requested = False
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupt: stopping after this epoch (Ctrl-C again to stop now).", file=sys.stderr)

    def on_epoch_end(self, epoch, logs=None):
        if self.requested:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class EpochLine(keras.callbacks.Callback):
    """One progress line per epoch on stderr."""

    def __init__(self, epochs_total: int, stream=None):
        super().__init__()
        self.epochs_total = epochs_total
        self.stream = stream or sys.stderr

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        acc_key = "accuracy" if "accuracy" in logs else "categorical_accuracy"

        def pair(prefix):
            loss, acc = logs.get(f"{prefix}loss"), logs.get(f"{prefix}{acc_key}")
            if loss is None or not math.isfinite(float(loss)):
                return None
            return f"{float(loss):.4f}/{float(acc):.4f}"

        parts = [f"epoch {epoch + 1:>3}/{self.epochs_total}", f"loss/acc {pair('')}"]
        if pair("val_"):
            parts.append(f"val {pair('val_')}")
        if pair("test_"):
            parts.append(f"test {pair('test_')}")
        if "aug_strength" in logs:
            parts.append(f"strength {float(logs['aug_strength']):.2f}")
        if "learning_rate" in logs:
            parts.append(f"lr {float(logs['learning_rate']):.2e}")
        if "images_per_sec" in logs and math.isfinite(float(logs["images_per_sec"])):
            parts.append(f"{float(logs['images_per_sec']):.0f} img/s")
        print(" | ".join(parts), file=self.stream, flush=True)


# ----------------------------------------------------------------------------
# The run


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def run_experiment(config: ExperimentConfig, *, explicit: Optional[set] = None, log: Callable[[str], None] = None) -> dict:
    """Runs the experiment described by `config` and returns the report dict.

    Raises:
        UsageError: bad options (exit code 2).
        RunError: a runtime failure with a one-line reason (exit code 1).
        Interrupted: Ctrl-C at a safe point; the backup is kept.
    """
    log = log or (lambda message: None)
    validate(config)
    run_dir = prepare_run_dir(config, explicit)
    validate(config)
    started = time.perf_counter()
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)

    try:
        source = pipelines.load_source(config.source, data_dir=config.data_dir, download=config.download)
        splits = pipelines.make_splits(source, seed=config.seed)
        splits.check_disjoint()
    except (ValueError, FileNotFoundError, ConnectionError, OSError) as error:
        raise RunError(str(error)) from None
    log(f"data: {source.provenance}")
    log(f"splits: train {len(splits.train)}, val {len(splits.val)}, test {len(splits.test)}")

    config_path = run_dir / "config.json"
    if not config.resume:
        config_payload = {
            "options": config.options(),
            "versions": package_versions(),
            "provenance": source.provenance,
            "splits": splits.summary(),
        }
        callbacks.atomic_write_text(config_path, json.dumps(config_payload, indent=2, default=_json_default))
    else:
        saved = json.loads(config_path.read_text())
        if saved.get("splits", {}).get("train", {}).get("fingerprint") != splits.train.fingerprint:
            raise RunError(
                "--resume: the data no longer matches the saved run (train fingerprint changed). "
                "Resume with the same --source and --seed."
            )
        # Keep the original options and record what each resume changed.
        changed = {k: v for k, v in config.options().items() if saved["options"].get(k) != v and k != "resume"}
        saved.setdefault("resumes", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "changed": changed})
        callbacks.atomic_write_text(config_path, json.dumps(saved, indent=2, default=_json_default))

    from augpipe.pipelines import distribute

    strategy = distribute.make_strategy(config.strategy)
    kind, initial_strength, schedule = parse_strength(config.strength)
    policy = "none" if kind == "off" else config.policy
    num_classes = source.num_classes
    backup_dir = run_dir / "backup"

    with strategy.scope():
        aug_layer = augment.Augment(policy, strength=initial_strength, seed=config.seed, name="augment")
        model_aug = aug_layer if config.placement == "device" else augment.Augment("none", seed=config.seed, name="augment")
        model = build_model(
            config.model,
            source.image_shape,
            num_classes,
            model_aug,
            input_dtype="uint8" if config.placement == "device" else "float32",
        )
        if config.mixup:
            loss = keras.losses.CategoricalCrossentropy(from_logits=True)
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        optimizer = keras.optimizers.Adam(callbacks.MultiplierSchedule(config.learning_rate))
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)

    host = []
    if config.mixup:
        host.append(augment.MixUpCutMix(num_classes=num_classes, seed=config.seed))
    if config.placement == "host":
        host.append(aug_layer)
    initial_epoch = 0
    metadata = backup_dir / "training_metadata.json"
    if config.resume and metadata.is_file():
        initial_epoch = int(json.loads(metadata.read_text()).get("epoch", 0))
    try:
        train = distribute.build_training_input(
            splits.train,
            strategy=strategy,
            batch_size=config.batch_size,
            seed=config.seed,
            host_augment=host or None,
            one_hot=config.mixup,
            data_service=config.data_service,
            local_data_service=config.local_data_service,
            num_epochs=config.epochs,
            initial_epoch=initial_epoch,
        )
    except (ValueError, ConnectionError) as error:
        raise RunError(str(error)) from None
    if train.service is not None:
        log(f"tf.data service: dispatcher {train.service.target} with {config.local_data_service} worker(s)")
    val = pipelines.build_pipeline(splits.val, batch_size=config.batch_size, training=False, one_hot=config.mixup)
    test = pipelines.build_pipeline(splits.test, batch_size=config.batch_size, training=False, one_hot=config.mixup)
    if config.placement == "host":
        # The model's input is float32 [0, 1] then; evaluation batches too.
        val = val.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
        test = test.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))

    best_path = run_dir / "best.keras"
    callback_list = [train.epoch_sync] if train.epoch_sync is not None else []
    lr_control = callbacks.LearningRateControl(
        warmup_epochs=min(2, max(config.epochs - 1, 0)),
        decay="cosine",
        min_multiplier=0.02,
        state_dir=backup_dir,
    )
    callback_list += [
        lr_control,
        keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False),
        callbacks.RandomStateBackup(backup_dir),
    ]
    if kind == "adaptive":
        controller = callbacks.AdaptiveStrength(aug_layer, warmup_epochs=ADAPTIVE_WARMUP_EPOCHS, state_dir=backup_dir)
        lr_control.strength_controller = controller
        callback_list.append(controller)
    elif kind == "schedule":
        callback_list.append(callbacks.StrengthSchedule(aug_layer, schedule))
    else:
        callback_list.append(callbacks.StrengthSchedule(aug_layer, callbacks.constant(0.0)))
    callback_list.append(StopOnNan())
    interrupt = GracefulInterrupt()
    callback_list.append(interrupt)
    if config.patience:
        callback_list.append(
            keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience)
        )
    previous_best = [
        float(r["val_accuracy"]) for r in _read_log(run_dir / "log.csv") if r.get("val_accuracy") not in (None, "")
    ]
    callback_list += [
        keras.callbacks.ModelCheckpoint(
            str(best_path),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            # On a resume, only a better epoch may replace the saved best model.
            initial_value_threshold=max(previous_best) if previous_best else None,
        ),
        callbacks.ScheduledEvaluation(test, every=config.eval_every, state_dir=backup_dir),
        callbacks.ThroughputMonitor(batch_size=config.batch_size),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
    ]
    if config.tensorboard:
        callback_list.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False))
    callback_list.append(callbacks.TrainingCurves(run_dir / "curves.png", state_dir=backup_dir))
    if not config.quiet:
        callback_list.append(EpochLine(config.epochs))

    try:
        with distribute.multiworker_fit(model, strategy):
            history = model.fit(
                train.dataset,
                validation_data=val,
                epochs=config.epochs,
                callbacks=callback_list,
                verbose=0,
                shuffle=False,
                steps_per_epoch=train.steps_per_epoch,
            )
    except NanLossError as error:
        raise RunError(
            f"loss became NaN ({error}); the run stopped and kept the last good backup and "
            f"best model in {str(run_dir)!r}. Lower --learning-rate and resume or start again."
        ) from None
    except KeyboardInterrupt:
        raise Interrupted(str(run_dir)) from None
    finally:
        if train.service is not None:
            train.service.stop()
    if interrupt.requested:
        raise Interrupted(str(run_dir))

    epochs_logged = history.epoch
    if not best_path.is_file():
        model.save(best_path)
    best = keras.models.load_model(best_path)
    best.compile(loss=loss, metrics=metrics)
    test_results = best.evaluate(test, verbose=0, return_dict=True)
    rows = _read_log(run_dir / "log.csv")
    best_row = max(rows, key=lambda r: float(r.get("val_accuracy", "nan") or "nan")) if rows else {}
    throughput = [float(r["images_per_sec"]) for r in rows if r.get("images_per_sec") not in (None, "", "nan")]
    throughput = [v for v in throughput if math.isfinite(v)]
    report = {
        "test_loss": float(test_results["loss"]),
        "test_accuracy": float(test_results["accuracy"]),
        "best_epoch": int(best_row["epoch"]) + 1 if best_row else None,
        "best_val_accuracy": _finite_or_none(best_row.get("val_accuracy", "nan")) if best_row else None,
        "epochs_run": len(rows),
        "epochs_this_session": len(epochs_logged),
        "wall_time_s": round(time.perf_counter() - started, 2),
        "images_per_sec": round(float(np.median(throughput)), 1) if throughput else None,
        "final_strength": float(aug_layer.strength.numpy()),
        "provenance": source.provenance,
        "splits": {s.name: {"size": len(s), "fingerprint": s.fingerprint} for s in splits},
        "options": config.options(),
    }
    callbacks.atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=_json_default))
    return report


def _read_log(path) -> list:
    import csv

    if not pathlib.Path(path).is_file():
        return []
    with open(path) as handle:
        return list(csv.DictReader(handle))


def summary_table(report: dict) -> str:
    rows = [
        ("test accuracy (best model)", f"{report['test_accuracy']:.4f}"),
        ("test loss (best model)", f"{report['test_loss']:.4f}"),
        ("best epoch (val)", str(report["best_epoch"])),
        ("epochs run", str(report["epochs_run"])),
        ("final strength", f"{report['final_strength']:.2f}"),
        ("images/sec (median)", str(report["images_per_sec"])),
        ("wall time (s)", f"{report['wall_time_s']:.1f}"),
        ("data", report["provenance"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
