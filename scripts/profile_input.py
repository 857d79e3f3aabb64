"""`profile-input`: input throughput side by side with the peers, and an input-bound verdict."""

from __future__ import annotations

import os
import sys

import click

from augpipe import _startup, pipelines
from augpipe.scripts._cli import ImageSizeOption, fixed_strength, one_line_errors, write_json


def _batch_sizes(ctx, param, value):
    try:
        sizes = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected a comma-separated list of positive integers, got {value!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise click.BadParameter(f"batch sizes must be positive integers, got {value!r}")
    return sizes


def _compare(ctx, param, value):
    _startup.quiet_tensorflow_startup()  # profiling imports TensorFlow: the first import of the command
    from augpipe.scripts.profiling import PEERS

    peers = [v.strip() for v in str(value).split(",") if v.strip() and v.strip() != "none"]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise click.BadParameter(f"unknown peer(s) {', '.join(unknown)}; expected any of: {', '.join(PEERS)}, or none")
    return peers


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--source", default="mnist-embedded",
              help=pipelines.sources.source_help() + " A folder is timed with its decoding, against Keras' "
                   "image_dataset_from_directory with its layers.")
@click.option("--synthetic", type=click.IntRange(min=1), default=None, help="Use N seeded random uint8 images of the source's shape.")
@click.option("--image-size", cls=ImageSizeOption, default=None,
              help=f"folder: the size files are resized to. Other sources: synthetic images of this size "
                   f"(--synthetic of them, {2048} by default).")
@click.option("--channels", type=click.IntRange(1, 3), default=None,
              help="Synthetic images (folder: decoded images) with 1 (gray) or 3 (colour) channels.")
@click.option("--resize", type=click.Choice(["stretch", "crop", "pad"]), default="stretch",
              help="folder: stretch to --image-size, or keep the aspect ratio with a central crop or zero padding.")
@click.option("--batch-sizes", default="256", callback=_batch_sizes, help="Comma-separated, e.g. 32,256,1024.")
@click.option("--policy", default="mnist",
              help='A policy name, a JSON spec (\'{"name": "ops", "config": {"ops": ["rotate"]}}\') or a .json file.')
@click.option("--strength", default="1", callback=fixed_strength,
              help="One fixed strength: a number in [0, 1], constant:X or off (run-mnist's grammar).")
@click.option("--repeats", type=click.IntRange(min=1), default=5)
@click.option("--warmup", type=click.IntRange(min=0), default=2)
@click.option("--compare", default="keras,albumentations", callback=_compare,
              help="Peers: keras, keras-randaugment, keras-augmix, albumentations (or none).")
@click.option("--model", default="none",
              help="Also time a training step with in-memory vs pipeline input: none, mlp, cnn, a saved FILE.keras, "
                   "or a function returning a compiled model (package.module:function or path/to/file.py:function); "
                   "a user model gets float [0, 1] images after the augmentation.")
@click.option("--jit-compile/--no-jit-compile", default=None,
              help="Compile the --model training steps with XLA (default: Keras' auto, on for a GPU, off for a CPU).")
@click.option("--quick", is_flag=True,
              help="About a minute: 2 repeats, 1 warm-up, 4096 images per measurement, Keras' chain as the only peer "
                   "(each unless given).")
@click.option("--images", "images_per_measurement", type=click.IntRange(min=1), default=16384,
              help="Images per timed measurement.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the results here.")
@click.pass_context
@one_line_errors("profile-input")
def main(ctx, json_path, **options):
    """Measure images/sec at each stage of the input pipeline, against the raw
    ceiling and the peers, in one run; with --model, say whether training is
    input-bound."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    _startup.quiet_tensorflow_startup()  # TensorFlow is first imported here, not for --help
    from augpipe.scripts import profiling

    try:
        options["policy"] = profiling.resolve_policy(options["policy"])
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--policy") from None
    if options.pop("quick"):
        # --quick sets these unless the command line gave them.
        given = {name for name in profiling.QUICK
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
        options.update({name: value for name, value in profiling.QUICK.items() if name not in given})
    try:
        report = profiling.profile_input(progress=lambda m: click.echo(m, err=True), **options)
    except (ValueError, FileNotFoundError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    click.echo(profiling.format_table(report))
    if json_path:
        write_json(json_path, report)


if __name__ == "__main__":
    main()
