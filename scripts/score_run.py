"""`score-run RUN_DIR --source SPEC`: a finished run's best model on any source, class by class."""

from __future__ import annotations

import json
import pathlib
import sys

import click
import numpy as np

from augpipe import _startup, pipelines
from augpipe.scripts._cli import one_line_errors, write_json


def score_run(run_dir, source: str) -> dict:
    """Scores `run_dir/best.keras` on `source` with the run's preprocessing and class names.

    The source's classes are matched to the run's by name (a class the run
    never saw is an error naming it). A source with its own test split
    (`npz` with `x_test`, a folder with `test/`) is scored on that split;
    any other on all its images. Returns the `scoring.per_class_figures`
    dict with `scored` (what was scored) and `run_dir`.
    """
    from augpipe.scripts import scoring
    from augpipe.scripts.experiment import load_best_model

    run_dir = pathlib.Path(run_dir)
    config_path, best_path = run_dir / "config.json", run_dir / "best.keras"
    if not best_path.is_file():
        raise ValueError(f"{str(run_dir)!r} has no best.keras: expected the directory of a run that trained at "
                         "least one epoch.")
    try:
        saved = json.loads(config_path.read_text())
        options, class_names = saved["options"], saved.get("class_names")
        if not isinstance(options, dict):
            raise TypeError("options is not an object")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"Cannot read {str(config_path)!r} ({type(error).__name__}: {error}).") from None
    model = load_best_model(best_path)
    shape = tuple(model.input_shape[1:])
    if class_names is None:  # runs written before config.json named the classes
        class_names = [str(i) for i in range(int(model.output_shape[-1]))]
    kind = pipelines.sources.source_kind(source)
    declared = {o.name for o in kind.options}
    values = {k: v for k, v in options.items() if k in declared and k not in ("download",)}
    if kind.kind == "folder":  # decoded as the run decoded its images
        values.update(image_size=shape[:2], channels=shape[2])
    loaded = pipelines.load_source(source, **pipelines.sources.loader_options(source, values))
    # What the run trained on, as far as matching classes and shapes goes.
    trained = pipelines.Source(images=np.zeros((1, *shape), np.uint8), labels=np.zeros(1, np.int64),
                               num_classes=len(class_names), class_names=tuple(class_names),
                               provenance=str(run_dir), name="the run")
    if loaded.official_test is not None:
        part = pipelines.Source(images=loaded.official_test.images, labels=loaded.official_test.labels,
                                num_classes=loaded.num_classes, class_names=loaded.class_names,
                                provenance=loaded.provenance, name=loaded.name)
        scored = f"the test split of {source} ({len(part)} images)"
    else:
        part, scored = loaded, f"every image of {source} ({len(loaded)} images)"
    images, labels = pipelines.splits.align_test_source(trained, part)
    split = pipelines.Split("scored", images, labels, len(class_names))
    dataset = pipelines.build_pipeline(split, batch_size=256, training=False)
    figures = scoring.score(model, dataset, class_names)
    return {**figures, "scored": scored, "run_dir": str(run_dir)}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--source", required=True, metavar="SPEC",
              help=pipelines.sources.source_help() + " Scored with the run's preprocessing and class names.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the figures here.")
@one_line_errors("score-run")
def main(run_dir, source, json_path):
    """Score a finished run's best model on any source: accuracy, per-class figures, confusion matrix."""
    _startup.quiet_tensorflow_startup()
    from augpipe.scripts import scoring

    try:
        figures = score_run(run_dir, source)
    except (ValueError, FileNotFoundError) as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    click.echo(f"{figures['run_dir']}: best.keras on {figures['scored']}")
    click.echo(scoring.format_figures(figures))
    if json_path:
        write_json(json_path, figures)


if __name__ == "__main__":
    main()
