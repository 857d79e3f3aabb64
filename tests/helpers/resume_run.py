"""Runs the exact-resume scenario in a fresh process (op determinism is global).

Usage: python resume_run.py BACKUP_DIR CSV_PATH EPOCHS [KILL_AFTER (0: none)] [PLACEMENT]

PLACEMENT: device (augmentation in the model), host (in the pipeline, with
parallel calls), or host-mixup (MixUp/CutMix and augmentation in the pipeline).
Writes the final weights to CSV_PATH + ".npz".
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conftest import make_digits  # noqa: E402

from augpipe import augment  # noqa: E402
from augpipe import callbacks  # noqa: E402
from augpipe import pipelines  # noqa: E402


class Interrupt(Exception):
    pass


class KillAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise Interrupt()


def main(backup, csv_path, epochs, kill_after=None, placement="device"):
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    images, labels = make_digits(num_per_class=12)
    splits = pipelines.make_splits(pipelines.Source.from_arrays(images, labels), val_size=20, test_size=20, seed=0)
    host = placement != "device"
    mixup = placement == "host-mixup"
    layer = augment.Augment("mnist", strength=0.3, seed=5, placement="host" if host else "device")
    model = keras.Sequential([
        keras.Input((12, 12, 1), dtype="uint8"), layer, keras.layers.Flatten(),
        keras.layers.Dropout(0.3), keras.layers.Dense(10),
    ])
    loss = (keras.losses.CategoricalCrossentropy(from_logits=True) if mixup
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(keras.optimizers.Adam(callbacks.MultiplierSchedule(1e-2)), loss, metrics=["accuracy"])
    host_augment = None
    if host:
        host_augment = ([augment.MixUpCutMix(num_classes=10, seed=5)] if mixup else []) + [layer]
    train, epoch = pipelines.build_training_pipeline(splits.train, batch_size=32, seed=1, host_augment=host_augment,
                                                     one_hot=mixup, host_parallel_calls=4 if host else None)
    val = pipelines.build_pipeline(splits.val, batch_size=32, training=False, one_hot=mixup)
    test = pipelines.build_pipeline(splits.test, batch_size=32, training=False, one_hot=mixup)
    controller = callbacks.AdaptiveStrength(layer, warmup_epochs=1, speed=0.1, state_dir=backup)
    callback_list = [
        pipelines.EpochSync(epoch),
        callbacks.LearningRateControl(warmup_epochs=1, patience=1, strength_controller=controller, state_dir=backup),
        keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False),
        callbacks.RandomStateBackup(backup),
        controller,
        callbacks.ScheduledEvaluation(test, every=2, state_dir=backup),
        keras.callbacks.CSVLogger(csv_path, append=True),
    ]
    if kill_after:
        callback_list.append(KillAfter(kill_after))
    try:
        model.fit(train, validation_data=val, epochs=epochs, verbose=0, callbacks=callback_list, shuffle=False)
    except Interrupt:
        return
    np.savez(csv_path + ".npz", *model.get_weights())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 and int(sys.argv[4]) else None,
         sys.argv[5] if len(sys.argv) > 5 else "device")
