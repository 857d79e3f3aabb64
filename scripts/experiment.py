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

The options and their checks live in `scripts.config` (`ExperimentConfig`,
`check_config` and the errors), the run directory's safety rules in
`scripts.rundir`; both are re-exported here. Errors are plain exceptions
(`ConfigError`, `RunError`, `Interrupted`) whose messages name options as
`<name>`; `ExperimentError.render` spells them for the caller: `name` for
Python, `--name` for the `run-mnist` command (`augpipe.scripts.run_mnist`,
the click layer).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
import platform
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from augpipe import augment, callbacks, pipelines
from augpipe.callbacks import base as callback_files
from augpipe.callbacks.commit import roll_back_to_commit
from augpipe.pipelines import distribute
from augpipe.scripts.config import (  # noqa: F401  (re-exported: the experiment's public face)
    PLACEMENTS,
    RESUMABLE_OVERRIDES,
    STRATEGIES,
    ConfigError,
    ExperimentConfig,
    ExperimentError,
    Interrupted,
    RunError,
    check_config,
)
from augpipe.scripts import scoring
from augpipe.scripts.models import MIN_IMAGE_SIZE, build_model, outputs_probabilities
from augpipe.scripts.rundir import (  # noqa: F401  (re-exported)
    _as_saved,
    _finite_or_none,
    _json_default,
    _describe,
    _forget_if_nothing_trained,
    default_run_dir,
    finish_replacement,
    is_augpipe_run,
    lock_run_dir,
    open_run_dir,
    original_epochs,
    package_versions,
    prepare_run_dir,
    read_log,
    recover_replaced,
    replaced_path,
    resolve_resume,
    restore_replaced,
    resume_point,
)

@dataclasses.dataclass
class Data:
    """What `load_data` returns: the source and its splits."""

    source: pipelines.Source
    splits: pipelines.Splits
    duplicates_dropped: int = 0  # images left out of a later split because an earlier one held them (drop_duplicates)


@dataclasses.dataclass
class ModelParts:
    """What `build_experiment_model` returns."""

    model: keras.Model
    augment_layer: augment.Augment  # owns the strength, in the model or on the host
    loss: keras.losses.Loss
    metrics: list
    from_logits: bool = True  # False for a user's model that ends in a softmax


@dataclasses.dataclass
class Inputs:
    """What `build_inputs` returns."""

    train: distribute.TrainingInput
    val: tf.data.Dataset
    test: tf.data.Dataset
    initial_epoch: int
    probe: Optional[tf.data.Dataset] = None  # clean training images, for a probe-based strength signal
    class_names: tuple = ()  # the source's, for pictures and per-class figures


# Training images a probe-based strength signal evaluates clean each epoch (see callbacks.ProbeEvaluation).
PROBE_SIZE = 256


# ----------------------------------------------------------------------------
# Stage 3: data


def load_data(config: ExperimentConfig) -> Data:
    """Stage 3: loads the source and makes its seeded, stratified, disjoint splits."""
    try:
        options = pipelines.sources.loader_options(config.source, config.source_values())
        source = pipelines.load_source(config.source, **options)
        if source.num_classes < 2:
            raise ValueError(
                f"The source has {source.num_classes} class ({', '.join(map(repr, source.class_names))}): a "
                "classifier needs at least 2. For a folder source, put each class's images in its own subfolder."
            )
        height, width = source.image_shape[:2]
        smallest = MIN_IMAGE_SIZE.get(config.model, 1)
        if min(height, width) < smallest:
            raise ValueError(
                f"The source's {height}x{width} images are too small for <model> {config.model} (at least "
                f"{smallest}x{smallest}). Use <model> mlp, or larger images."
            )
        test = load_test_source(config, source) if config.test_source else None
        splits = pipelines.make_splits(source, seed=config.seed, test=test)
        dropped = 0
        if config.drop_duplicates:
            splits, dropped = splits.without_duplicates()
        splits.check_disjoint()
    except (ValueError, FileNotFoundError, ConnectionError, OSError) as error:
        raise RunError(str(error)) from None
    return Data(source, splits, dropped)


