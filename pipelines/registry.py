"""The registry of source kinds: each kind's loader and the options it declares, once.

`register_source` mirrors `augment.register_policy`. `pipelines.load_source`
looks a spec up here, and the commands read their `--source` help, their
source options and the "applies only to" checks from here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

from augpipe.validation import did_you_mean


@dataclasses.dataclass(frozen=True)
class SourceOption:
    """One option of a source kind, declared once for the library, the config and the commands.

    Attributes:
        name: the config field and the command's option (`memory_budget_mb`).
        help: the command's help text.
        kind: how a command parses it: `"text"`, `"choice"` (from
            `choices`), `"int_choice"` (integers from `choices`), `"flag"`,
            `"count"` (an integer >= 0), `"float_pair"`, `"image_size"`
            (one or two integers) or `"directory"`.
        choices: the valid values of a choice.
        metavar: the command's placeholder (`MB`).
        flag: the command-line spelling; default `--name-with-dashes`.
        keyword: the loader's keyword; default `name`.
        convert: turns a config value into the loader's (`MB` into bytes);
            None passes it on.
        query: parses the option from a spec's `?name=value` part (None:
            not allowed there).
        resumable: a resume may change it (a cache setting, not the data).
        command: the commands offer it (False: library and spec only).
    """

    name: str
    help: str
    kind: str = "text"
    choices: tuple = ()
    metavar: Optional[str] = None
    flag: Optional[str] = None
    keyword: Optional[str] = None
    convert: Optional[Callable[[Any], Any]] = None
    query: Optional[Callable[[str], Any]] = None
    resumable: bool = False
    command: bool = True

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def loader_keyword(self) -> str:
        return self.keyword or self.name

    def loader_value(self, value):
        return value if self.convert is None else self.convert(value)


@dataclasses.dataclass(frozen=True)
class SourceKind:
    """A registered kind of source spec: its usage, its help, its loader and its options."""

    kind: str
    usage: str
    help: str
    load: Callable[..., Any]
    options: tuple = ()
    argument: bool = True

    def option(self, keyword: str) -> Optional[SourceOption]:
        return next((o for o in self.options if o.loader_keyword == keyword), None)


_KINDS: dict = {}

# Options that more than one kind takes.
DATA_DIR_OPTION = SourceOption("data_dir", "mnist, tfds: the tensorflow-datasets data directory.", kind="directory")
DOWNLOAD_OPTION = SourceOption("download", "mnist, tfds: allow downloading the data set.", kind="flag")


def register_source(kind: str, *, usage: str, help: str, options: Sequence[SourceOption] = (),
                    argument: bool = True):
    """Registers a loader for the spec `kind:ARGUMENT` (or the bare `kind` with `argument=False`).

    The loader is called as `load(argument, **options)`, with the spec's
    text after `kind:` (its `?query` taken off and parsed into options)
    and every declared option that was given (None and False are "not
    given"); it returns a `Source`. Registering a kind twice is an error.

    Example (a source of a few random images, in one decorator):

    >>> import numpy as np
    >>> from augpipe.pipelines import Source, load_source
    >>> @register_source("noise", usage="noise:N", help="N random 8x8 gray images in 2 classes.")
    ... def load_noise(argument):
    ...     count = int(argument)
    ...     images = np.random.default_rng(0).integers(0, 256, (count, 8, 8), np.uint8)
    ...     return Source.from_arrays(images, np.arange(count) % 2, name="noise")
    >>> load_source("noise:6").image_shape
    (8, 8, 1)
    >>> _ = unregister_source("noise")
    """
    if kind in _KINDS:
        raise ValueError(f"Source kind {kind!r} is already registered. Choose another name.")

    def decorate(load):
        _KINDS[kind] = SourceKind(kind, usage, help, load, tuple(options), argument)
        return load

    return decorate


def unregister_source(kind: str) -> SourceKind:
    """Removes a registered kind (tests, plugins); returns its entry."""
    return _KINDS.pop(kind)


def source_kinds() -> tuple:
    """Every registered `SourceKind`, in registration order."""
    return tuple(_KINDS.values())


def source_options() -> tuple:
    """Every option of every kind, each once (kinds may share one), in registration order."""
    seen: dict = {}
    for entry in _KINDS.values():
        for option in entry.options:
            seen.setdefault(option.name, option)
    return tuple(seen.values())


def option_owners(name: str) -> tuple:
    """The usages of the kinds that take option `name` (a config name or loader keyword)."""
    return tuple(e.usage for e in _KINDS.values()
                 if any(name in (o.name, o.loader_keyword) for o in e.options))


def source_help() -> str:
    """The `--source` help of every command: each kind's usage and a few words."""
    return "Data: " + "; ".join(f"{e.usage} ({e.help.rstrip('.')})" for e in _KINDS.values()) + "."


def source_kind(spec) -> SourceKind:
    """The registered kind of a spec string, or a ValueError listing the valid ones."""
    text = spec.strip() if isinstance(spec, str) else ""
    kind, sep, _ = text.partition(":")
    entry = _KINDS.get(kind)
    if not text or entry is None or bool(sep) != entry.argument:
        usages = [e.usage for e in _KINDS.values()]
        hint = did_you_mean(text, [e.kind + (":" if e.argument else "") for e in _KINDS.values()]) if text else ""
        raise ValueError(f"Unknown source spec {spec!r}. Expected one of: {', '.join(usages)}.{hint}")
    return entry


def _query_options(entry: SourceKind, spec: str, query: str) -> dict:
    """The options of a spec's `?name=value&...` part, parsed by the kind's declared options."""
    from urllib.parse import parse_qsl

    allowed = {o.loader_keyword: o for o in entry.options if o.query is not None}
    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in allowed:
            expected = " or ".join(allowed) if allowed else f"no options after '?' for {entry.usage}"
            raise ValueError(f"In {spec!r}: unknown option {key!r}. Expected {expected}.{did_you_mean(key, allowed)}")
        try:
            options[key] = allowed[key].query(value)
        except ValueError as error:
            raise ValueError(f"In {spec!r}: {key}={value!r}. {error}") from None
    return options
