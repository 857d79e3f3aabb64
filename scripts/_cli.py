"""Click pieces the command-line tools share."""

from __future__ import annotations

import functools
import os
import tempfile
import time
import traceback

import click


class ImageSize(click.ParamType):
    """`H W`, or one `N` for a square `N x N` (also `HxW`): a `(height, width)` pair of integers >= 2."""

    name = "image_size"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return value
        words = value if isinstance(value, (tuple, list)) else [value]
        parts = [part for word in words for part in str(word).lower().replace("x", " ").split()]
        try:
            size = tuple(int(v) for v in parts)
        except ValueError:
            size = ()
        if len(size) == 1:
            size = size * 2
        if len(size) != 2 or min(size) < 2:
            self.fail(f"{' '.join(map(str, parts))!r}. Expected H W (two integers >= 2, e.g. 64 48) or one "
                      "size N for N x N.", param, ctx)
        return size


class ImageSizeOption(click.Option):
    """An option that takes one or two integers: `--image-size 64` or `--image-size 64 48`.

    Click options have a fixed number of values, so the parser step of this
    one takes the next command-line word too when it is a whole number.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("metavar", "H [W]")
        super().__init__(*args, type=ImageSize(), **kwargs)

    def add_to_parser(self, parser, ctx):
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is None:
                continue
            plain = option.process

            def process(value, state, plain=plain):
                values = [value]
                if state.rargs and state.rargs[0].isdigit():
                    values.append(state.rargs.pop(0))
                plain(tuple(values), state)

            option.process = process


def cli_settings(option) -> dict:
    """`click.option` keyword arguments for a source option declared in the registry (`SourceOption`)."""
    settings = {"help": option.help, "default": None}
    if option.kind == "flag":
        settings.update(is_flag=True, default=False)
    elif option.kind == "choice":
        settings["type"] = click.Choice([str(c) for c in option.choices])
    elif option.kind == "int_choice":
        settings.update(type=click.Choice([str(c) for c in option.choices]),
                        callback=lambda ctx, param, value: value and int(value))
    elif option.kind == "count":
        settings["type"] = click.IntRange(min=0)
    elif option.kind == "float_pair":
        settings["type"] = (float, float)
    elif option.kind == "image_size":
        settings["cls"] = ImageSizeOption
    elif option.kind == "directory":
        settings["type"] = click.Path(file_okay=False)
    if option.metavar:
        settings["metavar"] = option.metavar
    return settings


def fixed_strengths(ctx, param, value):
    """A click callback: comma-separated strengths in the shared grammar, each fixed (a number, constant:X or off)."""
    from augpipe import _startup

    _startup.quiet_tensorflow_startup()  # the parser imports Keras: the first TensorFlow import of a command
    from augpipe.callbacks.strength import parse_strength

    values = []
    for word in [w.strip() for w in str(value).split(",") if w.strip()] or [""]:
        try:
            spec = parse_strength(word)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
        if spec.fixed is None:
            raise click.BadParameter(
                f"{word!r} changes over epochs; this command draws one strength at a time. Expected a number in "
                "[0, 1], constant:X or off.")
        values.append(spec.fixed)
    return values


def fixed_strength(ctx, param, value):
    """A click callback: one fixed strength in the shared grammar (see `fixed_strengths`)."""
    values = fixed_strengths(ctx, param, value)
    if len(values) != 1:
        raise click.BadParameter(f"expected one strength, got {value!r}")
    return values[0]


def write_json(path, data) -> None:
    """Writes a command's `--json` file (its folder made if missing) and says so on stderr."""
    import json
    import pathlib

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    click.echo(f"wrote {path}", err=True)


def one_line_errors(command: str):
    """A command's unexpected failure ends in one line naming a file with the traceback, and exit 1.

    Expected failures are the command's own one-line errors and click's usage
    errors; anything else is a bug. Its traceback is written to
    `<temp dir>/augpipe-<command>-<time>-<pid>.log` instead of the terminal.
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except Exception as error:
                path = os.path.join(tempfile.gettempdir(),
                                    f"augpipe-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
                try:
                    with open(path, "w") as handle:
                        handle.write(traceback.format_exc())
                    where = f"the traceback is in {path}"
                except OSError:
                    where = "the traceback could not be written to a file"
                summary = (str(error).strip().splitlines() or [""])[0][:300]
                click.echo(f"Error: unexpected {type(error).__name__}: {summary} ({where}; please report it).",
                           err=True)
                raise SystemExit(1) from None

        return wrapper

    return decorate