def load_test_source(config: ExperimentConfig, source: pipelines.Source) -> pipelines.Source:
    """The `test_source`, loaded with the options its kind shares with the source, at the source's image shape."""
    kind = pipelines.sources.source_kind(config.test_source)
    declared = {o.name for o in kind.options}
    values = {k: v for k, v in config.source_values().items() if k in declared}
    if kind.kind == "folder":  # decoded exactly like the training images
        values.update(image_size=tuple(source.image_shape[:2]), channels=int(source.image_shape[2]))
    return pipelines.load_source(config.test_source,
                                 **pipelines.sources.loader_options(config.test_source, values))


def write_config(config: ExperimentConfig, run_dir: pathlib.Path, data: Data) -> None:
    """Writes `config.json` for a new run, or records a resume (what it changed) in it."""
    path = run_dir / "config.json"
    if not config.resume:
        payload = {
            "options": config.options(),
            "versions": package_versions(),
            "provenance": data.source.provenance,
            "class_names": list(data.source.class_names),
            "splits": data.splits.summary(),
        }
        callback_files.atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default))
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
    callback_files.atomic_write_text(path, json.dumps(saved, indent=2, default=_json_default))


# ----------------------------------------------------------------------------
# Stage 4: model


def build_experiment_model(config: ExperimentConfig, data: Data, strategy=None) -> ModelParts:
    """Stage 4: `Input -> Augment -> backbone`, compiled with an LR multiplier schedule.

    With host placement the same `Augment` (placement `host`) is in the
    model, where it only converts, and the pipeline runs it.
    """
    strategy = strategy or tf.distribute.get_strategy()
    strength = callbacks.parse_strength(config.strength)
    policy = "none" if strength.kind == "off" else config.policy
    with strategy.scope():
        aug_layer = augment.Augment(policy, strength=strength.initial, seed=config.seed, name="augment",
                                    placement=config.placement)
        try:
            model = build_model(config.model, data.source.image_shape, data.source.num_classes, aug_layer)
        except ValueError as error:  # a user's model that cannot be loaded or does not fit the data
            raise RunError(f"<model>: {error}") from None
        from_logits = not outputs_probabilities(model)
        loss, metrics = _loss_and_metrics(config.mixup, from_logits)
        # With <ema>, Keras' optimizer keeps an exponential moving average of the weights, which
        # SwapEMAWeights (build_callbacks) swaps in for validation and every epoch end.
        optimizer = keras.optimizers.Adam(callbacks.MultiplierSchedule(config.learning_rate),
                                          use_ema=config.ema > 0, ema_momentum=config.ema or 0.99)
        # None is Keras' "auto": XLA on a GPU, not on a CPU. Augment supports
        # XLA (its static-shape path), so it never turns XLA off.
        jit_compile = "auto" if config.jit_compile is None else config.jit_compile
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)
    return ModelParts(model, aug_layer, loss, metrics, from_logits)


