"""The experiment's options: `ExperimentConfig`, its checks, and the errors every stage raises.

The fields of a source's options (`image_size`, `cache`, `value_range`, ...)
are not written here: they come from the source registry
(`pipelines.sources.source_options()`), which declares each option once
for the library, this config and run-mnist's command line.

Errors are plain exceptions (`ConfigError`, `RunError`, `Interrupted`) whose
messages name options as `<name>`; `ExperimentError.render` spells them for
the caller: `name` for Python, `--name` for the `run-mnist` command.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Optional

from augpipe import augment, callbacks, pipelines
from augpipe.callbacks.grammar import DEFAULT_STRENGTH
from augpipe.pipelines import distribute
from augpipe.scripts.models import MIN_IMAGE_SIZE, MODELS, is_model_spec
from augpipe.validation import check_int

PLACEMENTS = ("device", "host")
# Off by default: on the embedded MNIST it did not beat the trained weights (docs/design.md, decision 35).
EMA_DEFAULT = 0.0
STRATEGIES = ("default", "mirrored", "multiworker")
# Options a resume may change (with the source options declared resumable); the others must match.
RESUMABLE_OVERRIDES = ("epochs", "patience", "eval_every", "quiet", "tensorboard", "jit_compile") + tuple(
    o.name for o in pipelines.sources.source_options() if o.resumable and o.command)
# The source options as config fields: every option a registered kind declares for the commands.
SOURCE_FIELDS = tuple(o for o in pipelines.sources.source_options() if o.command)


def _options(self) -> dict:
    return dataclasses.asdict(self)


def _source_values(self) -> dict:
    """The source options of this config, by name (unset ones are None or False)."""
    return {option.name: getattr(self, option.name) for option in SOURCE_FIELDS}


ExperimentConfig = dataclasses.make_dataclass(
    "ExperimentConfig",
    [("source", str, dataclasses.field(default="mnist")),
     # Another source that is the test split (its classes matched by name); None: the source's own or carved.
     ("test_source", Optional[str], dataclasses.field(default=None))]
    + [(o.name, Any, dataclasses.field(default=False if o.kind == "flag" else None)) for o in SOURCE_FIELDS]
    + [
        ("model", str, dataclasses.field(default="cnn")),
        ("epochs", int, dataclasses.field(default=40)),
        ("batch_size", int, dataclasses.field(default=128)),
        ("learning_rate", float, dataclasses.field(default=2e-3)),
        ("policy", str, dataclasses.field(default="mnist")),
        ("strength", str, dataclasses.field(default=DEFAULT_STRENGTH)),
        ("placement", str, dataclasses.field(default="device")),
        ("mixup", bool, dataclasses.field(default=False)),
        # Leave out of val and test each image another split holds too (byte-identical), instead of refusing.
        ("drop_duplicates", bool, dataclasses.field(default=False)),
        ("eval_every", int, dataclasses.field(default=5)),
        ("patience", Optional[int], dataclasses.field(default=None)),
        ("lr_patience", Optional[int], dataclasses.field(default=None)),
        # Momentum of the exponential moving average of the weights that the epoch ends measure and keep; 0: off.
        ("ema", float, dataclasses.field(default=EMA_DEFAULT)),
        ("seed", int, dataclasses.field(default=0)),
        ("deterministic", bool, dataclasses.field(default=False)),
        # XLA for the training step: None is Keras' "auto" (on for a GPU, off for a CPU).
        ("jit_compile", Optional[bool], dataclasses.field(default=None)),
        ("run_dir", Optional[str], dataclasses.field(default=None)),
        ("resume", bool, dataclasses.field(default=False)),
        ("overwrite", bool, dataclasses.field(default=False)),
        ("tensorboard", bool, dataclasses.field(default=True)),
        ("quiet", bool, dataclasses.field(default=False)),
        # Distribution (see pipelines.distribute)
        ("strategy", str, dataclasses.field(default="default")),
        ("data_service", Optional[str], dataclasses.field(default=None)),
        ("local_data_service", int, dataclasses.field(default=0)),
        ("local_data_service_on_all_interfaces", bool, dataclasses.field(default=False)),
    ],
    frozen=True,
    namespace={"options": _options, "source_values": _source_values, "__module__": __name__},
)
ExperimentConfig.__doc__ = """Every option of the experiment, with the defaults the README's results use.

