"""Models of the strength study that run-mnist does not ship: `--model benchmarks/study_models.py:bn_cnn`.

`bn_cnn` is the "small BatchNorm CNN" of the photo data set: three stages of
two 3x3 convolutions with BatchNorm (Keras' default momentum, 0.99, whose
moving statistics lag at a high learning rate: the case the probe signal is
for), global average pooling and dropout before the classes' logits.
"""

import keras


def bn_cnn(input_shape, num_classes):
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64, 128):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, layers.Dense(num_classes)(x), name="bn_cnn")
