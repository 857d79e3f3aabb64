import keras
import numpy as np
import pytest
import tensorflow as tf

from augpipe import augment
from augpipe.augment import ops


def test_unknown_policy_lists_and_suggests():
    with pytest.raises(ValueError, match=r"Unknown policy 'mnsit'. Valid policies: augmix, cifar, mnist, none, ops, randaugment, randaugment_digits, trivialaugment. Did you mean 'mnist'"):
        augment.Augment("mnsit")
    with pytest.raises(ValueError, match="Unknown op 'rotat'.*Did you mean 'rotate'"):
        augment.get_policy("ops", ops=["rotat"])


@pytest.mark.parametrize("bad", [-0.1, 1.5, "high", None, True])
def test_bad_strength(bad):
    with pytest.raises(ValueError, match=r"Received: strength=.*Expected a float in \[0, 1\]"):
        augment.Augment("mnist", strength=bad)
    layer = augment.Augment("mnist", strength=0.5)
    with pytest.raises(ValueError, match="Expected a float in"):
        layer.set_strength(bad)


def test_three_d_input_is_refused():
    layer = augment.Augment("mnist", seed=0)
    with pytest.raises(ValueError, match=r"expects a batch of images \(B, H, W, C\). Received a tensor of shape \(28, 28, 1\)"):
        layer(np.zeros((28, 28, 1), np.uint8), training=True)


