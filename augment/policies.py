"""The built-in policies: `ops` (any ops, independent gates), `mnist`, `randaugment` (the paper's ops),
`randaugment_digits`, `trivialaugment`, `augmix`, `cifar` and `none`.

Each is a small subclass of the engine (`augment.engine.GatedPolicy`) that
says how images choose ops; the op table (`augment.op_table`) says what each
op samples and does, and the registry (`augment.registry`) finds policies
by name.

What strength means, policy by policy (`s` is the strength; docs/ops.md has
the table and the reasons):

- `ops`, `mnist` (independent gates): an image gets an op with probability
  `probability * min(1, 2 s)` (full at `s = 0.5`), at a magnitude uniform up
  to `magnitude * s` (growing to `s = 1`);
- `trivialaugment`, `randaugment`, `randaugment_digits`: the published
  recipe on a share `s` of the images, StyleGAN2-ADA's rule: an image is
  augmented with probability `s`, and then exactly as at `s = 1`
  (magnitudes never shrink);
- `cifar`: its TrivialAugment part as `trivialaugment`, its pad-crop, flip
  and erasing as `ops`;
- `augmix`: full AugMix chains, blended in by a Beta(1, 1) weight times `s`.

`strength = 0` is the exact identity: no image is selected for any op.

Example:

>>> policy = get_policy("mnist")
>>> list_policies()
['augmix', 'cifar', 'mnist', 'none', 'ops', 'randaugment', 'randaugment_digits', 'trivialaugment']
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from augpipe.augment import rng
from augpipe.augment.engine import GatedPolicy
from augpipe.augment.op_table import OPS, OpDef, check_op, list_ops
from augpipe.augment.registry import Policy, get_policy, list_policies, register_policy, serialize_policy
from augpipe.validation import check_int

__all__ = [
    "OPS",
    "MnistPolicy",
    "NonePolicy",
    "OpDef",
    "OpsPolicy",
    "Policy",
    "RandAugmentPolicy",
    "DigitsRandAugmentPolicy",
    "TrivialAugmentPolicy",
    "CifarPolicy",
    "AugMixPolicy",
    "get_policy",
    "list_ops",
    "list_policies",
    "register_policy",
    "serialize_policy",
]


def _ops_argument(ops_arg, defaults=None) -> dict:
    """`None` (the defaults), a list of op names (probability 1, default magnitude), or `{op: (p, m)}`."""
    if ops_arg is None:
        return dict(defaults or {})
    if isinstance(ops_arg, (list, tuple)):
        return {name: (1.0, OPS[check_op(name)].magnitude) for name in ops_arg}
    return {name: tuple(value) for name, value in dict(ops_arg).items()}


@register_policy("ops")
class OpsPolicy(GatedPolicy):
    """Any subset of ops with independent per-image gates, e.g. `get_policy("ops", ops={"rotate": (1.0, 30.0)})`.

    Each image draws each op independently with probability
    `probability * min(1, 2 strength)`; magnitudes are uniform up to
    `magnitude * strength`. All geometric ops share one warp.

    Args:
        ops: `{op: (probability, magnitude)}`, or a list of op names
            (probability 1, default magnitude).
    """

    DEFAULTS: dict = {}

    def __init__(self, ops=None):
        config = _ops_argument(ops, self.DEFAULTS)
        if not config:
            raise ValueError(
                "The 'ops' policy needs `ops`: a list of op names or "
                f"{{op: (probability, magnitude)}}. Valid ops: {', '.join(sorted(OPS))}."
            )
        super().__init__(config)

    @property
    def num_gate_uniforms(self):
        return len(self.op_order)

    def gates(self, v, strength):
        ramp = tf.minimum(1.0, 2.0 * strength)
        probabilities = tf.constant([self.ops_config[name][0] for name in self.op_order], tf.float32)
        # u < p ramp for u uniform in [0, 1), written for v = 2 u - 1.
        selected = tf.unstack(v < probabilities * (2.0 * ramp) - 1.0, num=len(self.op_order), axis=1)
        return dict(zip(self.op_order, selected))


@register_policy("mnist")
class MnistPolicy(OpsPolicy):
    """Digits: rotation, scale, shear, translation, elastic, erasing, noise (the `ops` policy with these defaults).

    Args:
        ops: `{op: (probability, magnitude)}` to replace the defaults, or a
            list of op names (probability 1, default magnitude).
    """

    DEFAULTS = {
        "rotate": (0.8, 20.0),
        "scale": (0.8, 0.15),
        "shear": (0.5, 0.3),
        "translate": (0.8, 0.12),
        "elastic": (0.2, 2.0),
        "erase": (0.25, 0.15),
        "noise": (0.25, 0.08),
    }


# The RandAugment paper's 13 ops (with identity, 14) at their largest
# magnitudes: torchvision's RandAugment at its top magnitude bin.
PAPER_OPS = {
    "shear_x": (1.0, 0.3),
    "shear_y": (1.0, 0.3),
    "translate_x": (1.0, 0.45),
    "translate_y": (1.0, 0.45),
    "rotate": (1.0, 30.0),
    "brightness_factor": (1.0, 0.9),
    "color": (1.0, 0.9),
    "contrast_factor": (1.0, 0.9),
    "sharpness": (1.0, 0.9),
    "posterize": (1.0, 4.0),
    "solarize": (1.0, 1.0),
    "autocontrast": (1.0, 1.0),
    "equalize": (1.0, 1.0),
}


@register_policy("randaugment")
class RandAugmentPolicy(GatedPolicy):
    """RandAugment, chosen per image: each image picks `num_ops` ops (with
    replacement, and `identity` among them) and applies only those.

    The default ops are the paper's 14 (identity, autocontrast, equalize,
    rotate, solarize, color, posterize, contrast, brightness, sharpness,
    shear x/y, translate x/y), with the largest magnitudes of torchvision's
    `RandAugment`, each drawn uniformly up to its largest (the paper's M
    drawn per image, as timm's `mstd` option does). Strength is the share of
    images augmented: an image takes its ops with probability `strength`,
    and its magnitudes are the same at every strength. Unlike Keras'
    `RandAugment`, ops an image did not pick are not computed. An op picked
    twice is applied once, and the geometric ops an image picked are
    applied first (one warp), then its pixel ops.

    Args:
        num_ops: ops drawn per image (the paper's N).
        ops: `{op: (probability, magnitude)}`; the probability is ignored.
    """

    DEFAULTS = PAPER_OPS

    def __init__(self, num_ops: int = 2, ops: Optional[dict] = None):
        self.num_ops = check_int("num_ops", num_ops)
        self.pixel_rounds = self.num_ops  # an image takes at most num_ops pixel ops
        super().__init__(_ops_argument(ops, self.DEFAULTS))

    @property
    def num_gate_uniforms(self):
        return self.num_ops + 1  # the ops' choices, then whether the image is augmented

    @property
    def fixed_magnitude_ops(self):
        return tuple(self.op_order)

    def gates(self, v, strength):
        # Index len(op_order) stands for `identity`.
        count = len(self.op_order) + 1
        choices = tf.minimum(tf.cast(tf.floor((0.5 * v[:, : self.num_ops] + 0.5) * count), tf.int32), count - 1)
        picked = tf.reduce_any(tf.cast(tf.one_hot(choices, count), tf.bool), axis=1)
        applied = (0.5 * v[:, self.num_ops] + 0.5) < strength
        picked = picked & applied[:, None]
        return dict(zip(self.op_order, tf.unstack(picked[:, :-1], num=count - 1, axis=1)))

    def get_config(self):
        return {"num_ops": self.num_ops, **super().get_config()}


@register_policy("randaugment_digits")
class DigitsRandAugmentPolicy(RandAugmentPolicy):
    """RandAugment over the digit-oriented ops (augpipe's `randaugment` before the paper's op set).

    Args:
        num_ops: ops drawn per image.
        ops: `{op: (probability, magnitude)}`; the probability is ignored.
    """

    DEFAULTS = {
        "rotate": (1.0, 30.0),
        "shear": (1.0, 0.3),
        "translate": (1.0, 0.15),
        "scale": (1.0, 0.25),
        "contrast": (1.0, 0.5),
        "brightness": (1.0, 0.3),
        "gamma": (1.0, 0.5),
        "noise": (1.0, 0.1),
        "erase": (1.0, 0.25),
    }


# TrivialAugment Wide's ops and largest magnitudes (torchvision); the
# translation is a fraction of the size (Wide's 32 px would be the whole of a
# CIFAR image), the RandAugment paper's 0.45.
WIDE_OPS = {
    "shear_x": (1.0, 0.99),
    "shear_y": (1.0, 0.99),
    "translate_x": (1.0, 0.45),
    "translate_y": (1.0, 0.45),
    "rotate": (1.0, 135.0),
    "brightness_factor": (1.0, 0.99),
    "color": (1.0, 0.99),
    "contrast_factor": (1.0, 0.99),
    "sharpness": (1.0, 0.99),
    "posterize": (1.0, 6.0),
    "solarize": (1.0, 1.0),
    "autocontrast": (1.0, 1.0),
    "equalize": (1.0, 1.0),
}


def one_of(v_choice, v_apply, names, strength) -> dict:
    """Gates where each image takes at most one of `names` (or identity, one more choice),
    and only with probability `strength`; `v_*` are `(B,)` uniforms in [-1, 1)."""
    count = len(names) + 1
    choice = tf.minimum(tf.cast(tf.floor((0.5 * v_choice + 0.5) * count), tf.int32), count - 1)
    applied = (0.5 * v_apply + 0.5) < strength
    return {name: (choice == index) & applied for index, name in enumerate(names)}


@register_policy("trivialaugment")
class TrivialAugmentPolicy(GatedPolicy):
    """TrivialAugment (Wide): each image takes one op, chosen uniformly among
    the ops and identity, at a magnitude uniform up to its largest.

    Strength is the share of images augmented (StyleGAN2-ADA's rule): an
    image takes its op with probability `strength`, at the same magnitudes
    at every strength, so 1 is the paper's policy and 0.5 is the paper's
    policy on half of the images.

    Args:
        ops: `{op: (probability, magnitude)}`; the probability is ignored.
    """

    DEFAULTS = WIDE_OPS
    num_gate_uniforms = 2
    pixel_rounds = 1

    def __init__(self, ops: Optional[dict] = None):
        super().__init__(_ops_argument(ops, self.DEFAULTS))

    @property
    def fixed_magnitude_ops(self):
        return tuple(self.op_order)

    def gates(self, v, strength):
        return one_of(v[:, 0], v[:, 1], self.op_order, strength)


@register_policy("cifar")
class CifarPolicy(GatedPolicy):
    """The CIFAR recipe: pad-and-crop and a horizontal flip for every image,
    TrivialAugment Wide, then random erasing.

    Strength ramps the pad-crop, flip and erasing probabilities like the
    `ops` policy (full at 0.5, magnitudes up to `magnitude * strength`), and
    is the share of images that take a TrivialAugment op, at TrivialAugment's
    own magnitudes, as in `trivialaugment`.
    The pad-crop, the flip and TrivialAugment's geometric op share one warp.

    Args:
        erase: the probability of erasing a box (0.5).
    """

    INDEPENDENT = {"pad_crop": (1.0, 0.125), "flip_horizontal": (0.5, 1.0)}

    def __init__(self, erase: float = 0.5):
        self.erase = float(erase)
        config = {**self.INDEPENDENT, **WIDE_OPS, "erase": (self.erase, 0.25)}
        super().__init__(config)
        self.trivial = [name for name in self.op_order if name in WIDE_OPS]
        self.independent = [name for name in self.op_order if name not in WIDE_OPS]
        self.fixed_magnitude_ops = tuple(self.trivial)

    @property
    def num_gate_uniforms(self):
        return 2 + len(self.independent)

    # TrivialAugment's pixel op, then erasing.
    pixel_rounds = 2

    def gates(self, v, strength):
        gates = one_of(v[:, 0], v[:, 1], self.trivial, strength)
        ramp = tf.minimum(1.0, 2.0 * strength)
        for index, name in enumerate(self.independent):
            gates[name] = v[:, 2 + index] < self.ops_config[name][0] * (2.0 * ramp) - 1.0
        return gates

    def get_config(self):
        return {"erase": self.erase}


# AugMix's ops: none that overlaps the corruptions it is evaluated on (no
# colour, contrast, brightness or sharpness).
AUGMIX_OPS = {
    "autocontrast": (1.0, 1.0),
    "equalize": (1.0, 1.0),
    "posterize": (1.0, 4.0),
    "rotate": (1.0, 30.0),
    "solarize": (1.0, 1.0),
    "shear_x": (1.0, 0.3),
    "shear_y": (1.0, 0.3),
    "translate_x": (1.0, 0.33),
    "translate_y": (1.0, 0.33),
}


@register_policy("augmix")
class AugMixPolicy(Policy):
    """AugMix: `width` chains of up to `depth` ops each (RandAugment draws per
    image; identity among them, so a chain has 0 to `depth` ops), mixed with
    Dirichlet(1) weights, then blended with the image by a Beta(1, 1) weight
    (alpha = 1, the paper's default).

    Strength scales only the blend weight (uniform in [0, strength]): the
    chains are AugMix's own at every strength, and at 0 the output is the
    input.

    Args:
        width: chains per image (3).
        depth: ops per chain at most (3).
        ops: `{op: (probability, magnitude)}` for the chains.
    """

    def __init__(self, width: int = 3, depth: int = 3, ops: Optional[dict] = None):
        self.width = check_int("width", width)
        self.depth = check_int("depth", depth)
        self.ops_argument = ops
        self.chain = RandAugmentPolicy(num_ops=self.depth, ops=_ops_argument(ops, AUGMIX_OPS))

    def sample(self, batch_size, height, width, strength, seed):
        strength = tf.cast(strength, tf.float32)
        seeds = rng.split_seed(seed, self.width + 1)
        # Full chains at every strength (every image, the chains' own magnitudes).
        chains = [self.chain.sample(batch_size, height, width, 1.0, seeds[i]) for i in range(self.width)]
        u = rng.uniform([batch_size, self.width + 1], seeds[self.width])
        # Dirichlet(1, ..., 1): normalized standard exponentials.
        exponentials = -tf.math.log1p(-u[:, : self.width])
        weights = exponentials / tf.reduce_sum(exponentials, axis=1, keepdims=True)
        return {"chains": chains, "weights": weights, "blend": u[:, self.width] * strength}

    def _mix(self, images, params, apply):
        mixed = 0.0
        for index, chain in enumerate(params["chains"]):
            mixed += params["weights"][:, index, None, None, None] * apply(images, chain)
        return images + params["blend"][:, None, None, None] * (mixed - images)

    def apply(self, images, params):
        return self._mix(images, params, self.chain.apply)

    def apply_static(self, images, params):
        return self._mix(images, params, self.chain.apply_static)

    def get_config(self):
        config = {"width": self.width, "depth": self.depth}
        if self.ops_argument is not None:
            config["ops"] = self.ops_argument
        return config


@register_policy("none")
class NonePolicy(Policy):
    """No augmentation: the layer only converts to float32 in [0, 1]."""

    def sample(self, batch_size, height, width, strength, seed):
        return {}

    def apply(self, images, params):
        return images