def _loss_and_metrics(one_hot: bool, from_logits: bool = True) -> tuple:
    """Fresh loss and metric objects (never shared between two compiled models)."""
    if one_hot:
        return (keras.losses.CategoricalCrossentropy(from_logits=from_logits),
                [keras.metrics.CategoricalAccuracy(name="accuracy")])
    return (keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
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
    probe = None
    if callbacks.parse_strength(config.strength).needs_probe:
        probe_split = pipelines.make_probe(data.splits.train, size=PROBE_SIZE, seed=config.seed)
        probe = pipelines.build_pipeline(probe_split, batch_size=config.batch_size, training=False)
    return Inputs(train, val, test, initial_epoch, probe, tuple(data.source.class_names))


def build_callbacks(config: ExperimentConfig, run_dir: pathlib.Path, parts: ModelParts, inputs: Inputs,
                    schedule_epochs: Optional[int] = None) -> list:
    """Stage 5b: every callback of a run, put in working order by `callbacks.in_working_order`.

    The stages each callback declares give the order: epoch sync, LR
    control, the backup (so a resume restores before the controllers read
    their state), the swap to the averaged weights (with <ema>: validation,
    the probe, the checkpoint and the test see them), the strength
    controller, run safety, early stopping, best-model checkpointing (its
    threshold in its state), the scheduled test evaluation, the monitors,
    the loggers (they see every key the others wrote), and the epoch
    commit last.

    `schedule_epochs` is the length the learning-rate schedule and a
    `shaped` strength were laid out for (the run's original `epochs`; a
    resume that extends a run keeps it, so the cosine and the curriculum
    keep their shape, and the rate and strength stay at their final values).
    """
    backup_dir = run_dir / "backup"
    horizon = schedule_epochs or config.epochs
    strength = callbacks.parse_strength(config.strength).callback(parts.augment_layer, state_dir=backup_dir,
                                                                  total_epochs=horizon)
    # Its threshold is part of its state, so a resume keeps the committed one exactly.
    checkpoint = callbacks.BestModelCheckpoint(run_dir / "best.keras", monitor="val_accuracy", mode="max",
                                               state_dir=backup_dir)
    found = [
        inputs.train.epoch_sync,
        None if inputs.probe is None else callbacks.ProbeEvaluation(inputs.probe),
        callbacks.LearningRateControl(
            warmup_epochs=min(2, max(horizon - 1, 0)), decay="cosine", total_epochs=horizon, min_multiplier=0.02,
            patience=config.lr_patience, state_dir=backup_dir, strength_controller=strength if isinstance(strength, callbacks.AdaptiveStrength)
            else None,
        ),
        callbacks.EpochBackup(backup_dir),
        callbacks.RandomStateBackup(backup_dir),
        # After the backup (it keeps the trained weights), before the probe, the checkpoint and the test.
        config.ema and keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
        strength,
        callbacks.StopOnNonFiniteLoss(),
        callbacks.GracefulInterrupt(verbose=0 if config.quiet else 1),
        config.patience and callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience,
                                                    state_dir=backup_dir),
        checkpoint,
        callbacks.ScheduledEvaluation(inputs.test, every=config.eval_every, state_dir=backup_dir),
        callbacks.ThroughputMonitor(batch_size=config.batch_size),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
    ]
    if config.tensorboard:
        # The same validation images at the current strength, every evaluation period: one per class in turn.
        sample, captions = _balanced_val_images(inputs.val, inputs.class_names, config.seed)
        found += [keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
                  callbacks.AugmentationImages(parts.augment_layer, sample, run_dir / "tensorboard",
                                               every=config.eval_every, captions=captions)]
    found += [
        callbacks.TrainingCurves(run_dir / "curves.png", state_dir=backup_dir, every=config.eval_every),
        None if config.quiet else callbacks.EpochLine(config.epochs),
        # Last: epoch k exists once everything above has written its files for it.
        callbacks.EpochCommit(backup_dir, checkpoint),
    ]
    return callbacks.in_working_order([c for c in found if c])


def _balanced_val_images(val: tf.data.Dataset, class_names: tuple, seed: int, count: int = 8) -> tuple:
    """`count` validation images, one class after another (class-balanced), and their class names."""
    batches = [(np.asarray(x), np.asarray(y)) for x, y in val]
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y.argmax(axis=1) if y.ndim == 2 else y for _, y in batches])
    picks = pipelines.splits.balanced_sample(labels, count, seed)
    return images[picks], [str(class_names[k]) if class_names else str(k) for k in labels[picks]]


# ----------------------------------------------------------------------------
# Stage 6: fit


