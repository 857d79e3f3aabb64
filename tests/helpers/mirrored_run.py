"""MirroredStrategy over 2 logical CPU devices vs one device, in a fresh process.

Prints one JSON line: max weight difference, replica strength values.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conftest import make_digits  # noqa: E402

from augpipe import augment  # noqa: E402
from augpipe import callbacks  # noqa: E402
from augpipe import pipelines  # noqa: E402
from augpipe.pipelines import distribute  # noqa: E402

GLOBAL_BATCH = 32
EPOCHS = 2


def make_model():
    keras.utils.set_random_seed(0)
    layer = augment.Augment("mnist", strength=0.0, seed=0)
    model = keras.Sequential([keras.Input((12, 12, 1), dtype="uint8"), layer, keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, layer


def main():
    images, labels = make_digits()
    split = pipelines.make_splits(pipelines.Source.from_arrays(images, labels), val_size=20, test_size=20, seed=0).train

    single, _ = make_model()
    dataset, epoch = pipelines.build_training_pipeline(split, batch_size=GLOBAL_BATCH, seed=3, drop_remainder=True)
    single.fit(dataset, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=[pipelines.EpochSync(epoch)])

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored, layer = make_model()
    train = distribute.build_training_input(split, strategy=strategy, batch_size=GLOBAL_BATCH, seed=3)
    # The schedule changes nothing the loss sees until epoch 2 ("step:0,0,0.7"),
    # so the weights stay comparable while the strength change is observable.
    mirrored.fit(
        train.dataset, epochs=EPOCHS, steps_per_epoch=train.steps_per_epoch, verbose=0, shuffle=False,
        callbacks=[train.epoch_sync, callbacks.StrengthSchedule(layer, "step:0,0,0.7:1")],
    )
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), mirrored.get_weights()))
    # A callback's assign in the cross-replica context must reach every replica.
    callbacks.StrengthSchedule(layer, "constant:0.7").on_epoch_begin(0)
    per_replica = strategy.run(lambda: tf.identity(layer.strength.value))
    values = [float(v.numpy()) for v in strategy.experimental_local_results(per_replica)]
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "steps_per_epoch": train.steps_per_epoch,
        "max_weight_difference": difference,
        "replica_strengths": values,
    }))


if __name__ == "__main__":
    main()
