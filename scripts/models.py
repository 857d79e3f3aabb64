"""The models of the MNIST experiment and of `profile-input`: `Input -> Augment -> backbone -> logits`."""

from __future__ import annotations

import keras

MODELS = ("cnn", "mlp")
# The smallest height and width each backbone takes: the CNN pools twice by 2.
MIN_IMAGE_SIZE = {"cnn": 4, "mlp": 1}


def build_backbone(kind: str, num_classes: int) -> list:
    """The layers after augmentation: the CNN run-mnist trains by default, or the classic MLP baseline."""
    if kind not in MODELS:
        raise ValueError(f"Received: kind={kind!r}. Expected one of: {', '.join(MODELS)}.")
    L = keras.layers
    if kind == "mlp":
        return [L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(num_classes)]
    return [
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dropout(0.3),
        L.Dense(128, activation="relu"),
        L.Dropout(0.3),
        L.Dense(num_classes),
    ]


def build_model(kind: str, input_shape, num_classes: int, augment_layer, input_dtype="uint8") -> keras.Model:
    """`Input -> augment_layer -> backbone -> logits`, uncompiled.

    Example:

    >>> from augpipe import augment
    >>> model = build_model("mlp", (28, 28, 1), 10, augment.Augment("none"))
    >>> model.output_shape
    (None, 10)
    """
    inputs = keras.Input(input_shape, dtype=input_dtype, name="images")
    x = augment_layer(inputs)
    for layer in build_backbone(kind, num_classes):
        x = layer(x)
    return keras.Model(inputs, x, name=f"mnist_{kind}")