def fit(config: ExperimentConfig, run_dir: pathlib.Path, parts: ModelParts, inputs: Inputs,
        callback_list: list, strategy=None) -> keras.callbacks.History:
    """Stage 6: `model.fit`; a non-finite loss becomes `RunError`, Ctrl-C becomes `Interrupted`."""
    strategy = strategy or tf.distribute.get_strategy()
    train = inputs.train
    callback_list = callbacks.in_working_order(callback_list)  # sorted already when build_callbacks made it
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
    loss, metrics = _loss_and_metrics(config.mixup, parts.from_logits)
    best.compile(loss=loss, metrics=metrics)
    test_results = best.evaluate(inputs.test, verbose=0, return_dict=True)
    per_class = scoring.score(best, inputs.test, data.source.class_names)
    rows = read_log(run_dir / "log.csv")
    best_row = _best_row(rows)
    best_epoch = int(best_row["epoch"]) + 1 if best_row else None
    scoring.write_confusion_png(run_dir / "confusion.png", per_class, data.source.class_names,
                                title=f"best model (epoch {best_epoch or '?'}) on the test split: "
                                      f"{100 * float(test_results['accuracy']):.2f} %")
    throughput = [float(r["images_per_sec"]) for r in rows if r.get("images_per_sec") not in (None, "", "nan")]
    throughput = [v for v in throughput if math.isfinite(v)]
    report = {
        "test_loss": float(test_results["loss"]),
        "test_accuracy": float(test_results["accuracy"]),
        "best_epoch": best_epoch,
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
        # The best model on the test split, class by class (rows of the confusion matrix: true class).
        "class_names": list(data.source.class_names),
        "duplicates_dropped": data.duplicates_dropped,
        "test_per_class": per_class["per_class"],
        "test_confusion": per_class["confusion"],
        "weakest_class": per_class["weakest_class"],
        "options": config.options(),
    }
    callback_files.atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=_json_default))
    return report


def load_best_model(path) -> keras.Model:
    """Loads a `.keras` file with Keras' safe mode on (augpipe never turns it off).

    Safe mode refuses to deserialize Python code (a `Lambda` layer's
    function), which could run anything; such a file is refused with a
    `RunError`.
    """
    from augpipe.augment import layer as _layer  # noqa: F401  (registers Augment with Keras)
    from augpipe.callbacks import lr as _lr  # noqa: F401  (registers MultiplierSchedule with Keras)

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
                   log: Optional[Callable[[str], None]] = None,
                   notice: Optional[Callable[[str], None]] = None) -> tuple:
    """Runs every stage in order; returns `(report, run_dir)`.

    `explicit` names the options the caller set on purpose (a resume keeps
    the saved value of every other one). `log` receives progress lines,
    `notice` the lines that must be seen even when progress is quiet (an old
    run put back after an interrupted `overwrite`), as templates that name
    options `<name>` (`ExperimentError(line).render(spell)`); by default
    they go to `log`, spelled for Python.

    Raises:
        ConfigError: bad options.
        RunError: a runtime failure with a one-line reason.
        Interrupted: Ctrl-C at a safe point; the backup is kept.
    """
    log = log or (lambda message: None)
    notice = notice or (lambda message: log(ExperimentError(message).render()))
    check_config(config)
    run_dir = pathlib.Path(config.run_dir) if config.run_dir else default_run_dir()
    config = dataclasses.replace(config, run_dir=str(run_dir))
    if replaced_path(run_dir).is_dir():  # an --overwrite was interrupted: settle it before anything reads the run
        with lock_run_dir(run_dir):
            settled = recover_replaced(run_dir)
        if settled:
            notice(settled)
    config, run_dir = open_run_dir(config, explicit)
    check_config(config)
    if config.resume:
        committed = resume_point(run_dir)
        notice(f"resuming the run in {str(run_dir)!r} from epoch {committed + 1} ({committed} committed)")
    started = time.perf_counter()
    with lock_run_dir(run_dir):
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        data = load_data(config)
        log(f"data: {data.source.provenance}")
        log(f"splits: train {len(data.splits.train)}, val {len(data.splits.val)}, test {len(data.splits.test)}"
            + (f" ({data.duplicates_dropped} duplicate(s) of earlier splits dropped)" if data.duplicates_dropped else ""))
        created = prepare_run_dir(config, run_dir)
        try:
            write_config(config, run_dir, data)
            strategy = distribute.make_strategy(config.strategy)
            parts = build_experiment_model(config, data, strategy)
            # A kill may have left files of an epoch that was never committed: drop them.
            initial_epoch = roll_back_to_commit(run_dir) if config.resume else 0
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
            _give_back(run_dir, created)
            raise RunError(f"cannot write the run in {str(run_dir)!r}: {_describe(error)}") from None
        except Interrupted:
            if restore_replaced(run_dir):  # stopped before its first epoch: the old run is back
                raise
            finish_replacement(run_dir)
            raise  # its message offers a resume: keep what is there
        except BaseException:
            _give_back(run_dir, created)
            raise
        finish_replacement(run_dir)
    return report, run_dir


