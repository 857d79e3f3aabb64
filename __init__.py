"""augpipe: tf.data input pipelines, in-graph augmentation with a live strength, and Keras callbacks.

The repository's top-level folders install as one package, ``augpipe``:

    from augpipe import augment, callbacks, pipelines

Importing ``augpipe`` registers every Keras object it defines (the ``Augment``
layer, the learning-rate schedule) under the ``augpipe`` package name, so
``keras.models.load_model("best.keras")`` works after ``import augpipe``.
The command-line tools live in ``augpipe.scripts``; the package root imports
nothing from them.
"""

from importlib import metadata as _metadata

# Before anything imports TensorFlow: a command's first screen without TensorFlow's startup notices.
from augpipe import _startup

_startup.quiet_tensorflow_startup()

from augpipe import augment, callbacks, pipelines  # noqa: E402

try:
    __version__ = _metadata.version("augpipe")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "augment", "callbacks", "pipelines"]
