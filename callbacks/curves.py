"""A PNG of the training curves, rewritten atomically after every epoch."""

from __future__ import annotations

import math
import os
import pathlib
import tempfile

from augpipe.callbacks.base import StatefulCallback, file_mode
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

    Args:
        path: where the PNG goes.
        state_dir: where to keep the rows for a resume.

    Example:

    >>> curves = TrainingCurves("curves.png")
    """

    stage = Stage.LOGGER  # it plots the keys the controllers and the evaluation write

    def __init__(self, path, state_dir=None):
        super().__init__(state_dir=state_dir, state_name="training_curves")
        self.path = pathlib.Path(path)
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
        self.render()
        self.save_state(epoch + 1)

    def render(self) -> pathlib.Path:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        figure = Figure(figsize=(10, 7), dpi=80)
        axes = figure.subplots(2, 2).ravel()
        epochs = [row["epoch"] for row in self.rows]
        for axis, (title, keys) in zip(axes, PANELS):
            for key in keys:
                points = [(e, row.get(key)) for e, row in zip(epochs, self.rows)]
                points = [(e, v) for e, v in points if v is not None and math.isfinite(v)]
                if points:
                    xs, ys = zip(*points)
                    axis.plot(xs, ys, marker="o" if key.startswith("test_") else None, markersize=4, label=key)
            axis.set_title(title)
            axis.set_xlabel("epoch")
            if title == "loss" and axis.lines:
                axis.set_yscale("log")  # the first epoch would flatten the rest
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=8)
        figure.tight_layout()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".png")
        os.close(handle)
        try:
            os.chmod(temporary, file_mode())  # as open() would: mkstemp makes 0600
            figure.savefig(temporary, format="png")
            os.replace(temporary, self.path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return self.path
