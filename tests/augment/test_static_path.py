"""The static-shape path: same augmentation as the dynamic path, compiled by XLA, mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from augpipe import augment
from augpipe.augment import ops

CASES = [("op", name) for name in augment.list_ops()] + [
    ("policy", name) for name in augment.list_policies() if name != "ops"
]


def make_layer(kind, name, shapes, strength, seed=3):
    policy = augment.get_policy("ops", ops=[name]) if kind == "op" else augment.get_policy(name)
    return augment.Augment(policy, strength=strength, seed=seed, shapes=shapes)


@pytest.fixture(scope="module")
def batches(embedded_splits):
    rng = np.random.default_rng(0)
    # Digits, and smooth colour images (a gradient with noise) of another size.
    ramp = np.linspace(0, 200, 40, dtype=np.float32)
    colour = (ramp[None, :, None, None] + ramp[None, None, :24, None] * 0.2
              + rng.integers(0, 50, (48, 40, 24, 3))).clip(0, 255).astype(np.uint8)
    return {"digits": embedded_splits.train.images[:96], "colour": colour}


@pytest.mark.parametrize("data", ["digits", "colour"])
@pytest.mark.parametrize("kind,name", CASES)
def test_both_paths_make_the_same_decisions_and_images(kind, name, data, batches):
    images = batches[data]
    converted = images.astype(np.float32) / 255.0
    for strength in (0.3, 1.0):
        dynamic = make_layer(kind, name, "dynamic", strength)(images, training=True).numpy()
        static = make_layer(kind, name, "static", strength)(images, training=True).numpy()
        # Same decisions: the same images were changed.
        changed_dynamic = np.abs(dynamic - converted).reshape(len(images), -1).max(axis=1) > 0
        changed_static = np.abs(static - converted).reshape(len(images), -1).max(axis=1) > 0
        np.testing.assert_array_equal(changed_dynamic, changed_static)
        # Same parameters and pixels: within 1/255 on average (the issue's
        # bound), and in fact within float rounding on every pixel (a tenth
        # of a grey level at most: augmix's weighted sums of three chains).
        assert np.abs(dynamic - static).mean() < 1.0 / 255.0
        assert np.abs(dynamic - static).max() < 0.1 / 255.0


def test_static_warp_is_the_projective_transform():
    images = tf.random.stateless_uniform((6, 20, 16, 3), seed=(4, 5))
    matrices = ops.about_center(
        ops.compose(
            ops.rotation_matrix(tf.linspace(-0.5, 0.5, 6), None, None),
            ops.scale_matrix(tf.linspace(0.8, 1.2, 6), tf.linspace(0.8, 1.2, 6), None, None),
            ops.translation_matrix(tf.linspace(-3.0, 3.0, 6), tf.linspace(2.0, -2.0, 6)),
        ),
        20,
        16,
    )
    difference = np.abs(ops.apply_affine_static(images, matrices).numpy() - ops.apply_affine(images, matrices).numpy())
    assert difference.max() < 1e-5
    # The identity reads every pixel at its own position: exact.
    identity = ops.identity_matrix(6)
    np.testing.assert_array_equal(ops.apply_affine_static(images, identity).numpy(), images.numpy())


@pytest.mark.parametrize("policy", ["mnist", "randaugment"])
def test_xla_compiled_augmentation_draws_what_the_uncompiled_one_draws(policy, batches):
    images = batches["digits"]
    eager = augment.Augment(policy, strength=1.0, seed=11, shapes="static")
    compiled = augment.Augment(policy, strength=1.0, seed=11)
    run = tf.function(lambda x: compiled(x, training=True), jit_compile=True)
    for _ in range(2):  # two batches: the counter advances the same way
        expected = eager(images, training=True).numpy()
        # XLA fuses the float arithmetic differently: a few 1e-6 of rounding,
        # where a different draw would differ by whole grey levels (1 / 255).
        np.testing.assert_allclose(run(images).numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(compiled.rng_state.numpy(), eager.rng_state.numpy())


def test_random_helpers_are_the_same_under_xla():
    seeds = [tf.constant(s, tf.int64) for s in ([3, 7], [-5, 12345678901], [2**62, -(2**62)])]

    def draws(seed):
        return (ops.uniform([64, 9], seed, -1.0, 1.0), ops.split_seed(seed, 3), ops.fold_in(seed, 5),
                ops.standard_normal_noise([4, 8, 8, 1], seed), ops.standard_normal_noise([1, 1 << 20], seed))

    compiled = tf.function(draws, jit_compile=True)
    for seed in seeds:
        for plain, xla in zip(draws(seed), compiled(seed)):
            np.testing.assert_allclose(plain.numpy(), xla.numpy(), rtol=1e-6, atol=1e-6)
    # TensorFlow's own stateless generators do not have this property (why augpipe has its own).
    plain = tf.random.stateless_uniform([8], seed=seeds[1])
    assert not np.allclose(plain.numpy(), tf.function(tf.random.stateless_uniform, jit_compile=True)([8], seed=seeds[1]))


def test_fresh_normals_are_standard_normal():
    noise = ops.standard_normal_noise([1, 1 << 20], tf.constant([1, 2], tf.int64)).numpy()
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1.0) < 0.01
    assert np.isfinite(noise).all()


def test_auto_takes_the_static_path_only_under_xla(monkeypatch, batches):
    calls = []
    policy = augment.get_policy("mnist")
    monkeypatch.setattr(policy, "apply", lambda images, params: calls.append("dynamic") or images)
    monkeypatch.setattr(policy, "apply_static", lambda images, params: calls.append("static") or images)
    layer = augment.Augment(policy, seed=0)
    images = batches["digits"][:8]
    layer(images, training=True)
    tf.function(lambda x: layer(x, training=True))(images)
    tf.function(lambda x: layer(x, training=True), jit_compile=True)(images)
    assert calls == ["dynamic", "dynamic", "static"]
    assert not ops.tracing_under_xla()
    assert tf.function(lambda: tf.constant(ops.tracing_under_xla()), jit_compile=True)().numpy()


def test_models_with_augment_keep_xla():
    from keras.src.trainers.trainer import model_supports_jit

    augmented = keras.Sequential(
        [keras.Input((28, 28, 1), dtype="uint8"), augment.Augment("mnist", seed=0), keras.layers.Flatten(),
         keras.layers.Dense(3)]
    )
    # What Keras' jit_compile="auto" consults on a GPU machine.
    assert augmented.layers[0].supports_jit and model_supports_jit(augmented)


def small_model(policy="mnist"):
    layer = augment.Augment(policy, strength=0.5, seed=0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1), dtype="uint8"),
            layer,
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, dtype="float32"),
        ]
    )
    return model, layer


def test_fit_with_jit_compile_true_on_cpu(embedded_splits, caplog, monkeypatch):
    images, labels = embedded_splits.train.images[:256], embedded_splits.train.labels[:256]
    model, layer = small_model()
    traces = []
    static = layer.policy.apply_static
    monkeypatch.setattr(layer.policy, "apply_static", lambda *a: traces.append(1) or static(*a))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    history = model.fit(images, labels, batch_size=64, epochs=2, verbose=0, shuffle=False)
    assert model.jit_compile is True
    assert np.all(np.isfinite(history.history["loss"]))
    # The step was traced under XLA, on the static path (a compile failure
    # raises: tf.function(jit_compile=True) never falls back).
    assert traces
    count = len(traces)
    # The strength is still a variable of the compiled step: changing it
    # changes the augmentation without a new trace.
    layer.set_strength(1.0)
    model.fit(images, labels, batch_size=64, epochs=1, verbose=0, shuffle=False)
    assert len(traces) == count
    assert not [r for r in caplog.records if "xla" in r.getMessage().lower()]


@pytest.fixture
def restore_dtype_policy():
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("dtype_policy,compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision(dtype_policy, compute, restore_dtype_policy, embedded_splits):
    images, labels = embedded_splits.train.images[:128], embedded_splits.train.labels[:128]
    keras.config.set_dtype_policy(dtype_policy)
    model, layer = small_model()
    assert layer.compute_dtype == compute
    assert layer.strength.dtype == "float32" and layer.strength.value.dtype == tf.float32
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, labels, batch_size=32, epochs=1, verbose=0, shuffle=False)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.layers[0].output.dtype == compute
    # Computed in float32, handed on in the compute dtype: the float32
    # layer's output, rounded once.
    half = augment.Augment("mnist", strength=0.7, seed=5)
    keras.config.set_dtype_policy("float32")
    full = augment.Augment("mnist", strength=0.7, seed=5)
    out_half = half(images[:16], training=True)
    out_full = full(images[:16], training=True)
    assert out_half.dtype == compute and out_full.dtype == tf.float32
    np.testing.assert_array_equal(out_half.numpy(), tf.cast(out_full, compute).numpy())
