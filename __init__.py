"""augpipe: tf.data input pipelines, in-graph augmentation with a live strength, and Keras callbacks.

The repository's top-level folders install as one package, ``augpipe``:

    from augpipe import augment, callbacks, pipelines

Importing ``augpipe`` registers every Keras object it defines (the ``Augment``
layer, the learning-rate schedule) under the ``augpipe`` package name, so
``keras.models.load_model("best.keras")`` works after ``import augpipe``.
The command-line tools live in ``augpipe.scripts``; the package root imports
nothing from them. When the program is one of those commands, nothing that
imports TensorFlow is loaded here: a command's ``--help`` answers at once,
and the command imports TensorFlow itself when it runs
(``_startup.quiet_tensorflow_startup``).
"""

import importlib as _importlib
from importlib import metadata as _metadata

from augpipe import _startup

try:
    __version__ = _metadata.version("augpipe")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "augment", "callbacks", "pipelines"]

if not _startup.running_a_command():
    from augpipe import augment, callbacks, pipelines  # noqa: E402,F401
    from augpipe.callbacks import lr as _lr  # noqa: E402,F401  (registers MultiplierSchedule with Keras)


def __getattr__(name):
    """The three libraries, loaded on first use inside a command."""
    if name in ("augment", "callbacks", "pipelines"):
        return _importlib.import_module(f"augpipe.{name}")
    raise AttributeError(f"module 'augpipe' has no attribute {name!r}")
