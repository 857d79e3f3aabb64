"""One contract, run over every op and every policy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from augpipe import augment
from augpipe.pipelines import Source, build_pipeline, make_splits

CASES = [("op", name) for name in augment.list_ops()] + [
    ("policy", name) for name in augment.list_policies() if name != "ops"
]


def make_layer(kind, name, strength=0.5, seed=0, shapes="auto"):
    policy = augment.get_policy("ops", ops=[name]) if kind == "op" else augment.get_policy(name)
    return augment.Augment(policy, strength=strength, seed=seed, shapes=shapes)


# Ops that leave a one-channel image as it is: checked on colour images.
COLOUR_ONLY = {"color", "grayscale", "hue"}


@pytest.fixture(scope="module")
def gray_digits(embedded_splits):
    return embedded_splits.train.images[:64], embedded_splits.train.labels[:64]


@pytest.fixture(scope="module")
def colour_images():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 220, 20, dtype=np.float32)
    images = (ramp[None, :, None, None] * rng.uniform(0.3, 1.0, (64, 1, 1, 3))
              + rng.integers(0, 30, (64, 20, 20, 3))).clip(0, 255).astype(np.uint8)
    return images, np.arange(64) % 10


@pytest.fixture
def digits(request, gray_digits, colour_images):
    return colour_images if request.node.callspec.params["name"] in COLOUR_ONLY else gray_digits


@pytest.mark.parametrize("shapes", ["dynamic", "static"])
@pytest.mark.parametrize("kind,name", CASES)
def test_contract(kind, name, shapes, digits):
    images, labels = digits
    layer = make_layer(kind, name, shapes=shapes)
    converted = images.astype(np.float32) / 255.0

    out = layer(images, training=True).numpy()
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(layer(images, training=False).numpy(), converted)

    # Same seed, same input -> same output.
    np.testing.assert_array_equal(make_layer(kind, name, shapes=shapes)(images, training=True).numpy(), out)

    # strength = 0 is the exact identity (conversion only).
    layer.strength.assign(0.0)
    np.testing.assert_array_equal(layer(images, training=True).numpy(), converted)

    # Assigning the strength after tracing changes the output, no retrace.
    traces = []

    @tf.function
    def augment_batch(x):
        traces.append(1)
        return layer(x, training=True)

    layer.strength.assign(0.3)
    weak = augment_batch(images).numpy()
    layer.strength.assign(1.0)
    strong = augment_batch(images).numpy()
    assert len(traces) == 1
    if name != "none":
        assert not np.array_equal(weak, strong)
        assert not np.array_equal(strong, converted)


@pytest.mark.parametrize("kind,name", CASES)
def test_contract_in_tf_data_and_fit(kind, name, digits):
    images, labels = digits
    source = Source.from_arrays(images, labels, num_classes=10)
    splits = make_splits(source, val_size=10, test_size=10, seed=0)
    host = make_layer(kind, name, strength=0.2)
    traces = []

    def traced(x):
        traces.append(1)
        return host(x, training=True)

    ds = build_pipeline(splits.train, batch_size=16, training=True, host_augment=traced)
    first = [(x.numpy(), y.numpy()) for x, y in ds]
    host.strength.assign(1.0)
    second = [(x.numpy(), y.numpy()) for x, y in ds]
    assert len(traces) == 1, "changing strength must not retrace the dataset function"
    for x, _ in first + second:
        assert x.dtype == np.float32 and x.shape[1:] == images.shape[1:]
        assert 0.0 <= x.min() and x.max() <= 1.0
    # Labels untouched: per-epoch label order equals the un-augmented pipeline's.
    plain = build_pipeline(splits.train, batch_size=16, training=True)
    plain_labels = [y.numpy() for _, y in plain]
    np.testing.assert_array_equal(np.concatenate([y for _, y in first]), np.concatenate(plain_labels))
    if name != "none":
        assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, second))

    # Device side: inside a model's fit.
    device = make_layer(kind, name, strength=0.5)
    model = keras.Sequential(
        [keras.Input(images.shape[1:], dtype="uint8"), device, keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain = build_pipeline(splits.train, batch_size=16, training=True)
    history = model.fit(plain, epochs=2, verbose=0, shuffle=False)
    assert np.all(np.isfinite(history.history["loss"]))
