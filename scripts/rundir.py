"""The run directory's safety rules: one run per directory, never silently replaced, resumable.

`open_run_dir` creates, refuses, replaces or reopens the directory (stage 2
of the experiment); `lock_run_dir` holds it for one run; `prepare_run_dir`
replaces an old run only once the new one has loaded its data;
`resolve_resume` reads a resumed run's saved options.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import json
import math
import os
import pathlib
import platform
import shutil
import time
from typing import Optional

import numpy as np

from augpipe.scripts.config import RESUMABLE_OVERRIDES, ConfigError, ExperimentConfig, RunError


def default_run_dir() -> pathlib.Path:
    """`runs/<timestamp>-<pid>`: two runs started in the same second never share a default name."""
    return pathlib.Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def is_augpipe_run(run_dir: pathlib.Path) -> bool:
    """True when `run_dir/config.json` is one augpipe wrote: its options, and versions naming augpipe."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(saved, dict)
        and isinstance(saved.get("options"), dict)
        and isinstance(saved.get("versions"), dict)
        and "augpipe" in saved["versions"]
        and "splits" in saved
    )


def _lock_path(run_dir: pathlib.Path) -> pathlib.Path:
    # Beside the directory, not in it: replacing the directory must not drop the lock.
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def lock_run_dir(run_dir: pathlib.Path):
    """Holds an exclusive lock on `run_dir` for one run (an flock, which a dead process releases).

    Raises `ConfigError` naming the process that holds it.
    """
    path = _lock_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as error:
        raise RunError(f"cannot use <run_dir> {str(run_dir)!r}: {_describe(error)}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"Run directory {str(run_dir)!r} is in use by process {holder}. Wait for it to end, "
                "or choose another <run_dir>."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def _describe(error: OSError) -> str:
    """One line for an OSError: what failed, on which file."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    return f"{reason}{where}"


def resolve_resume(config: ExperimentConfig, run_dir: pathlib.Path, explicit: Optional[set] = None) -> ExperimentConfig:
    """On a resume, the saved options, except those in `RESUMABLE_OVERRIDES` given explicitly."""
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise ConfigError(
            f"<resume>: {str(run_dir)!r} has no config.json, so there is no run to resume. Start it without <resume>."
        )
    backup = run_dir / "backup"
    if (backup / "latest.weights.h5").exists() and not (backup / "commit.json").exists():
        raise ConfigError(
            f"<resume>: {str(run_dir)!r} was written by an earlier augpipe (a Keras BackupAndRestore backup, "
            "no commit marker), which this version cannot continue without losing its log. Finish it with "
            "the version that started it, or start a new run."
        )
    try:
        options = json.loads(saved.read_text())["options"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunError(f"cannot read {str(saved)!r} ({type(error).__name__}: {error}).") from None
    if not is_augpipe_run(run_dir):
        raise RunError(
            f"<resume>: {str(saved)!r} is not a config.json augpipe wrote (expected an object with options, "
            "versions and splits); it was damaged or edited. Restore it from a copy, or start a new run with "
            "another <run_dir>."
        )
    explicit = explicit or set()
    changes = {}
    for key, value in options.items():
        if key in ("run_dir", "resume", "overwrite") or not hasattr(config, key):
            continue
        given = getattr(config, key)
        if key in explicit and key not in RESUMABLE_OVERRIDES and _as_saved(given) != value:
            raise ConfigError(
                f"<resume> cannot change <{key}> (saved: {value!r}, given: {given!r}). "
                f"Only {', '.join(f'<{name}>' for name in RESUMABLE_OVERRIDES)} may change."
            )
        if key not in explicit:
            changes[key] = value
    return dataclasses.replace(config, **changes)


def _as_saved(value):
    """An option as config.json holds it (tuples are JSON lists)."""
    return list(value) if isinstance(value, tuple) else value


def open_run_dir(config: ExperimentConfig, explicit: Optional[set] = None) -> tuple:
    """Stage 2: creates, refuses, replaces or reopens the run directory.

    Returns `(config, run_dir)`: a new config with `run_dir` filled in and, on
    a resume, the saved options (except `RESUMABLE_OVERRIDES` named in
    `explicit`). The given config is not changed.
    """
    run_dir = pathlib.Path(config.run_dir) if config.run_dir else default_run_dir()
    config = dataclasses.replace(config, run_dir=str(run_dir))
    if config.resume:
        return resolve_resume(config, run_dir, explicit), run_dir
    if run_dir.is_symlink() and config.overwrite:
        # Deleting through a link would empty a directory somewhere else.
        raise ConfigError(
            f"<overwrite> refused: {str(run_dir)!r} is a symbolic link (to {str(run_dir.resolve())!r}). "
            "augpipe never deletes through a link: remove the link, or give the real directory as <run_dir>."
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"<run_dir> {str(run_dir)!r} is a file, not a directory. Choose another <run_dir>.")
    blocked = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ConfigError(f"<run_dir> {str(run_dir)!r} is below {str(blocked)!r}, which is a file. "
                          "Choose another <run_dir>.")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise ConfigError(
                f"Run directory {str(run_dir)!r} already exists. Pass <resume> to continue it, "
                "<overwrite> to replace it, or choose another <run_dir>."
            )
        if not is_augpipe_run(run_dir):
            raise ConfigError(
                f"<overwrite> refused: {str(run_dir)!r} has no config.json written by augpipe, so it does "
                "not look like a run directory. Remove it yourself or choose another <run_dir>."
            )
    return config, run_dir


def prepare_run_dir(config: ExperimentConfig, run_dir: pathlib.Path) -> bool:
    """Stage 2b, once the data is loaded: makes the directory ready for the run's first file.

    With `overwrite`, the old run is moved aside (`replaced_path`, one
    rename) only now, so a run that fails earlier (a missing data file, say)
    never touches it, and it stays aside until the new run has committed an
    epoch: a failure, Ctrl-C or kill before that puts it back
    (`restore_replaced`, `recover_replaced`); after that it is deleted
    (`finish_replacement`). Returns True if the directory was created here.
    """
    try:
        if config.overwrite and not config.resume and run_dir.is_dir() and any(run_dir.iterdir()):
            os.replace(run_dir, replaced_path(run_dir))
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot prepare <run_dir> {str(run_dir)!r}: {_describe(error)}") from None
    return created


def resume_point(run_dir: pathlib.Path) -> int:
    """The last committed epoch of a run to resume (0: none), or a one-line `RunError` for an unreadable marker."""
    path = run_dir / "backup" / "commit.json"
    if not path.exists():
        return 0
    try:
        epoch = json.loads(path.read_text())["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch {epoch!r}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunError(
            f"<resume>: cannot read the commit marker {str(path)!r} ({type(error).__name__}: {error}); it is "
            "truncated or was edited. Restore it from a copy, or start the run again with <overwrite>."
        ) from None
    return epoch


def replaced_path(run_dir: pathlib.Path) -> pathlib.Path:
    """Where `--overwrite` keeps the old run until the new one has committed its first epoch."""
    return run_dir.parent / f".{run_dir.name}.replaced"


def _committed(run_dir: pathlib.Path) -> bool:
    return (run_dir / "backup" / "commit.json").is_file()


def restore_replaced(run_dir: pathlib.Path) -> bool:
    """Puts back the old run an `--overwrite` moved aside, if the new run committed no epoch; True if it did."""
    aside = replaced_path(run_dir)
    if not aside.is_dir() or _committed(run_dir):
        return False
    if run_dir.is_dir() and not run_dir.is_symlink():
        shutil.rmtree(run_dir)  # the new run's first files: nothing of it was committed
    os.replace(aside, run_dir)
    return True


def finish_replacement(run_dir: pathlib.Path) -> None:
    """Deletes the old run an `--overwrite` moved aside, once the new run has committed an epoch."""
    aside = replaced_path(run_dir)
    if aside.is_dir() and _committed(run_dir):
        # rmtree unlinks symbolic links inside the directory; it never follows them out of it.
        shutil.rmtree(aside)


def recover_replaced(run_dir: pathlib.Path) -> Optional[str]:
    """At the start of any run on `run_dir`: settles what an interrupted `--overwrite` left.

    The old run waits aside: if the new run committed an epoch, the old one
    is deleted; otherwise the new run's files go and the old run is put
    back. Returns a line saying what was done, or None.
    """
    aside = replaced_path(run_dir)
    if not aside.is_dir():
        return None
    try:
        if _committed(run_dir):
            finish_replacement(run_dir)
            return f"deleted the run that an interrupted <overwrite> of {str(run_dir)!r} had replaced"
        restore_replaced(run_dir)
    except OSError as error:
        raise RunError(f"cannot restore the run that <overwrite> moved aside to {str(aside)!r}: "
                       f"{_describe(error)}") from None
    return (f"restored the run in {str(run_dir)!r} that an interrupted <overwrite> had moved aside "
            "(the new run had not committed an epoch)")


def original_epochs(run_dir: pathlib.Path) -> int:
    """The `epochs` a run was started with (its config.json), which a resume may extend."""
    return int(json.loads((run_dir / "config.json").read_text())["options"]["epochs"])


def _forget_if_nothing_trained(run_dir: pathlib.Path, created: bool) -> None:
    """A run this call created that failed before its first epoch leaves nothing that blocks a rerun."""
    if created and not (run_dir / "backup" / "commit.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)


# The run directory's files: what config.json and report.json hold, what log.csv says.


def package_versions() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("augpipe", "tensorflow", "keras", "numpy", "tensorflow-datasets", "albumentations", "click", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def read_log(path) -> list:
    """The rows of a run's `log.csv` as dicts (empty when there is none yet)."""
    if not pathlib.Path(path).is_file():
        return []
    with open(path) as handle:
        return list(csv.DictReader(handle))
