"""The probe: a fixed set of training images, evaluated clean and in inference mode at every epoch end.

A strength controller needs to know how much better the model does on the
images it trains on than on images it has not seen. Train accuracy is no
measure of that: it is a running mean over augmented batches in training
mode (dropout on, BatchNorm on batch statistics), and the strength itself
lowers it. The probe measures the training images the way validation
measures the val images: the same model, the same mode, no augmentation.
So "probe minus val" is a generalization gap, and BatchNorm statistics that
lag a high learning rate move both sides alike.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from augpipe.callbacks.order import Stage, Staged
from augpipe.validation import check_unit

PREFIX = "probe_"


def _probabilities(outputs: np.ndarray, from_logits) -> np.ndarray:
    outputs = np.asarray(outputs, np.float64)
    if from_logits is None:  # a softmax output: non-negative rows that sum to one
        from_logits = not (np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))
    if not from_logits:
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probe_figures(outputs, labels, confidence: float = 0.9, from_logits=None) -> dict:
    """`accuracy`, `loss` (cross-entropy) and `confident` of model outputs on the probe.

    `confident` is the share of probe images whose true class gets at least
    `confidence` probability: the analogue of StyleGAN2-ADA's r_t, which
    rises towards 1 as a model memorizes its training images.

    >>> figures = probe_figures(np.array([[4.0, 0.0], [0.0, 1.0]]), np.array([0, 0]))
    >>> figures["accuracy"], figures["confident"]
    (0.5, 0.5)
    """
    probabilities = _probabilities(outputs, from_logits)
    labels = np.asarray(labels).reshape(-1)
    if labels.size and labels.ndim == 1 and probabilities.shape[0] != labels.size:
        raise ValueError(f"{probabilities.shape[0]} outputs for {labels.size} probe labels.")
    true = probabilities[np.arange(labels.size), labels]
    return {
        "accuracy": float(np.mean(np.argmax(probabilities, axis=1) == labels)),
        "loss": float(np.mean(-np.log(np.clip(true, 1e-7, 1.0)))),
        "confident": float(np.mean(true >= confidence)),
    }


class ProbeEvaluation(Staged, keras.callbacks.Callback):
    """Evaluates the probe (`pipelines.make_probe`) at every epoch end, before the controllers decide.

    Writes `probe_accuracy`, `probe_loss` and `probe_confident` (the share
    of probe images whose true class gets at least `confidence` probability)
    into the logs. One inference pass over a few hundred images: on
    run-mnist's 3,500 training digits a 256-image probe is about 1 % of an
    epoch's images, and it is not backpropagated. The figures depend on
    the weights only, so a resumed run needs no state.

    Args:
        dataset: the probe as an evaluation pipeline
            (`pipelines.build_pipeline(probe, training=False)`): uint8 images
            and int labels, in a fixed order.
        confidence: the probability that counts an image as confidently
            known.
        from_logits: whether the model outputs logits; None decides from the
            outputs (rows of non-negative values summing to one are
            probabilities).
        prefix: the log keys' prefix.

    Example:

    >>> import tensorflow as tf
    >>> probe = tf.data.Dataset.from_tensor_slices((tf.zeros((4, 8, 8, 1), tf.uint8), [0, 1, 0, 1])).batch(2)
    >>> callback = ProbeEvaluation(probe)
    >>> callback.labels.tolist()
    [0, 1, 0, 1]
    """

    stage = Stage.PROBE

    def __init__(self, dataset, confidence: float = 0.9, from_logits=None, prefix: str = PREFIX):
        super().__init__()
        batches = [(np.asarray(images), np.asarray(labels)) for images, labels in dataset]
        # Held as one tensor and run through one compiled call: Keras' predict() sets up an iterator
        # every time, which cost more than the model on a few hundred images.
        self.images = np.concatenate([images for images, _ in batches]) if batches else np.zeros((0,))
        self.labels = np.concatenate([labels.reshape(len(labels), -1) for _, labels in batches]) if batches \
            else np.zeros((0, 1))
        if self.labels.shape[1] > 1:  # one-hot or soft targets
            self.labels = self.labels.argmax(axis=1)
        self.labels = self.labels.reshape(-1).astype(np.int64)
        if not self.labels.size:
            raise ValueError("ProbeEvaluation received an empty probe. Expected a dataset of (images, labels).")
        self.confidence = check_unit("confidence", confidence)
        self.from_logits = from_logits
        self.prefix = prefix
        self.last = None
        self._forward = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        import tensorflow as tf

        model = self.model
        self._forward = tf.function(lambda images: model(images, training=False))

    def evaluate(self) -> dict:
        """The probe's figures for the model's current weights (inference mode, no augmentation)."""
        if self._forward is None:
            self.on_train_begin()
        outputs = self._forward(self.images)
        return probe_figures(np.asarray(outputs, np.float64), self.labels, self.confidence, self.from_logits)

    def on_epoch_end(self, epoch, logs=None):
        self.last = self.evaluate()
        if logs is not None:
            for key, value in self.last.items():
                logs[self.prefix + key] = value if math.isfinite(value) else float("nan")
