"""The built-in policies: `ops` (any ops, independent gates), `mnist`, `randaugment` and `none`.

Each is a small subclass of the engine (`augment.engine.GatedPolicy`) that
says how images choose ops; the op table (`augment.op_table`) says what each
op samples and does, and the registry (`augment.registry`) finds policies
by name.

How strength maps to each op for the independent-gate policies (`s` is the
strength):

- probability that an image gets the op: `probability * min(1, 2 s)`. It
  reaches the op's full probability at `s = 0.5` and is 0 at `s = 0`;
- magnitude: drawn uniformly up to `magnitude * s`, so it grows linearly
  all the way to `s = 1`.

`strength = 0` is the exact identity: no image is selected for any op.

Example:

>>> policy = get_policy("mnist")
>>> list_policies()
['mnist', 'none', 'ops', 'randaugment']
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

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


@register_policy("randaugment")
class RandAugmentPolicy(GatedPolicy):
    """RandAugment, chosen per image: each image picks `num_ops` ops (with
    replacement, and `identity` among them) and applies only those.

    Magnitudes are uniform up to `magnitude * strength`. Unlike Keras'
    `RandAugment`, ops an image did not pick are not computed.

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

    def __init__(self, num_ops: int = 2, ops: Optional[dict] = None):
        self.num_ops = check_int("num_ops", num_ops)
        super().__init__(_ops_argument(ops, self.DEFAULTS))

    @property
    def num_gate_uniforms(self):
        return self.num_ops

    def gates(self, v, strength):
        # Index len(op_order) stands for `identity`.
        count = len(self.op_order) + 1
        choices = tf.minimum(tf.cast(tf.floor((0.5 * v + 0.5) * count), tf.int32), count - 1)
        picked = tf.reduce_any(tf.cast(tf.one_hot(choices, count), tf.bool), axis=1)
        picked = picked & (strength > 0.0)
        return dict(zip(self.op_order, tf.unstack(picked[:, :-1], num=count - 1, axis=1)))

    def get_config(self):
        return {"num_ops": self.num_ops, **super().get_config()}


@register_policy("none")
class NonePolicy(Policy):
    """No augmentation: the layer only converts to float32 in [0, 1]."""

    def sample(self, batch_size, height, width, strength, seed):
        return {}

    def apply(self, images, params):
        return images