def _give_back(run_dir: pathlib.Path, created: bool) -> None:
    """After a failure: a run that committed nothing leaves nothing, and an old run it replaced comes back."""
    _forget_if_nothing_trained(run_dir, created)
    if not restore_replaced(run_dir):
        finish_replacement(run_dir)


def _last_strength(rows: list, parts: ModelParts) -> float:
    value = rows[-1].get("aug_strength") if rows else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(parts.augment_layer.strength.numpy())


def _weakest(report: dict) -> str:
    name = report.get("weakest_class")
    if name is None:
        return "n/a"
    row = report["test_per_class"][name]
    return f"{name}: {row['correct']} of {row['count']} ({100 * row['accuracy']:.1f} %)"


def _best_row(rows: list) -> dict:
    """The log row of the reported model: the checkpoint's rule (`callbacks.best_position`); {} if none."""
    position = callbacks.best_position([float(r.get("val_accuracy", "nan") or "nan") for r in rows])
    return {} if position is None else rows[position]


def summary_table(report: dict) -> str:
    rows = [
        ("test accuracy (best model)", f"{report['test_accuracy']:.4f}"),
        ("test loss (best model)", f"{report['test_loss']:.4f}"),
        ("best epoch (val)", str(report["best_epoch"])),
        ("epochs run", str(report["epochs_run"])),
        ("strength (last epoch)", f"{report['final_strength']:.2f}"
         + (f" (next: {report['next_strength']:.2f})"
            if abs(report.get("next_strength", report["final_strength"]) - report["final_strength"]) > 1e-9 else "")),
        ("weakest class (test)", _weakest(report)),
        ("images/sec (median)", str(report["images_per_sec"])),
        ("wall time (s)", f"{report['wall_time_s']:.1f}"),
        ("data", report["provenance"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# Names earlier versions defined here (deprecated).
def __getattr__(name):
    import warnings

    from augpipe.callbacks import strength as _strength

    moved = {
        "ADAPTIVE_INITIAL_STRENGTH": ("augpipe.callbacks.strength.ADAPTIVE_INITIAL_STRENGTH",
                                      lambda: _strength.ADAPTIVE_INITIAL_STRENGTH),
        "ADAPTIVE_WARMUP_EPOCHS": ("augpipe.callbacks.strength.ADAPTIVE_WARMUP_EPOCHS",
                                   lambda: _strength.ADAPTIVE_WARMUP_EPOCHS),
        "FOLDER_OPTIONS": ("augpipe.pipelines.folder.FOLDER_OPTIONS (SourceOption records)",
                           lambda: tuple(o.name for o in pipelines.folder.FOLDER_OPTIONS if o.command)),
        "parse_strength": ("augpipe.callbacks.parse_strength, which returns a StrengthSpec", lambda: _parse_strength),
    }
    if name not in moved:
        raise AttributeError(f"module 'augpipe.scripts.experiment' has no attribute {name!r}")
    new, value = moved[name]
    warnings.warn(f"augpipe.scripts.experiment.{name} is deprecated: use {new}.", DeprecationWarning, stacklevel=2)
    return value()


def _parse_strength(spec: str) -> tuple:
    """The earlier `(kind, initial strength, schedule)` of a strength spec."""
    try:
        parsed = callbacks.parse_strength(spec)
    except ValueError as error:
        raise ConfigError(f"Invalid <strength> {spec!r}: {error}") from None
    return parsed.kind, parsed.initial, parsed.schedule
