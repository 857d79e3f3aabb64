"""A clean first screen for augpipe's commands.

TensorFlow's C++ runtime writes startup notices (oneDNN, CPU features, "could
not find cuda drivers", a failed ``cuInit`` on a machine without a GPU)
straight to file descriptor 2 while it is imported and while it first lists
devices, before ``TF_CPP_MIN_LOG_LEVEL`` takes effect. When the running
program is one of augpipe's commands, ``augpipe/__init__`` imports
TensorFlow through :func:`quiet_tensorflow_startup`, which drops exactly those
notices and passes every other line through. Library users are not affected:
the filter runs only for the commands, and never when TensorFlow is already
imported.

It sits at the package root, not in ``scripts``: the package imports it
before anything else, and the library never imports its commands. The name
of the running program (``sys.argv[0]``) is the one signal there is at that
moment: a console script imports ``augpipe`` (and with it TensorFlow)
before its ``main`` runs.

>>> running_a_command(["/usr/bin/python3"]), running_a_command(["/venv/bin/run-mnist"])
(False, True)
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

COMMANDS = ("run-mnist", "profile-input", "preview-augment", "score-run")

_STARTUP_NOISE = re.compile(
    r"^(?:"
    r"[IW]\d{4} \S+\s+\d+ \S+:\d+\]"  # absl INFO and WARNING lines
    r"|E\d{4} \S+\s+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit"  # no GPU on this machine
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions:"
    r")"
)


def running_a_command(argv: list | None = None) -> bool:
    """True when the program is one of augpipe's console scripts."""
    argv = sys.argv if argv is None else argv
    return bool(argv) and os.path.basename(str(argv[0])) in COMMANDS


def is_startup_noise(line: str) -> bool:
    """True for a TensorFlow startup notice that a command does not show."""
    return bool(_STARTUP_NOISE.match(line))


# What libjpeg and libpng print on file descriptor 2 about a file they cannot decode. augpipe reports each
# such file itself, by name, in one line (or counts it with --skip-bad-images).
_DECODER_NOISE = re.compile(
    r"^(?:Improper call to JPEG library|Corrupt JPEG data|Premature end of JPEG file|Input file read error"
    r"|Not a JPEG file|Invalid JPEG file structure|Bogus |Unsupported marker|libpng (?:error|warning))"
)


def is_decoder_noise(line: str) -> bool:
    """True for a line an image decoder prints about a file augpipe reports itself."""
    return bool(_DECODER_NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr(drop=None):
    """Capture file descriptor 2, then write back every line that `drop` (default: startup noise) rejects not."""
    drop = drop or is_startup_noise
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not drop(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_tensorflow_startup() -> None:
    """Import TensorFlow and list its devices with the startup notices filtered (commands only)."""
    if "tensorflow" in sys.modules or not running_a_command():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
