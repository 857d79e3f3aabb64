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


def is_model_spec(kind: str) -> bool:
    """Whether `kind` names a model: `cnn`, `mlp`, `FILE.keras`, `package.module:function` or `file.py:function`."""
    return kind in MODELS or (isinstance(kind, str) and (kind.endswith(".keras") or ":" in kind))


def user_backbone(spec: str, input_shape, num_classes: int) -> keras.Model:
    """A user's model (`FILE.keras`, or a builder called as `function(input_shape, num_classes)`), checked.

    It takes float images in [0, 1] of `input_shape` (augpipe's `Augment`
    goes in front) and must output `(None, num_classes)`; a one-line
    ValueError says what does not fit.
    """
    from augpipe.scripts.profile_stages import check_user_model, load_user_model

    model = load_user_model(spec, tuple(input_shape), int(num_classes))
    check_user_model(model, spec, tuple(input_shape), int(num_classes))
    return model


def outputs_probabilities(model: keras.Model) -> bool:
    """Whether a model ends in a softmax (probabilities), not logits."""
    last = model.layers[-1] if model.layers else None
    if isinstance(last, keras.Model):  # a user's model inside augpipe's: its own last layer decides
        return outputs_probabilities(last)
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or getattr(activation, "__name__", "") == "softmax"


def build_model(kind: str, input_shape, num_classes: int, augment_layer, input_dtype="uint8") -> keras.Model:
    """`Input -> augment_layer -> backbone -> logits`, uncompiled.

    `kind` is `cnn`, `mlp`, or a user's model (`user_backbone`), which then
    follows the augmentation as one layer (its own compile settings are
    not used: the experiment compiles the whole model).

    Example:

    >>> from augpipe import augment
    >>> model = build_model("mlp", (28, 28, 1), 10, augment.Augment("none"))
    >>> model.output_shape
    (None, 10)
    """
    inputs = keras.Input(input_shape, dtype=input_dtype, name="images")
    x = augment_layer(inputs)
    if kind not in MODELS:
        return keras.Model(inputs, user_backbone(kind, input_shape, num_classes)(x), name="augpipe_user_model")
    for layer in build_backbone(kind, num_classes):
        x = layer(x)
    return keras.Model(inputs, x, name=f"mnist_{kind}")