The source options (`image_size`, `channels`, `resize`, `skip_bad_images`,
`cache`, `memory_budget_mb`, `cache_dir`, `value_range`, `layout`,
`data_dir`, `download`) are the registry's; see `pipelines.load_source`.
"""

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


def check_config(config: ExperimentConfig) -> None:
    """Stage 1: raises `ConfigError` for any bad option or combination."""
    if not is_model_spec(config.model):
        raise ConfigError(
            f"Unknown <model> {config.model!r}. Expected {', '.join(MODELS)}, a saved model (FILE.keras), or a "
            "function building one (package.module:function or path/to/file.py:function)."
        )
    if config.placement not in PLACEMENTS:
        raise ConfigError(f"Unknown <placement> {config.placement!r}. Expected one of: {', '.join(PLACEMENTS)}.")
    try:
        augment.get_policy(config.policy)
    except ValueError as error:
        raise ConfigError(f"<policy>: {error}") from None
    try:
        callbacks.parse_strength(config.strength)
    except ValueError as error:
        raise ConfigError(f"Invalid <strength> {config.strength!r}: {error}") from None
    try:
        kind = pipelines.sources.source_kind(config.source)
    except ValueError as error:
        raise ConfigError(f"<source>: {error}") from None
    if config.test_source is not None:
        try:
            pipelines.sources.source_kind(config.test_source)
        except ValueError as error:
            raise ConfigError(f"<test_source>: {error}") from None
    declared = {o.name for o in kind.options}
    given = [name for name, value in config.source_values().items()
             if value not in (None, False) and name not in declared]
    if given:
        owners = sorted({owner for name in given for owner in pipelines.sources.option_owners(name)})
        raise ConfigError(
            f"{', '.join(f'<{name}>' for name in given)} apply only to a <source> {' or '.join(owners)}. "
            f"Received them with <source> {config.source!r}: drop them."
        )
    if kind.kind == "folder" and config.image_size is None:
        raise ConfigError(f"<source> {config.source!r} needs <image_size>: every image is resized to it (e.g. 64 64).")
    smallest = MIN_IMAGE_SIZE.get(config.model, 1)
    if config.image_size is not None and min(config.image_size) < smallest:
        size = " ".join(str(v) for v in config.image_size)
        raise ConfigError(
            f"<image_size> {size} is too small for <model> {config.model}: it needs at least {smallest} {smallest}. "
            f"Use a larger <image_size>, or <model> mlp."
        )
    for name in ("epochs", "batch_size", "eval_every"):
        try:
            check_int(name, getattr(config, name))
        except ValueError as error:
            raise ConfigError(f"<{name}>: {error}") from None
    if not (config.learning_rate > 0 and math.isfinite(config.learning_rate)):
        raise ConfigError(f"<learning_rate> must be > 0. Received: {config.learning_rate!r}.")
    if config.patience is not None and config.patience < 1:
        raise ConfigError(f"<patience> must be a positive integer. Received: {config.patience!r}.")
    if config.lr_patience is not None and (not isinstance(config.lr_patience, int) or config.lr_patience < 1):
        raise ConfigError(f"<lr_patience> must be a positive integer. Received: {config.lr_patience!r}.")
    if isinstance(config.ema, bool) or not isinstance(config.ema, (int, float)) or not 0 <= config.ema < 1:
        raise ConfigError("<ema> must be a momentum in [0, 1) (0 turns weight averaging off; 0.99 averages "
                          f"over about 100 steps). Received: {config.ema!r}.")
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


