"""One worker of a two-process MultiWorkerMirroredStrategy run on loopback.

Usage: TF_CONFIG=... python multiworker_run.py OUT.npz
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
from augpipe import pipelines  # noqa: E402
from augpipe.pipelines import distribute  # noqa: E402


def main(out):
    strategy = distribute.make_strategy("multiworker")
    images, labels = make_digits()
    split = pipelines.make_splits(pipelines.Source.from_arrays(images, labels), val_size=20, test_size=20, seed=0).train
    with strategy.scope():
        keras.utils.set_random_seed(0)
        layer = augment.Augment("mnist", strength=0.3, seed=0)
        model = keras.Sequential([keras.Input((12, 12, 1), dtype="uint8"), layer, keras.layers.Flatten(), keras.layers.Dense(10)])
        model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = distribute.build_training_input(split, strategy=strategy, batch_size=32, seed=1)
    with distribute.multiworker_fit(model, strategy):
        model.fit(train.dataset, epochs=2, steps_per_epoch=train.steps_per_epoch, verbose=0, shuffle=False,
                  callbacks=[train.epoch_sync])
    np.savez(out, *model.get_weights())


if __name__ == "__main__":
    main(sys.argv[1])
