"""`run-mnist`: the end-to-end MNIST experiment, as a thin click layer."""

from __future__ import annotations

import sys

import click

from augpipe import _startup, pipelines
from augpipe.callbacks.grammar import DEFAULT_STRENGTH, STRENGTH_HELP
from augpipe.scripts._cli import cli_settings, one_line_errors


def source_options(command):
    """run-mnist's --source and one option per source option the registry declares (see pipelines.sources)."""
    for option in reversed(pipelines.sources.source_options()):
        if option.command:
            command = click.option(option.cli_flag, option.name, **cli_settings(option))(command)
    command = click.option(
        "--test-source", default=None, metavar="SPEC",
        help="Another source (any spec above) that is the test split, e.g. folder:photos_test; its classes are "
             "matched to the training classes by name (a folder is decoded like the training images)."
    )(command)
    return click.option("--source", default="mnist", help=pipelines.sources.source_help())(command)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@source_options
@click.option("--model", default="cnn", metavar="MODEL",
              help="Backbone: cnn, mlp (the classic baseline), a saved FILE.keras, or a function building one, "
                   "package.module:function or path/to/file.py:function, called as function(input_shape, "
                   "num_classes); augpipe's Augment goes in front and it gets float images in [0, 1].")
@click.option("--epochs", type=click.IntRange(min=1), default=40)
@click.option("--batch-size", type=click.IntRange(min=1), default=128)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=2e-3)
@click.option("--policy", default="mnist", help="Augmentation policy: mnist, trivialaugment, randaugment, randaugment_digits, augmix, cifar, ops, none.")
@click.option("--strength", default=DEFAULT_STRENGTH, help=STRENGTH_HELP)
@click.option("--placement", type=click.Choice(["device", "host"]), default="device", help="Where augmentation runs.")
@click.option("--mixup/--no-mixup", default=False, help="MixUp/CutMix on training batches.")
@click.option("--drop-duplicates", is_flag=True,
              help="Keep one copy of an image found in two splits (in the earliest of train, val, test) instead "
                   "of refusing the source; the report counts what was dropped.")
@click.option("--eval-every", type=click.IntRange(min=1), default=5, help="Held-out test evaluation every N epochs.")
@click.option("--patience", type=click.IntRange(min=1), default=None, help="Early stopping on val accuracy.")
@click.option("--lr-patience", type=click.IntRange(min=1), default=None,
              help="LearningRateControl's plateau rule: when val loss has not improved for N epochs, raise a "
                   "controller's strength first, then halve the rate. Default: off (warmup, then cosine decay).")
@click.option("--ema", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0,
              help="Momentum of a moving average of the weights (Keras' use_ema), which validation, the probe, "
                   "the best model and the test then use; 0.99 averages over about 100 steps. Default: off.")
@click.option("--seed", type=int, default=0)
@click.option("--deterministic", is_flag=True, help="Enable TensorFlow op determinism (slower).")
@click.option("--jit-compile/--no-jit-compile", default=None,
              help="Compile the training step with XLA (augmentation takes its static-shape path, same draws). "
                   "Default: Keras' auto, on for a GPU and off for a CPU.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="Default: runs/<timestamp>.")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its backup.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --run-dir.")
@click.option("--tensorboard/--no-tensorboard", default=True)
@click.option("--quiet", is_flag=True, help="No per-epoch progress lines.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default="default",
              help="tf.distribute strategy; multiworker reads TF_CONFIG.")
@click.option("--data-service", default=None, help="Send the input pipeline through a tf.data service: grpc://HOST:PORT.")
@click.option("--local-data-service", type=click.IntRange(min=0), default=0,
              help="Start a local tf.data service with N workers for this run (a demo; needs the next flag).")
@click.option("--local-data-service-on-all-interfaces", is_flag=True,
              help="Accept that the local tf.data service listens on every interface, unauthenticated "
                   "(TensorFlow has no bind-address option). Only where other hosts cannot reach this machine.")
@click.pass_context
@one_line_errors("run-mnist")
def main(ctx, **options):
    """Train a digit classifier end to end and leave a complete run directory.

    The defaults run offline on the embedded 5,000-digit MNIST subset (or the
    full MNIST when it is on this machine), with device-side augmentation
    whose strength ramps up to a ceiling that a controller moves from the
    probe's gap to validation, then eases off for the last epochs.
    """
    _startup.quiet_tensorflow_startup()  # TensorFlow is first imported here, not for --help
    from augpipe.scripts import experiment

    explicit = {
        name for name in options if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    config = experiment.ExperimentConfig(**options)
    log = (lambda message: None) if options["quiet"] else (lambda message: click.echo(message, err=True))
    try:
        report, run_dir = experiment.run_experiment(config, explicit=explicit, log=log,
                                                    notice=lambda message: click.echo(
                                                        experiment.ExperimentError(message).render(flag), err=True))
    except experiment.ConfigError as error:
        raise click.UsageError(error.render(flag)) from None
    except experiment.Interrupted as error:
        click.echo(
            f"Interrupted. The backup is kept; resume with:\n  run-mnist --run-dir {error.run_dir} --resume",
            err=True,
        )
        sys.exit(130)
    except experiment.RunError as error:
        click.echo(f"Error: {error.render(flag)}", err=True)
        sys.exit(1)
    click.echo(experiment.summary_table(report))
    click.echo(f"run directory: {run_dir}")


def flag(option: str) -> str:
    """How the command spells an option of `ExperimentConfig`: `run_dir` -> `--run-dir`, `memory_budget_mb` -> `--memory-budget`."""
    declared = {o.name: o.cli_flag for o in pipelines.sources.source_options()}
    return declared.get(option, "--" + option.replace("_", "-"))


if __name__ == "__main__":
    main()
