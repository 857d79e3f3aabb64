"""Runs run-mnist's experiment in this process, optionally dying abruptly (os._exit) at one step.

Usage: python kill_run.py NPZ_SPEC RUN_DIR EPOCHS [resume] [die=WHERE:EPOCH] [ema=MOMENTUM]

WHERE is the class name of a callback in run-mnist's list (die right after
that callback's on_epoch_end), `batch` (die inside the epoch, after batch 2), or
`weights-write` (die while the epoch's weights are written, before the
rename). os._exit skips every cleanup, like a SIGKILL.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from augpipe.callbacks import commit  # noqa: E402
from augpipe.scripts import experiment  # noqa: E402


class Die(keras.callbacks.Callback):
    def __init__(self, where, epoch):
        super().__init__()
        self.where, self.epoch, self.current = where, epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.where == "batch" and self.current == self.epoch and batch == 2:
            os._exit(17)

    def on_epoch_end(self, epoch, logs=None):
        if self.where not in ("batch", "weights-write") and epoch == self.epoch:
            os._exit(17)


def main(spec, run_dir, epochs, resume=False, die=None, ema=0.0):
    if die:
        where, epoch = die.split(":")
        epoch = int(epoch)
        original = experiment.build_callbacks

        def build(*args, **kwargs):
            found = original(*args, **kwargs)
            names = [type(c).__name__ for c in found]
            position = len(found) - 1 if where in ("batch", "weights-write") else names.index(where)
            found.insert(position + 1, Die(where, epoch))
            return found

        experiment.build_callbacks = build
        if where == "weights-write":
            real = commit._replace_atomically
            state = {"calls": 0}

            def write_then_die(write, path):
                if path.name == f"weights-{epoch + 1}.weights.h5":
                    write(str(path.with_name(f".{path.name}.tmp.weights.h5")))
                    os._exit(17)
                return real(write, path)

            commit._replace_atomically = write_then_die
    config = experiment.ExperimentConfig(
        source=spec, model="mlp", epochs=epochs, batch_size=32, deterministic=True, quiet=True,
        tensorboard=False, run_dir=run_dir, resume=resume, eval_every=1, ema=ema,
    )
    explicit = {"run_dir", "resume"} if resume else None
    experiment.run_experiment(config, explicit=explicit)


if __name__ == "__main__":
    args = sys.argv[1:]
    die = next((a.split("=", 1)[1] for a in args if a.startswith("die=")), None)
    ema = next((float(a.split("=", 1)[1]) for a in args if a.startswith("ema=")), 0.0)
    main(args[0], args[1], int(args[2]), resume="resume" in args, die=die, ema=ema)
