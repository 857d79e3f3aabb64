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
    # One convolution per resolution (32, 64, 128 filters): 8.3 M multiply-adds per 28x28 digit, 0.44x the
    # earlier two-per-resolution CNN's 18.7 M, for the same test accuracy (docs/design.md, decision 36).
    return [
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(128, 3, padding="same", activation="relu"),
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


def load_user_model(spec: str, *builder_args):
    """A Keras model from `file.keras`, `package.module:function` or `path/to/file.py:function`.

    A builder is called with `builder_args` (none for profile-input;
    run-mnist passes `(input_shape, num_classes)`).

    Every failure is a one-line ValueError naming the spec: a missing file
    or module, a file that is not a Keras model, a file with a syntax
    error, a builder that raises or returns something else.
    """
    import importlib
    import importlib.util
    import pathlib
    import zipfile

    import keras

    if spec.endswith(".keras"):
        path = pathlib.Path(spec).expanduser()
        if not path.is_file():
            raise ValueError(f"Model file not found: {str(path)!r}.")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{str(path)!r} is not a Keras model file (a .keras file is a zip archive written by "
                             "model.save). Pass a file saved with model.save('NAME.keras').")
        try:
            return keras.models.load_model(path, safe_mode=True)
        except Exception as error:  # Keras raises many types for a damaged or foreign archive
            raise ValueError(f"Cannot load {str(path)!r}: {type(error).__name__}: {_first_line(error)}") from None
    module_name, sep, function_name = spec.rpartition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(
            f"Unknown model {spec!r}. Expected none, mlp, cnn, a saved model (FILE.keras), or a function "
            "returning a compiled model (package.module:function or path/to/file.py:function)."
        )
    try:
        if module_name.endswith(".py"):
            file_spec = importlib.util.spec_from_file_location("augpipe_user_model", module_name)
            if file_spec is None or not pathlib.Path(module_name).is_file():
                raise ValueError(f"Model file not found: {module_name!r}.")
            module = importlib.util.module_from_spec(file_spec)
            file_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except SyntaxError as error:
        raise ValueError(f"{module_name!r} has a syntax error (line {error.lineno}): {error.msg}.") from None
    except Exception as error:  # ImportError, or whatever the module raises when it runs
        raise ValueError(f"Cannot import {module_name!r} for --model {spec!r}: {type(error).__name__}: "
                         f"{_first_line(error)}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"{module_name!r} has no function {function_name!r}.")
    try:
        model = function(*builder_args)
    except Exception as error:
        raise ValueError(f"--model {spec!r}: {function_name}() raised {type(error).__name__}: "
                         f"{_first_line(error)}") from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"{spec!r} returned {type(model).__name__}, not a keras.Model.")
    return model


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def check_user_model(model, spec: str, image_shape, num_classes: int) -> None:
    """Refuses, in one line, a user model whose inputs or outputs do not fit the data."""
    expected = tuple(model.input_shape[1:])
    if expected != tuple(image_shape):
        raise ValueError(f"The model {spec!r} takes inputs of shape {expected}, but the images have shape "
                         f"{tuple(image_shape)}. Use a matching --source (or --image-size/--channels), or build the model for "
                         "that shape.")
    outputs = model.output_shape
    if not (isinstance(outputs, tuple) and len(outputs) == 2 and outputs[1] == num_classes):
        raise ValueError(f"The model {spec!r} outputs shape {outputs}, but the data has {num_classes} classes. "
                         f"Expected outputs (None, {num_classes}).")
