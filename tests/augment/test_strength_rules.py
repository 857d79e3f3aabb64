"""What strength means, policy by policy (docs/ops.md, "Strength per policy").

- `ops`, `mnist`: probability `p * min(1, 2 s)`, magnitudes up to `m * s`;
- `trivialaugment`, `randaugment`, `randaugment_digits`: a share `s` of the
  images augmented, at magnitudes that do not depend on `s` (ADA's rule);
- `cifar`: TrivialAugment's ops as `trivialaugment`, the others as `ops`;
- `augmix`: the same chains at every strength, blended in by a weight `<= s`.
"""

import numpy as np
import pytest
import tensorflow as tf

from augpipe import augment
from augpipe.augment.policies import WIDE_OPS, get_policy

SEED = tf.constant([3, 7], tf.int64)
BATCH = 4000


def _sample(policy, strength, batch=BATCH, size=32):
    return policy.sample(batch, size, size, tf.constant(strength, tf.float32), SEED)


def _any_gate(params, names):
    return np.any(np.stack([params[name]["gate"].numpy() for name in names]), axis=0)


def _magnitude_arrays(params, name):
    return {key: value.numpy() for key, value in params[name].items() if key != "gate"}


@pytest.mark.parametrize("name", ["trivialaugment", "randaugment", "randaugment_digits"])
def test_recipe_policies_augment_a_share_s_of_images_at_unchanged_magnitudes(name):
    policy = get_policy(name)
    full = _sample(policy, 1.0)
    shares = {}
    for strength in (0.25, 0.5, 0.75):
        params = _sample(policy, strength)
        shares[strength] = _any_gate(params, policy.op_order).mean()
        for op in policy.op_order:
            both = params[op]["gate"].numpy() & full[op]["gate"].numpy()
            assert both.any()
            # Same uniforms, same largest magnitude: the same parameters, image by image.
            for key, value in _magnitude_arrays(params, op).items():
                np.testing.assert_array_equal(value[both], _magnitude_arrays(full, op)[key][both], err_msg=f"{op}.{key}")
            # An image augmented at a lower strength is augmented at every higher one, the same way.
            assert not (params[op]["gate"].numpy() & ~full[op]["gate"].numpy()).any()
    share_full = _any_gate(full, policy.op_order).mean()
    for strength, share in shares.items():
        assert share / share_full == pytest.approx(strength, abs=0.04), (strength, share, share_full)
    assert not _any_gate(_sample(policy, 0.0), policy.op_order).any()


@pytest.mark.parametrize("name", ["mnist", "ops"])
def test_independent_gate_policies_ramp_probability_to_half_strength_and_magnitude_to_full(name):
    policy = get_policy(name, ops={"rotate": (0.8, 20.0), "noise": (0.4, 0.1)}) if name == "ops" else get_policy(name)
    probability = policy.ops_config["rotate"][0]
    full = _sample(policy, 1.0)
    for strength in (0.25, 0.5):
        params = _sample(policy, strength)
        assert params["rotate"]["gate"].numpy().mean() == pytest.approx(probability * min(1, 2 * strength), abs=0.03)
        both = params["rotate"]["gate"].numpy() & full["rotate"]["gate"].numpy()
        np.testing.assert_allclose(params["rotate"]["angle"].numpy()[both],
                                   strength * full["rotate"]["angle"].numpy()[both], rtol=1e-5, atol=1e-7)
    # From 0.5 on, the same images take the op: only the magnitude grows.
    np.testing.assert_array_equal(_sample(policy, 0.5)["rotate"]["gate"].numpy(), full["rotate"]["gate"].numpy())


def test_cifar_keeps_trivialaugment_magnitudes_and_scales_its_own_ops():
    policy = get_policy("cifar")
    assert set(policy.fixed_magnitude_ops) == set(WIDE_OPS)
    half, full = _sample(policy, 0.5), _sample(policy, 1.0)
    both = half["rotate"]["gate"].numpy() & full["rotate"]["gate"].numpy()
    np.testing.assert_array_equal(half["rotate"]["angle"].numpy()[both], full["rotate"]["angle"].numpy()[both])
    assert _any_gate(half, policy.trivial).mean() / _any_gate(full, policy.trivial).mean() == pytest.approx(0.5, abs=0.04)
    scales = policy.magnitude_scales(0.5).numpy()
    for index, op in enumerate(policy.op_order):
        assert scales[index] == (1.0 if op in WIDE_OPS else 0.5), op


def test_augmix_blends_the_same_chains_by_a_weight_up_to_strength():
    policy = get_policy("augmix")
    half, full = _sample(policy, 0.5, batch=512), _sample(policy, 1.0, batch=512)
    for chain_half, chain_full in zip(half["chains"], full["chains"]):
        for op in policy.chain.op_order:
            np.testing.assert_array_equal(chain_half[op]["gate"].numpy(), chain_full[op]["gate"].numpy())
    np.testing.assert_allclose(half["blend"].numpy(), 0.5 * full["blend"].numpy(), rtol=1e-6)
    assert half["blend"].numpy().max() <= 0.5


@pytest.mark.parametrize("name", ["trivialaugment", "randaugment"])
def test_a_quarter_strength_leaves_three_quarters_of_images_untouched_and_changes_the_rest_fully(name):
    images = tf.cast(tf.random.stateless_uniform([512, 32, 32, 3], [1, 2], maxval=256, dtype=tf.int32), tf.uint8)
    layer = augment.Augment(name, strength=0.25, seed=5)
    out = layer(images, training=True).numpy()
    changed = np.abs(out - images.numpy() / 255.0).reshape(512, -1).max(axis=1) > 1e-6
    # Identity is among the choices, and some ops leave some images as they were: at most a quarter change.
    assert 0.10 < changed.mean() <= 0.30, changed.mean()
    layer.strength.assign(1.0)
    out_full = layer(images, training=True).numpy()
    assert (np.abs(out_full - images.numpy() / 255.0).reshape(512, -1).max(axis=1) > 1e-6).mean() > 0.5


def test_every_built_in_policy_documents_its_strength_rule():
    import pathlib

    from augpipe.augment.policies import list_policies

    page = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "ops.md").read_text()
    section = page.split("## Strength per policy", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name.strip(" `") for row in rows for name in row.split("|")[1].split(",")}
    assert set(list_policies()) <= documented, set(list_policies()) - documented