def test_save_load_round_trip(tmp_path):
    layer = augment.Augment("randaugment", strength=0.7, seed=11)
    model = keras.Sequential([keras.Input((28, 28, 1), dtype="uint8"), layer, keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).integers(0, 255, (4, 28, 28, 1), dtype=np.uint8)
    model.layers[0].strength.assign(0.25)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.layers[0]
    assert isinstance(restored, augment.Augment)
    assert restored.seed == 11 and restored.policy.name == "randaugment" and restored.policy.num_ops == 2
    assert float(restored.strength.numpy()) == pytest.approx(0.25)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # The random stream continues from the saved state.
    np.testing.assert_array_equal(restored(x, training=True).numpy(), layer(x, training=True).numpy())


def test_policy_config_round_trip():
    policy = augment.get_policy("ops", ops={"rotate": (0.5, 10.0), "noise": (1.0, 0.05)})
    again = augment.get_policy({"name": "ops", "config": policy.get_config()})
    assert again.ops_config == policy.ops_config


def test_randaugment_picks_ops_per_image():
    policy = augment.get_policy("randaugment", num_ops=1)
    params = policy.sample(512, 28, 28, tf.constant(1.0), tf.constant([0, 1], tf.int64))
    gates = np.stack([params[name]["gate"].numpy() for name in policy.op_order], axis=1)
    assert gates.sum(axis=1).max() == 1  # at most one op per image
    counts = gates.sum(axis=0)
    assert (counts > 20).all()  # every op is chosen by some images
    assert 0 < (gates.sum(axis=1) == 0).sum() < 512  # identity is chosen too


def test_mnist_gates_follow_strength():
    policy = augment.get_policy("mnist")
    seed = tf.constant([3, 4], tf.int64)
    low = policy.sample(4000, 28, 28, tf.constant(0.1), seed)
    high = policy.sample(4000, 28, 28, tf.constant(0.5), seed)
    rate_low = low["rotate"]["gate"].numpy().mean()
    rate_high = high["rotate"]["gate"].numpy().mean()
    assert rate_low == pytest.approx(0.8 * 0.2, abs=0.03)
    assert rate_high == pytest.approx(0.8, abs=0.03)
    angles = np.abs(high["rotate"]["angle"].numpy()[high["rotate"]["gate"].numpy()])
    assert angles.max() <= np.deg2rad(20.0 * 0.5) + 1e-6


def test_one_warp_per_batch(monkeypatch):
    calls = []
    original = ops.apply_affine

    def counting(images, matrices, **kwargs):
        calls.append(int(images.shape[0]))
        return original(images, matrices, **kwargs)

    monkeypatch.setattr(ops, "apply_affine", counting)
    elastic_calls = []
    original_elastic = ops.elastic

    def counting_elastic(images, *args, **kwargs):
        elastic_calls.append(int(images.shape[0]))
        return original_elastic(images, *args, **kwargs)

    monkeypatch.setattr(ops, "elastic", counting_elastic)
    layer = augment.Augment("mnist", strength=1.0, seed=0)
    layer(np.zeros((64, 28, 28, 1), np.uint8), training=True)  # eager: only the taken branch runs
    assert len(calls) == 1 and len(elastic_calls) == 1
    # Every image is resampled once: by the warp or by the fused elastic.
    assert calls[0] + elastic_calls[0] == 64 and elastic_calls[0] > 0


def test_about_center_matches_centered_maps():
    angles, scales, shears = tf.constant([0.3, -0.2]), tf.constant([1.1, 0.9]), tf.constant([0.2, -0.1])
    shift = ops.translation_matrix(tf.constant([1.0, 2.0]), tf.constant([0.0, 3.0]))
    centered = ops.compose(
        shift,
        ops.rotation_matrix(angles, 28, 20),
        ops.scale_matrix(scales, scales, 28, 20),
        ops.shear_matrix(shears, -shears, 28, 20),
    )
    about_origin = ops.compose(
        shift,
        ops.rotation_matrix(angles, None, None),
        ops.scale_matrix(scales, scales, None, None),
        ops.shear_matrix(shears, -shears, None, None),
    )
    np.testing.assert_allclose(ops.about_center(about_origin, 28, 20).numpy(), centered.numpy(), atol=1e-5)
    np.testing.assert_allclose(ops.compose(shift, shift).numpy()[0, :2, 2], [-2.0, 0.0])


def test_elastic_with_matrix_is_the_warp_when_the_field_is_zero():
    images = tf.random.stateless_uniform((3, 28, 20, 2), seed=(1, 2))
    matrices = ops.compose(
        ops.rotation_matrix(tf.constant([0.3, 0.0, -0.2]), 28, 20),
        ops.translation_matrix(tf.constant([1.5, 0.0, -3.0]), tf.constant([0.0, 2.0, 1.0])),
    )
    fused = ops.elastic(images, tf.zeros((3, 4, 4, 2)), [2.0, 2.0, 2.0], matrices).numpy()
    np.testing.assert_allclose(fused, ops.apply_affine(images, matrices).numpy(), atol=2e-3)
    # Inside a graph with unknown sizes the same field and sampler are built.
    noise = tf.random.stateless_uniform((3, 4, 4, 2), seed=(3, 4), minval=-1.0, maxval=1.0)
    dynamic = tf.function(
        lambda x: ops.elastic(x, noise, [2.0, 2.0, 2.0], matrices),
        input_signature=[tf.TensorSpec((None, None, None, 2), tf.float32)],
    )
    np.testing.assert_allclose(
        dynamic(images).numpy(), ops.elastic(images, noise, [2.0, 2.0, 2.0], matrices).numpy(), atol=1e-5
    )


def test_policy_resamples_each_image_once_and_keeps_the_order():
    policy = augment.get_policy("ops", ops={"rotate": (1.0, 30.0), "elastic": (0.5, 3.0)})
    images = tf.random.stateless_uniform((32, 28, 28, 1), seed=(5, 6))
    params = policy.sample(32, 28, 28, tf.constant(1.0), tf.constant([7, 8], tf.int64))
    out = policy.apply(images, params).numpy()
    gate = params["elastic"]["gate"].numpy()
    assert 0 < gate.sum() < 32
    matrices = ops.rotation_matrix(params["rotate"]["angle"], 28, 28)
    warped = ops.apply_affine(images, matrices).numpy()
    distorted = ops.elastic(images, params["elastic"]["noise"], params["elastic"]["alpha"], matrices).numpy()
    np.testing.assert_allclose(out[~gate], warped[~gate], atol=1e-5)
    np.testing.assert_allclose(out[gate], distorted[gate], atol=1e-5)


@pytest.mark.parametrize("strength", [0.1, 1.0])
def test_identity_parameter_ops_share_one_pass(strength):
    # At 0.1 a minority of images is selected (gather + scatter); at 1.0
    # most are (whole batch). Both give the ops applied one after the other.
    policy = augment.get_policy("ops", ops={"erase": (0.5, 0.25), "brightness": (0.5, 0.3)})
    assert policy.pixel_groups == [["erase", "brightness"]]
    images = tf.random.stateless_uniform((64, 12, 12, 1), seed=(9, 9))
    params = policy.sample(64, 12, 12, tf.constant(strength), tf.constant([1, 2], tf.int64))
    selected = (params["erase"]["gate"] | params["brightness"]["gate"]).numpy().mean()
    assert (selected < 1 / 3) == (strength < 0.5)
    expected = ops.brightness(ops.erase(images, params["erase"]["boxes"]), params["brightness"]["delta"])
    np.testing.assert_allclose(policy.apply(images, params).numpy(), expected.numpy(), atol=1e-6)
    digits = augment.get_policy("randaugment_digits")
    assert digits.pixel_groups == [["contrast"], ["brightness", "gamma", "noise", "erase"]]
    # Costlier ops (reductions, a smoothing) keep a pass each even with identity parameters.
    paper = augment.get_policy("randaugment")
    assert ["color"] in paper.pixel_groups and ["sharpness"] in paper.pixel_groups


def test_standard_normal_noise():
    seed = tf.constant([1, 2], tf.int64)
    small = ops.standard_normal_noise([64, 28, 28, 1], seed).numpy()
    np.testing.assert_array_equal(small, ops.standard_normal_noise([64, 28, 28, 1], seed).numpy())
    other = ops.standard_normal_noise([64, 28, 28, 1], tf.constant([1, 3], tf.int64)).numpy()
    assert not np.array_equal(small, other)
    assert abs(small.mean()) < 0.02 and small.std() == pytest.approx(1.0, abs=0.02)
    # Larger than half the bank: fresh normals, same distribution.
    large = ops.standard_normal_noise([1, 1024, 1024, 1], seed).numpy()
    assert ops.NOISE_BANK_SIZE // 2 < large.size
    assert abs(large.mean()) < 0.01 and large.std() == pytest.approx(1.0, abs=0.01)


def test_geometric_matrices():
    image = np.zeros((1, 9, 9, 1), np.float32)
    image[0, 4, 6, 0] = 1.0  # right of center
    rotated = ops.apply_affine(image, ops.rotation_matrix(tf.constant([np.pi / 2]), 9, 9)).numpy()
    assert rotated[0, 2, 4, 0] == pytest.approx(1.0)  # counter-clockwise: now above center
    moved = ops.apply_affine(image, ops.translation_matrix(tf.constant([1.0]), tf.constant([2.0]))).numpy()
    assert moved[0, 6, 7, 0] == pytest.approx(1.0)
    flipped = ops.apply_affine(image, ops.flip_matrix(tf.constant([True]), tf.constant([False]), 9, 9)).numpy()
    assert flipped[0, 4, 2, 0] == pytest.approx(1.0)
    zoomed = ops.apply_affine(image, ops.scale_matrix(tf.constant([2.0]), tf.constant([2.0]), 9, 9)).numpy()
    assert zoomed[0, 4, 8, 0] == pytest.approx(1.0)
    identity = ops.compose(ops.rotation_matrix(tf.constant([0.3]), 9, 9), ops.rotation_matrix(tf.constant([-0.3]), 9, 9))
    np.testing.assert_allclose(identity.numpy()[0], np.eye(3), atol=1e-5)


def test_pixel_ops():
    images = tf.fill((2, 6, 6, 1), 0.5)
    np.testing.assert_allclose(ops.brightness(images, [0.2, -0.7]).numpy()[:, 0, 0, 0], [0.7, 0.0], atol=1e-6)
    np.testing.assert_allclose(ops.gamma(images, [1.0, 2.0]).numpy()[:, 0, 0, 0], [0.5, 0.25], atol=1e-6)
    boxes = tf.constant([[1.0, 1.0, 3.0, 4.0], [0, 0, 0, 0]])
    erased = ops.erase(images, boxes).numpy()
    assert erased[0, ..., 0].sum() == pytest.approx(0.5 * 36 - 0.5 * 6)
    assert (erased[0, 1:3, 1:4] == 0).all() and (erased[0, 0] == 0.5).all() and (erased[0, :, 4:] == 0.5).all()
    np.testing.assert_array_equal(erased[1], images.numpy()[1])
    filled = ops.erase(tf.fill((1, 6, 6, 3), 0.5), boxes[:1], fill_value=0.25).numpy()
    assert (filled[0, 1:3, 1:4] == 0.25).all() and filled.sum() == pytest.approx(0.5 * 108 - 0.25 * 18)
    noisy = ops.gaussian_noise(tf.fill((1, 64, 64, 1), 0.5), [0.1], tf.constant([1, 2], tf.int64)).numpy()
    assert noisy.std() == pytest.approx(0.1, rel=0.1)
    gradient = tf.reshape(tf.range(36, dtype=tf.float32), (1, 6, 6, 1)) / 36.0
    same = ops.elastic(gradient, tf.zeros((1, 4, 4, 2)), [3.0]).numpy()
    np.testing.assert_allclose(same, gradient.numpy(), atol=1e-6)
    moved = ops.elastic(gradient, tf.ones((1, 4, 4, 2)), [1.0]).numpy()
    np.testing.assert_allclose(moved[0, 2, 2, 0], gradient.numpy()[0, 3, 3, 0], atol=1e-5)


def test_apply_where_only_touches_selected():
    images = tf.zeros((6, 4, 4, 1))
    calls = []

    def plus(x, amount):
        calls.append(x.shape[0])
        return x + amount[:, None, None, None]

    mask = tf.constant([True, False, False, False, False, True])
    out = ops.apply_where(images, mask, plus, tf.range(6, dtype=tf.float32) + 1).numpy()
    assert out[:, 0, 0, 0].tolist() == [1, 0, 0, 0, 0, 6]
    untouched = ops.apply_where(images, tf.zeros(6, tf.bool), plus, tf.ones(6)).numpy()
    assert (untouched == 0).all()
    # 2 of 6 selected: the subset below one half, the whole batch above one third.
    calls.clear()
    ops.apply_where(images, mask, plus, tf.ones(6))
    ops.apply_where(images, mask, plus, tf.ones(6), subset_below=1 / 3)
    assert calls == [2, 6]




def test_op_definitions_are_checked_and_resampling_is_a_kind_not_a_name():
    from augpipe.augment import op_table

    with pytest.raises(ValueError, match="Received: kind='warp'. Expected one of: geometric, resample, pixel"):
        op_table.OpDef(kind="warp", num_uniforms=0, sample=op_table.sample_flip, build=op_table.build_flip_horizontal,
                       magnitude=1.0, unit="none")
    policy = augment.get_policy("ops", ops=["noise", "elastic", "rotate"])
    # Geometric first, then the resampling op fused with the warp, then pixel ops, whatever the given order.
    assert policy.op_order == ["rotate", "elastic", "noise"] and policy.resample == ["elastic"]
    assert [op.kind for op in op_table.OPS.values()].count("resample") == 1


def test_integer_input_that_is_not_uint8_is_refused_instead_of_wrapping():
    layer = augment.Augment("mnist", strength=0.5, seed=0)
    with pytest.raises(ValueError, match="Received dtype int32. Cast to uint8"):
        layer(tf.constant(np.full((2, 8, 8, 1), 300, np.int32)), training=True)


def test_float_input_outside_unit_range_is_refused():
    layer = augment.Augment("mnist", strength=0.0, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"float images outside \[0, 1\].*divide 0-255"):
        layer(tf.constant(np.full((2, 8, 8, 1), 200.0, np.float32)), training=True)
    inside = np.full((2, 8, 8, 1), 0.25, np.float32)
    np.testing.assert_allclose(layer(tf.constant(inside), training=False).numpy(), inside)


def test_policy_options_pass_through_the_layer():
    layer = augment.Augment("ops", ops=["rotate", "noise"], strength=0.5, seed=0, name="aug")
    assert layer.name == "aug" and layer.policy.op_order == ["rotate", "noise"]
    assert augment.Augment("randaugment", num_ops=3, seed=0).policy.num_ops == 3
    with pytest.raises(ValueError, match="Pass options only with a policy name"):
        augment.Augment(augment.get_policy("mnist"), ops=["rotate"])
    with pytest.raises(TypeError):
        augment.Augment("mnist", unknown_option=1)


def test_the_generated_op_table_in_the_docs_matches_the_code():
    import pathlib

    from augpipe.augment import op_table

    page = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "ops.md").read_text()
    assert op_table.markdown_table() in page, "regenerate docs/ops.md from op_table.markdown_table()"
    assert all(op.strength_rule for op in op_table.OPS.values())


def test_a_non_mit_albumentations_is_named_once_with_its_licence(monkeypatch):
    from importlib import metadata

    from augpipe.augment import host

    assert host.check_albumentations_licence() is None  # the pinned MIT release: nothing to say
    monkeypatch.setattr(metadata, "packages_distributions", lambda: {"albumentations": ["albumentationsx"]})
    monkeypatch.setattr(metadata, "version", lambda name: "2.1.3")
    monkeypatch.setattr(host, "_warned", [])
    with pytest.warns(UserWarning, match="from albumentationsx 2.1.3, not the MIT-licensed albumentations 2.0.8.*AGPL"):
        reason = host.check_albumentations_licence()
    assert "AGPL-3.0" in reason
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert host.check_albumentations_licence() == reason  # said once per process
