"""The colour-photo policies: how images choose ops, and what strength does to the choice."""

import numpy as np
import pytest
import tensorflow as tf

from augpipe import augment
from augpipe.augment import policies


def gates_of(policy, strength, batch=4000, seed=(1, 2)):
    params = policy.sample(batch, 32, 32, tf.constant(strength), tf.constant(seed, tf.int64))
    return {name: params[name]["gate"].numpy() for name in policy.op_order}


@pytest.mark.parametrize("strength", [0.3, 1.0])
def test_trivialaugment_takes_at_most_one_op_per_image(strength):
    policy = augment.get_policy("trivialaugment")
    assert set(policy.op_order) == set(policies.WIDE_OPS)
    chosen = np.stack(list(gates_of(policy, strength).values()), axis=1)
    assert chosen.sum(axis=1).max() == 1
    # An op with probability `strength`, uniform among 13 ops and identity.
    expected = strength * 13 / 14
    assert abs(chosen.any(axis=1).mean() - expected) < 0.03


def test_randaugment_has_the_papers_ops_and_num_ops():
    policy = augment.get_policy("randaugment", num_ops=2)
    assert set(policy.op_order) == set(policies.PAPER_OPS) and len(policy.op_order) == 13
    chosen = np.stack(list(gates_of(policy, 1.0).values()), axis=1)
    assert chosen.sum(axis=1).max() == 2 and chosen.sum(axis=1).min() == 0
    # Two draws among 14 (identity included): no op with probability (13/14)^2.
    assert abs((chosen.sum(axis=1) == 0).mean() - (1 / 14) ** 2) < 0.01
    digits = augment.get_policy("randaugment_digits")
    assert "elastic" not in digits.op_order and "gamma" in digits.op_order


def test_cifar_pads_and_crops_every_image_and_flips_half():
    gates = gates_of(augment.get_policy("cifar"), 1.0)
    assert gates["pad_crop"].all()
    assert abs(gates["flip_horizontal"].mean() - 0.5) < 0.03
    assert abs(gates["erase"].mean() - 0.5) < 0.03
    trivial = np.stack([gates[name] for name in policies.WIDE_OPS], axis=1)
    assert trivial.sum(axis=1).max() == 1
    # Erasing comes last, after TrivialAugment's pixel ops.
    assert augment.get_policy("cifar").op_order[-1] == "erase"


def test_augmix_blends_chains_and_round_trips():
    policy = augment.get_policy("augmix", width=2, depth=1)
    params = policy.sample(8, 16, 16, tf.constant(1.0), tf.constant([0, 1], tf.int64))
    weights = params["weights"].numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert (weights >= 0).all() and len(params["chains"]) == 2
    assert augment.get_policy(policies.serialize_policy(policy)).get_config() == {"width": 2, "depth": 1}


@pytest.mark.parametrize("name", ["trivialaugment", "randaugment", "augmix", "cifar"])
@pytest.mark.parametrize("shape", [(6, 28, 28, 1), (6, 40, 24, 3)])
def test_photo_policies_work_on_gray_and_colour_of_any_size(name, shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    layer = augment.Augment(name, strength=1.0, seed=0)
    out = layer(images, training=True).numpy()
    assert out.shape == shape and 0.0 <= out.min() and out.max() <= 1.0
    again = augment.Augment.from_config(layer.get_config())
    assert again.policy.get_config() == layer.policy.get_config()


def test_resized_crop_and_pad_crop_stay_inside_the_image():
    policy = augment.get_policy("ops", ops=["resized_crop", "pad_crop"])
    params = policy.sample(1000, 32, 48, tf.constant(1.0), tf.constant([3, 4], tf.int64))
    crop = {k: v.numpy() for k, v in params["resized_crop"].items()}
    assert crop["scale_x"].min() >= 0.08 ** 0.5 * (3 / 4) ** 0.5 - 1e-6 and crop["scale_x"].max() <= 1.0
    # The crop fits: its center is at most (1 - scale) / 2 of the size from the image's.
    assert (np.abs(crop["offset_x"]) <= (1 - crop["scale_x"]) * 48 / 2 + 1e-4).all()
    assert (np.abs(crop["offset_y"]) <= (1 - crop["scale_y"]) * 32 / 2 + 1e-4).all()
    shifts = params["pad_crop"]["dx"].numpy()
    assert np.array_equal(shifts, np.round(shifts)) and np.abs(shifts).max() <= 0.125 * 48


@pytest.mark.parametrize("name", ["trivialaugment", "randaugment", "cifar", "randaugment_digits"])
def test_pixel_rounds_give_what_one_pass_per_op_gives(name, monkeypatch):
    # The dynamic path runs these policies' pixel ops in rounds (one partition and one stitch each);
    # the static path runs one pass per op. Same images.
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (64, 20, 20, 3), dtype=np.uint8))
    policy = augment.get_policy(name)
    assert policy.pixel_rounds
    params = policy.sample(64, 20, 20, tf.constant(1.0), tf.constant([5, 6], tf.int64))
    floats = tf.cast(images, tf.float32) / 255.0
    rounds = policy.apply(floats, params).numpy()
    monkeypatch.setattr(policy, "pixel_rounds", None)
    passes = policy.apply(floats, params).numpy()
    np.testing.assert_allclose(rounds, passes, atol=1e-6)
    assert not np.array_equal(rounds, floats.numpy())


@pytest.mark.parametrize("op,magnitude,expected", [
    ("posterize", 12, r"\[0, 7\] \(bits removed from 8\)"),
    ("rotate", float("nan"), r"\[0, inf\)"),
    ("translate", float("inf"), r"\[0, inf\)"),
    ("solarize", 1.5, r"\[0, 1\]"),
    ("brightness_factor", -0.1, r"\[0, inf\)"),
])
def test_a_magnitude_outside_its_ops_range_is_refused(op, magnitude, expected):
    # Found on main: NaN, infinity and posterize removing 12 of 8 bits were accepted (the check was only >= 0).
    with pytest.raises(ValueError, match=f"Op '{op}' magnitude must be a finite number in {expected}"):
        augment.get_policy("ops", ops={op: (1.0, magnitude)})


def test_a_json_policy_with_a_bad_magnitude_is_one_line_in_the_commands(tmp_path):
    from click.testing import CliRunner

    from augpipe.scripts.preview_augment import main

    spec = '{"name": "ops", "config": {"ops": {"posterize": [1, 12]}}}'
    result = CliRunner().invoke(main, ["--policy", spec, "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "magnitude must be a finite number in [0, 7]" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x.png").exists()
