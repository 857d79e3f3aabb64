"""Named, registered, serializable augmentation policies.

A policy turns one `strength` in [0, 1] into per-image decisions and
parameters (`sample`), then applies them (`apply`). Sampling is the only
place with randomness, and it uses stateless generators keyed by an explicit
seed, so `apply(images, sample(...))` is deterministic.

How strength maps to each op (`s` is the strength):

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

import dataclasses
import math
from typing import Callable, Dict, Optional, Tuple

import tensorflow as tf

from augpipe.augment import ops
from augpipe.validation import check_int, did_you_mean

# --------------------------------------------------------------------------
# Op table: each op's sampler (strength-scaled magnitude -> per-image params)
# sits next to how it is applied, so one op has one implementation.


def _unit(v):
    """Maps uniforms in [-1, 1) to [0, 1)."""
    return 0.5 * v + 0.5


@dataclasses.dataclass(frozen=True)
class OpDef:
    """One augmentation op as the policies see it.

    Attributes:
        kind: `"geometric"` (contributes a 3x3 matrix to the single warp) or
            `"pixel"` (applied to the selected images on its own).
        num_uniforms: how many uniform numbers per image `sample` needs.
        sample: `(v, gate, height, width, magnitude) -> dict` of per-image
            parameters, where `v` is a list of `num_uniforms` `(B,)` tensors
            uniform in [-1, 1) and `magnitude` is already scaled by strength.
            Geometric ops return identity parameters where `gate` is False.
        build: for geometric ops, `(params, height, width) -> (B, 3, 3)`
            (policies pass `height = width = None`, the map about the origin,
            and center the composed map once); for pixel ops,
            `(images, params, seed) -> images`.
        magnitude: the default maximum magnitude at strength 1.
        unit: what the magnitude means.
        identity_params: `sample` gives unselected images parameters under
            which `build` is the exact identity (a zero noise level, an empty
            box). Consecutive such ops share one gated pass (see
            `_GatedOpsPolicy.pixel_groups`); the others are gated one by one.
    """

    kind: str
    num_uniforms: int
    sample: Callable
    build: Callable
    magnitude: float
    unit: str
    identity_params: bool = False


def _gated(values, gate, identity=0.0):
    return tf.where(gate, values, identity)


def _erase_boxes(v, gate, height, width, magnitude):
    area = _unit(v[0]) * magnitude
    # Aspect ratio log-uniform in [0.3, 3.3].
    ratio = tf.exp(0.5 * (math.log(3.3) + math.log(0.3)) + v[1] * (0.5 * (math.log(3.3) - math.log(0.3))))
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    box_h = tf.minimum(tf.round(tf.sqrt(area * h * w * ratio)), h)
    box_w = tf.minimum(tf.round(tf.sqrt(area * h * w / ratio)), w)
    box_h = _gated(box_h, gate)
    box_w = _gated(box_w, gate)
    top = tf.floor(_unit(v[2]) * (h - box_h + 1.0))
    left = tf.floor(_unit(v[3]) * (w - box_w + 1.0))
    return {"boxes": tf.stack([top, left, top + box_h, left + box_w], axis=1)}


OPS: Dict[str, OpDef] = {
    "rotate": OpDef(
        "geometric",
        1,
        lambda v, g, h, w, m: {"angle": _gated(v[0] * m * (math.pi / 180.0), g)},
        lambda p, h, w: ops.rotation_matrix(p["angle"], h, w),
        25.0,
        "degrees",
    ),
    "scale": OpDef(
        "geometric",
        1,
        lambda v, g, h, w, m: {"scale": _gated(1.0 + v[0] * m, g, 1.0)},
        lambda p, h, w: ops.scale_matrix(p["scale"], p["scale"], h, w),
        0.2,
        "relative zoom",
    ),
    "shear": OpDef(
        "geometric",
        2,
        lambda v, g, h, w, m: {
            "shear_x": _gated(v[0] * m, g),
            "shear_y": _gated(v[1] * m, g),
        },
        lambda p, h, w: ops.shear_matrix(p["shear_x"], p["shear_y"], h, w),
        0.3,
        "shear factor",
    ),
    "translate": OpDef(
        "geometric",
        2,
        lambda v, g, h, w, m: {
            "dx": _gated(v[0] * m * tf.cast(w, tf.float32), g),
            "dy": _gated(v[1] * m * tf.cast(h, tf.float32), g),
        },
        lambda p, h, w: ops.translation_matrix(p["dx"], p["dy"]),
        0.15,
        "fraction of the image size",
    ),
    "flip_horizontal": OpDef(
        "geometric",
        0,
        lambda v, g, h, w, m: {"flip": g},
        lambda p, h, w: ops.flip_matrix(p["flip"], tf.zeros_like(p["flip"]), h, w),
        1.0,
        "unused (a flip has no magnitude)",
    ),
    "flip_vertical": OpDef(
        "geometric",
        0,
        lambda v, g, h, w, m: {"flip": g},
        lambda p, h, w: ops.flip_matrix(tf.zeros_like(p["flip"]), p["flip"], h, w),
        1.0,
        "unused (a flip has no magnitude)",
    ),
    "elastic": OpDef(
        "pixel",
        32,
        lambda v, g, h, w, m: {
            "noise": tf.reshape(tf.stack(v, axis=1), (-1, 4, 4, 2)),
            "alpha": tf.fill(tf.shape(g), tf.cast(m, tf.float32)),
        },
        # `matrix`: the affine map fused into the same resampling (`_resample`).
        lambda images, p, seed: ops.elastic(images, p["noise"], p["alpha"], p.get("matrix")),
        2.5,
        "peak displacement in pixels",
    ),
    "brightness": OpDef(
        "pixel",
        1,
        lambda v, g, h, w, m: {"delta": _gated(v[0] * m, g)},
        lambda images, p, seed: ops.brightness(images, p["delta"]),
        0.3,
        "added to [0, 1] pixels",
        True,
    ),
    "contrast": OpDef(
        "pixel",
        1,
        lambda v, g, h, w, m: {"factor": 1.0 + v[0] * m},
        lambda images, p, seed: ops.contrast(images, p["factor"]),
        0.5,
        "relative change of contrast",
    ),
    "gamma": OpDef(
        "pixel",
        1,
        lambda v, g, h, w, m: {"gamma": _gated(tf.exp(v[0] * m), g, 1.0)},
        lambda images, p, seed: ops.gamma(images, p["gamma"]),
        0.5,
        "log of the gamma exponent",
        True,
    ),
    "noise": OpDef(
        "pixel",
        1,
        lambda v, g, h, w, m: {"stddev": _gated(_unit(v[0]) * m, g)},
        lambda images, p, seed: ops.gaussian_noise(images, p["stddev"], seed),
        0.1,
        "noise standard deviation on [0, 1] pixels",
        True,
    ),
    "erase": OpDef(
        "pixel",
        4,
        _erase_boxes,
        lambda images, p, seed: ops.erase(images, p["boxes"]),
        0.25,
        "largest erased fraction of the image area",
        True,
    ),
}


def list_ops() -> list:
    return sorted(OPS)


def _check_op(name: str) -> str:
    if name not in OPS:
        raise ValueError(f"Unknown op {name!r}. Valid ops: {', '.join(sorted(OPS))}.{did_you_mean(name, OPS)}")
    return name


# --------------------------------------------------------------------------
# Policies


class Policy:
    """Base class: `sample` decides and draws, `apply` is deterministic."""

    name = "base"

    def sample(self, batch_size, height, width, strength, seed) -> dict:
        raise NotImplementedError

    def apply(self, images, params) -> tf.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def __call__(self, images, strength, seed):
        height, width = ops.static_or_dynamic(images, 1), ops.static_or_dynamic(images, 2)
        params = self.sample(tf.shape(images)[0], height, width, strength, seed)
        return self.apply(images, params)


_REGISTRY: Dict[str, type] = {}


def register_policy(name: str):
    """Class decorator that registers a `Policy` subclass under `name`."""

    def decorator(cls):
        if name in _REGISTRY:
            raise ValueError(f"A policy named {name!r} is already registered.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_policies() -> list:
    """The names of all registered policies."""
    return sorted(_REGISTRY)


def get_policy(policy, **config) -> Policy:
    """Returns a policy instance from a name, a `{"name", "config"}` dict, or a `Policy`.

    Raises:
        ValueError: for an unknown name; the message lists the valid names and
            suggests the closest one.
    """
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, dict):
        return get_policy(policy.get("name"), **{**policy.get("config", {}), **config})
    if not isinstance(policy, str) or policy not in _REGISTRY:
        raise ValueError(
            f"Unknown policy {policy!r}. Valid policies: {', '.join(list_policies())}.{did_you_mean(policy, _REGISTRY)}"
        )
    return _REGISTRY[policy](**config)


def serialize_policy(policy: Policy) -> dict:
    return {"name": policy.name, "config": policy.get_config()}


class _GatedOpsPolicy(Policy):
    """Shared machinery: per-op gates, one warp for all geometric ops, then pixel ops."""

    def __init__(self, ops_config: Dict[str, Tuple[float, float]]):
        self.ops_config = {}
        for name, (probability, magnitude) in ops_config.items():
            _check_op(name)
            if not 0.0 <= float(probability) <= 1.0:
                raise ValueError(
                    f"Op {name!r} probability must be in [0, 1]. Received: {probability!r}."
                )
            if float(magnitude) < 0:
                raise ValueError(f"Op {name!r} magnitude must be >= 0. Received: {magnitude!r}.")
            self.ops_config[name] = (float(probability), float(magnitude))
        # Geometric ops first: they share one warp. The elastic distortion
        # comes right after it, because it is fused with the warp.
        names = list(self.ops_config)
        self.op_order = (
            [n for n in names if OPS[n].kind == "geometric"]
            + [n for n in names if n == "elastic"]
            + [n for n in names if OPS[n].kind == "pixel" and n != "elastic"]
        )
        # Consecutive ops whose unselected parameters are the identity share
        # one gated pass (one gather and one scatter for all of them).
        self.pixel_groups = []
        for name in self.op_order:
            if OPS[name].kind != "pixel" or name == "elastic":
                continue
            if self.pixel_groups and OPS[name].identity_params and OPS[self.pixel_groups[-1][-1]].identity_params:
                self.pixel_groups[-1].append(name)
            else:
                self.pixel_groups.append([name])

    num_gate_uniforms = 0

    def gates(self, v, strength) -> Dict[str, tf.Tensor]:
        """Per-op `(B,)` bool gates from `(B, num_gate_uniforms)` uniforms in [-1, 1)."""
        raise NotImplementedError

    def sample(self, batch_size, height, width, strength, seed) -> dict:
        strength = tf.cast(strength, tf.float32)
        # One generator call draws every per-image number this batch needs:
        # many small random ops would cost more than the draws themselves.
        widths = [OPS[name].num_uniforms for name in self.op_order]
        total = self.num_gate_uniforms + sum(widths)
        seeds = tf.random.experimental.stateless_split(seed, 2)
        v = tf.random.stateless_uniform([batch_size, total], seed=seeds[0], minval=-1.0, maxval=1.0)
        gates = self.gates(v[:, : self.num_gate_uniforms], strength)
        # One unstack instead of a slice per parameter.
        columns = tf.unstack(v[:, self.num_gate_uniforms :], num=total - self.num_gate_uniforms, axis=1)
        magnitudes = tf.unstack(
            tf.constant([self.ops_config[name][1] for name in self.op_order], tf.float32) * strength,
            num=len(self.op_order),
        )
        params = {}
        offset = 0
        for name, width_v, magnitude in zip(self.op_order, widths, magnitudes):
            op = OPS[name]
            gate = gates[name]
            params[name] = {
                "gate": gate,
                **op.sample(columns[offset : offset + width_v], gate, height, width, magnitude),
            }
            offset += width_v
        params["seed"] = seeds[1]
        return params

    def apply(self, images, params) -> tf.Tensor:
        images = self._resample(images, params)
        for group in self.pixel_groups:
            images = self._apply_pixel_group(images, params, group)
        return images

    def _resample(self, images, params) -> tf.Tensor:
        """The geometric ops (one composed matrix, one warp) and the elastic
        distortion, with every image resampled once."""
        height, width = ops.static_or_dynamic(images, 1), ops.static_or_dynamic(images, 2)
        geometric = [n for n in self.op_order if OPS[n].kind == "geometric"]
        elastic = params.get("elastic")

        def distort(batch, noise, alpha, matrices=None):
            return OPS["elastic"].build(batch, {"noise": noise, "alpha": alpha, "matrix": matrices}, None)

        if not geometric:
            if elastic is None:
                return images
            return ops.apply_where(images, elastic["gate"], distort, elastic["noise"], elastic["alpha"])
        # Unselected images carry identity parameters, so one composed
        # matrix per image and one warp cover every geometric op. The maps
        # are built about the origin and centered once.
        about_origin = ops.compose(*[OPS[n].build(params[n], None, None) for n in geometric])
        matrix = ops.about_center(about_origin, height, width)
        any_gate = _any_gate(params, geometric)

        def warp(batch, gate, matrices):
            return ops.apply_where(batch, gate, ops.apply_affine, matrices, identity_safe=True)

        if elastic is None:
            return warp(images, any_gate, matrix)

        def partitioned():
            # Images that chose the elastic distortion are sampled once at
            # M (p + d(p)) and skip the warp; the others are warped.
            partitions = tf.cast(elastic["gate"], tf.int32)
            rest, chosen = tf.dynamic_partition(tf.range(tf.shape(images)[0]), partitions, 2)
            warped = warp(tf.gather(images, rest), tf.gather(any_gate, rest), tf.gather(matrix, rest))
            distorted = distort(
                tf.gather(images, chosen),
                tf.gather(elastic["noise"], chosen),
                tf.gather(elastic["alpha"], chosen),
                tf.gather(matrix, chosen),
            )
            return tf.ensure_shape(tf.dynamic_stitch([rest, chosen], [warped, distorted]), images.shape)

        return tf.cond(tf.reduce_any(elastic["gate"]), partitioned, lambda: warp(images, any_gate, matrix))

    def _apply_pixel_group(self, images, params, group) -> tf.Tensor:
        """One gated pass over the images that chose any op of `group`."""
        seed = params["seed"]
        keys = {name: sorted(k for k in params[name] if k != "gate") for name in group}
        values = [params[name][k] for name in group for k in keys[name]]
        gate = _any_gate(params, group)

        def run(selected, *selected_values):
            position = 0
            for name in group:
                count = len(keys[name])
                values_of_op = dict(zip(keys[name], selected_values[position : position + count]))
                selected = OPS[name].build(selected, values_of_op, seed)
                position += count
            return selected

        if all(OPS[name].identity_params for name in group):
            # Cheap elementwise ops that leave unselected images as they
            # are: the whole batch costs less than a gather + scatter once
            # about a third of it is selected (measured on MNIST batches).
            return ops.apply_where(images, gate, run, *values, identity_safe=True, subset_below=1.0 / 3.0)
        return ops.apply_where(images, gate, run, *values)

    def get_config(self) -> dict:
        return {"ops": {name: list(value) for name, value in self.ops_config.items()}}


def _any_gate(params, names) -> tf.Tensor:
    """`(B,)`: True where an image chose any of the ops `names`."""
    gate = params[names[0]]["gate"]
    for name in names[1:]:
        gate = gate | params[name]["gate"]
    return gate


def _ops_argument(ops_arg, defaults):
    if ops_arg is None:
        return dict(defaults)
    if isinstance(ops_arg, (list, tuple)):
        return {name: (1.0, OPS[_check_op(name)].magnitude) for name in ops_arg}
    return {name: tuple(value) for name, value in dict(ops_arg).items()}


@register_policy("mnist")
class MnistPolicy(_GatedOpsPolicy):
    """Digits: rotation, scale, shear, translation, elastic, erasing, noise.

    Each image draws each op independently with probability
    `probability * min(1, 2 strength)`; magnitudes are uniform up to
    `magnitude * strength`. All geometric ops share one warp.

    Args:
        ops: `{op: (probability, magnitude)}` to override the defaults, or a
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

    def __init__(self, ops: Optional[dict] = None):
        super().__init__(_ops_argument(ops, self.DEFAULTS))

    @property
    def num_gate_uniforms(self):
        return len(self.op_order)

    def gates(self, v, strength):
        ramp = tf.minimum(1.0, 2.0 * strength)
        probabilities = tf.constant([self.ops_config[name][0] for name in self.op_order], tf.float32)
        # u < p ramp for u uniform in [0, 1), written for v = 2 u - 1.
        selected = tf.unstack(v < probabilities * (2.0 * ramp) - 1.0, num=len(self.op_order), axis=1)
        return dict(zip(self.op_order, selected))


@register_policy("randaugment")
class RandAugmentPolicy(_GatedOpsPolicy):
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
        choices = tf.minimum(tf.cast(tf.floor(_unit(v) * count), tf.int32), count - 1)
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


@register_policy("ops")
class OpsPolicy(MnistPolicy):
    """Any subset of ops with independent per-image gates, e.g.
    `get_policy("ops", ops={"rotate": (1.0, 30.0)})`. The mnist policy is
    this with digit-friendly defaults."""

    def __init__(self, ops=None):
        if not ops:
            raise ValueError(
                "The 'ops' policy needs `ops`: a list of op names or "
                f"{{op: (probability, magnitude)}}. Valid ops: {', '.join(sorted(OPS))}."
            )
        super().__init__(ops)
