"""A PNG of the training curves, rewritten atomically every `every` epochs and when training ends."""

from __future__ import annotations

import math
import pathlib

from augpipe.callbacks.base import StatefulCallback, atomic_save_figure, best_position
from augpipe.callbacks.order import Stage

PANELS = (
    ("loss", ("loss", "val_loss", "test_loss")),
    ("accuracy", ("accuracy", "val_accuracy", "test_accuracy")),
    ("learning rate", ("learning_rate",)),
    ("augmentation strength", ("aug_strength",)),
)


class TrainingCurves(StatefulCallback):
    """Plots loss and accuracy (train, val, test), learning rate and strength.

    The PNG (matplotlib, Agg backend) is written to a temporary file and
    renamed over `path`, so a reader never sees half an image. The rows are
    kept as state, so a resumed run keeps the whole curve. Put it last in the
    callback list, so every other callback has written its keys.

    Drawing costs about half a second on a 2-core CPU, so a run of short
    epochs draws every few epochs (`every`) and once more when training
    ends, stopped early or not; the rows themselves are recorded every epoch.

    Args:
        path: where the PNG goes.
        state_dir: where to keep the rows for a resume.
        monitor, mode: the metric that picks the reported model (`val_` +
            monitor, best by mode), marked on every panel; the `test_*`
            curves are labelled as the model of each epoch, which is not
            the reported one.
        every: draw after every `every`-th epoch (and when training ends).
            Default 1: every epoch.

    Example:

    >>> curves = TrainingCurves("curves.png")
    """

    stage = Stage.LOGGER  # it plots the keys the controllers and the evaluation write

    def __init__(self, path, state_dir=None, monitor: str = "accuracy", mode: str = "max", every: int = 1):
        super().__init__(state_dir=state_dir, state_name="training_curves")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Received: every={every!r}. Expected a whole number of epochs >= 1.")
        self.path = pathlib.Path(path)
        self.monitor, self.mode, self.every = monitor, mode, every
        self.reset()


    def reset(self):
        self.rows = []

    def get_state(self):
        return {"rows": self.rows}

    def set_state(self, state):
        self.rows = list(state["rows"])

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_for_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.rows.append(row)
        if (epoch + 1) % self.every == 0:
            self.render()
        self.save_state(epoch + 1)

    def on_train_end(self, logs=None):
        if self.rows and self.rows[-1]["epoch"] % self.every:  # the last epoch was not drawn yet
            self.render()

    def best_epoch(self):
        """The epoch (1-based) with the best `val_<monitor>` so far, as the checkpoint keeps it; None before one."""
        key = f"val_{self.monitor}"
        position = best_position([row.get(key) for row in self.rows], self.mode)
        return None if position is None else self.rows[position]["epoch"]

    def render(self) -> pathlib.Path:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        figure = Figure(figsize=(10, 7), dpi=80)
        axes = figure.subplots(2, 2).ravel()
        epochs = [row["epoch"] for row in self.rows]
        best = self.best_epoch()
        for axis, (title, keys) in zip(axes, PANELS):
            for key in keys:
                points = [(e, row.get(key)) for e, row in zip(epochs, self.rows)]
                points = [(e, v) for e, v in points if v is not None and math.isfinite(v)]
                if points:
                    xs, ys = zip(*points)
                    # test_* is the model of that epoch; report.json's test figure is the best model's.
                    label = f"{key} (model of that epoch)" if key.startswith("test_") else key
                    axis.plot(xs, ys, marker="o" if key.startswith("test_") else None, markersize=4, label=label)
            if best is not None:
                axis.axvline(best, color="gray", linestyle="--", linewidth=1,
                             label=f"best val_{self.monitor} (epoch {best}): the reported model")
            axis.set_title(title)
            axis.set_xlabel("epoch")
            if title == "loss" and axis.lines:
                axis.set_yscale("log")  # the first epoch would flatten the rest
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=8)
        figure.tight_layout()
        return atomic_save_figure(figure, self.path)
