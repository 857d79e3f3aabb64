"""Per-class results of a model on a split: accuracy per class, counts, the confusion matrix, a picture.

`score(model, dataset, labels, class_names)` is what `run-mnist` writes into
report.json for the best model on the test split, and what `score-run` prints
for a finished run's `best.keras` on any source.

Example:

>>> figures = per_class_figures(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ("a", "b", "c"))
>>> figures["accuracy"], figures["per_class"]["a"]["accuracy"], figures["per_class"]["c"]["count"]
(0.75, 0.5, 0)
>>> figures["confusion"]
[[1, 1, 0], [0, 2, 0], [0, 0, 0]]
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def per_class_figures(labels, predictions, class_names: Sequence[str]) -> dict:
    """Accuracy, per-class accuracy and counts, the confusion matrix (rows: true class) and the weakest class."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    n = len(class_names)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    counts = confusion.sum(axis=1)
    per_class = {}
    for index, name in enumerate(class_names):
        correct = int(confusion[index, index])
        per_class[str(name)] = {
            "count": int(counts[index]),
            "correct": correct,
            "accuracy": correct / int(counts[index]) if counts[index] else None,
        }
    scored = [(figures["accuracy"], name) for name, figures in per_class.items() if figures["accuracy"] is not None]
    weakest = min(scored)[1] if scored else None
    return {
        "accuracy": float(np.mean(labels == predictions)) if labels.size else None,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "weakest_class": weakest,
    }


def predict_classes(model, dataset) -> tuple:
    """`(labels, predicted classes)` of a dataset of `(images, labels)` batches (one-hot labels allowed)."""
    labels, predictions = [], []
    for images, batch_labels in dataset:
        outputs = np.asarray(model(images, training=False))
        predictions.append(outputs.argmax(axis=1))
        batch_labels = np.asarray(batch_labels)
        labels.append(batch_labels.argmax(axis=1) if batch_labels.ndim == 2 else batch_labels)
    if not labels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(labels).astype(np.int64), np.concatenate(predictions).astype(np.int64)


def score(model, dataset, class_names: Sequence[str]) -> dict:
    """`per_class_figures` of `model` on `dataset`."""
    labels, predictions = predict_classes(model, dataset)
    return per_class_figures(labels, predictions, class_names)


def write_confusion_png(path, figures: dict, class_names: Sequence[str], title: Optional[str] = None) -> None:
    """The confusion matrix as a picture (rows: true class, columns: predicted), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from augpipe.callbacks.base import atomic_save_figure

    matrix = np.asarray(figures["confusion"])
    n = len(class_names)
    size = min(12.0, 1.2 + 0.55 * n)
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    shown = axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(n), [str(c) for c in class_names], rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(n), [f"{c} ({figures['per_class'][str(c)]['count']})" for c in class_names], fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class (test images)")
    if n <= 20:
        for row in range(n):
            for column in range(n):
                if matrix[row, column]:
                    axis.text(column, row, str(matrix[row, column]), ha="center", va="center", fontsize=7,
                              color="white" if matrix[row, column] > matrix.max() / 2 else "black")
    accuracy = figures["accuracy"]
    axis.set_title(title or (f"test accuracy {100 * accuracy:.2f} %" if accuracy is not None else "no test images"),
                   fontsize=10)
    figure.colorbar(shown, ax=axis, fraction=0.046)
    figure.tight_layout()
    atomic_save_figure(figure, path, dpi=100)
    plt.close(figure)


def format_figures(figures: dict) -> str:
    """Per-class lines and the confusion matrix, for a terminal."""
    names = list(figures["per_class"])
    width = max([len(n) for n in names] + [5])
    lines = [f"accuracy {100 * figures['accuracy']:.2f} %" if figures["accuracy"] is not None else "accuracy n/a"]
    for name, row in figures["per_class"].items():
        accuracy = "n/a" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f} %"
        lines.append(f"  {name:<{width}}  {row['correct']:>5} / {row['count']:<5} {accuracy}")
    lines.append("confusion (rows: true, columns: predicted, in the order above):")
    lines += ["  " + " ".join(f"{v:>5}" for v in row) for row in figures["confusion"]]
    return "\n".join(lines)
