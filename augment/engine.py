"""The policy engine: per-image gates, one warp for every geometric op, then pixel ops.

`GatedPolicy` is the base of every op-table policy. A subclass says only how
images choose ops (`gates`); the engine samples every parameter with one
generator call, composes the geometric ops of each image into one matrix
(one warp per batch), fuses the resampling op (elastic distortion) into that
warp, and runs pixel ops on the images that chose them.

How strength maps to each op (`s` is the strength) is up to the policy: `gates`
says which images take an op at `s`, and `magnitude_scales` how far the
largest magnitude reaches (`magnitude * s` by default, the full `magnitude`
for the policy's `fixed_magnitude_ops`; docs/ops.md has each policy's rule).
`strength = 0` must select no image for any op, which makes it the exact
identity without a branch on the strength.

Example: a policy where every image takes every op it lists.

>>> class Always(GatedPolicy):
...     num_gate_uniforms = 0
...     def gates(self, v, strength):
...         return {name: tf.fill([tf.shape(v)[0]], strength > 0.0) for name in self.op_order}
>>> policy = Always({"rotate": (1.0, 30.0), "noise": (1.0, 0.1)})
>>> images = tf.zeros((2, 8, 8, 1))
>>> out = policy(images, tf.constant(0.0), tf.constant([0, 1], tf.int64))
>>> bool(tf.reduce_all(out == images))
True
"""

from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf

from augpipe.augment import ops, rng
from augpipe.augment.op_table import OPS, check_magnitude, check_op
from augpipe.augment.registry import Policy


class GatedPolicy(Policy):
    """Shared machinery for policies over the op table.

    Args:
        ops_config: `{op: (probability, magnitude)}`.

    Subclasses set `num_gate_uniforms` and implement `gates`.
    """

    num_gate_uniforms = 0

    def __init__(self, ops_config: Dict[str, Tuple[float, float]]):
        self.ops_config = {}
        for name, (probability, magnitude) in ops_config.items():
            check_op(name)
            if not 0.0 <= float(probability) <= 1.0:  # NaN fails this too
                raise ValueError(f"Op {name!r} probability must be in [0, 1]. Received: {probability!r}.")
            self.ops_config[name] = (float(probability), check_magnitude(name, magnitude))
        names = list(self.ops_config)
        self.geometric = [n for n in names if OPS[n].kind == "geometric"]
        self.resample = [n for n in names if OPS[n].kind == "resample"]
        if len(self.resample) > 1:
            raise ValueError(f"A policy can fuse one resampling op into its warp. Received: {self.resample}.")
        # Geometric ops first: they share one warp. The resampling op comes
        # right after it, because it is fused with the warp.
        self.op_order = self.geometric + self.resample + [n for n in names if OPS[n].kind == "pixel"]
        # Consecutive cheap elementwise ops whose unselected parameters are
        # the identity share one gated pass (one gather and one scatter for
        # all of them).
        self.pixel_groups = []
        for name in self.op_order:
            if OPS[name].kind != "pixel":
                continue
            if self.pixel_groups and _shares_pass(name) and _shares_pass(self.pixel_groups[-1][-1]):
                self.pixel_groups[-1].append(name)
            else:
                self.pixel_groups.append([name])

    def gates(self, v, strength) -> Dict[str, tf.Tensor]:
        """Per-op `(B,)` bool gates from `(B, num_gate_uniforms)` uniforms in [-1, 1)."""
        raise NotImplementedError

    # Ops whose largest magnitude does not depend on the strength (the
    # policy's strength moves only how many images get them; see
    # `magnitude_scales`). Empty: every magnitude scales with the strength.
    fixed_magnitude_ops: Tuple[str, ...] = ()

    def magnitude_scales(self, strength) -> tf.Tensor:
        """What each op's largest magnitude is multiplied by, in `op_order` (`(len(op_order),)`).

        The strength itself, except for `fixed_magnitude_ops` (1: the
        policy's own magnitudes at every strength, as StyleGAN2-ADA does).
        """
        fixed = tf.constant([name in self.fixed_magnitude_ops for name in self.op_order], tf.bool)
        return tf.where(fixed, 1.0, tf.cast(strength, tf.float32))

    def sample(self, batch_size, height, width, strength, seed) -> dict:
        strength = tf.cast(strength, tf.float32)
        # One generator call draws every per-image number this batch needs:
        # many small random ops would cost more than the draws themselves.
        widths = [OPS[name].num_uniforms for name in self.op_order]
        total = self.num_gate_uniforms + sum(widths)
        # The XLA-proof generators of `augment.ops`: the static path under
        # XLA draws what the dynamic path draws.
        seeds = rng.split_seed(seed, 2)
        v = rng.uniform([batch_size, total], seeds[0], -1.0, 1.0)
        gates = self.gates(v[:, : self.num_gate_uniforms], strength)
        # One unstack instead of a slice per parameter.
        columns = tf.unstack(v[:, self.num_gate_uniforms :], num=total - self.num_gate_uniforms, axis=1)
        magnitudes = tf.unstack(
            tf.constant([self.ops_config[name][1] for name in self.op_order], tf.float32)
            * self.magnitude_scales(strength),
            num=len(self.op_order),
        )
        params = {}
        offset = 0
        for name, width_v, magnitude in zip(self.op_order, widths, magnitudes):
            gate = gates[name]
            params[name] = {"gate": gate, **OPS[name].sample(columns[offset : offset + width_v], gate, height, width,
                                                             magnitude)}
            offset += width_v
        params["seed"] = seeds[1]
        return params

    def apply(self, images, params) -> tf.Tensor:
        return self._apply(images, params, static=False)

    def apply_static(self, images, params) -> tf.Tensor:
        """`apply` with static shapes only (for XLA): every image goes through every op's arithmetic.

        Unchosen images carry identity parameters (or are put back with a
        `tf.where`), and the warp is a gather-based bilinear sampler, so the
        decisions, the parameters and the pixels are those of `apply` (to
        within float rounding; see `ops.apply_affine_static` for the one
        border difference).
        """
        return self._apply(images, params, static=True)

    # How many pixel ops one image can choose at most, when the policy knows
    # a small bound (TrivialAugment: 1, RandAugment: num_ops). The dynamic
    # path then runs the pixel ops in that many rounds, each one partition
    # of the batch by the op an image takes in that round and one stitch,
    # instead of a gather and a scatter of the whole batch per op. None:
    # one gated pass per op (or group of cheap ops).
    pixel_rounds = None

    def _apply(self, images, params, static) -> tf.Tensor:
        images = self._resample(images, params, static)
        pixel_ops = [name for group in self.pixel_groups for name in group]
        if not static and self.pixel_rounds and len(pixel_ops) > 1:
            return self._apply_pixel_rounds(images, params, pixel_ops)
        for group in self.pixel_groups:
            images = self._apply_pixel_group(images, params, group, static)
        return images

    def _op_values(self, images, params, name) -> dict:
        """An op's per-image parameters, with its dense draws for the whole batch."""
        values = {k: v for k, v in params[name].items() if k != "gate"}
        if OPS[name].dense is not None:
            # Drawn for the whole batch before gating, from the op's own
            # seed: an image's draw does not depend on the other images.
            values.update(OPS[name].dense(images, rng.fold_in(params["seed"], self.op_order.index(name))))
        return values

    def _apply_pixel_rounds(self, images, params, names) -> tf.Tensor:
        """The pixel ops in `pixel_rounds` rounds: in round r every image takes its r-th chosen op (in op order).

        Each round partitions the batch by that op (one copy), runs every op
        on its part only, and stitches the parts back (one copy). The same
        images as one pass per op, in the same order.
        """
        count = len(names)
        gates = tf.stack([params[name]["gate"] for name in names], axis=1)
        rank = tf.cumsum(tf.cast(gates, tf.int32), axis=1)  # 1 for an image's first chosen op, ...
        values = {name: self._op_values(images, params, name) for name in names}
        positions = tf.range(tf.shape(images)[0])
        for round_index in range(self.pixel_rounds):
            taken = gates & (rank == round_index + 1)
            # The op each image takes this round; `count` for none.
            choice = tf.where(tf.reduce_any(taken, axis=1), tf.argmax(tf.cast(taken, tf.int32), axis=1,
                                                                       output_type=tf.int32), count)
            parts = tf.dynamic_partition(images, choice, count + 1)
            where = tf.dynamic_partition(positions, choice, count + 1)
            outputs = []
            for index, name in enumerate(names):
                chosen = {k: tf.gather(v, where[index]) for k, v in values[name].items()}
                outputs.append(tf.cast(OPS[name].build(parts[index], chosen, params["seed"]), images.dtype))
            outputs.append(parts[count])
            images = tf.ensure_shape(tf.dynamic_stitch(where, outputs), images.shape)
        return images

    def _resample(self, images, params, static) -> tf.Tensor:
        """The geometric ops (one composed matrix, one warp) and the resampling op, each image resampled once."""
        height, width = ops.static_or_dynamic(images, 1), ops.static_or_dynamic(images, 2)
        resample = None
        if self.resample:
            op, resample = OPS[self.resample[0]], params[self.resample[0]]

            def distort(batch, gate_params, matrices=None):
                return op.build(batch, gate_params, matrices)

        matrix = None
        if self.geometric:
            # Unselected images carry identity parameters, so one composed
            # matrix per image and one warp cover every geometric op. The
            # maps are built about the origin and centered once.
            about_origin = ops.compose(*[OPS[n].build(params[n]) for n in self.geometric])
            matrix = ops.about_center(about_origin, height, width)
        if static:
            # Every image is sampled once at M (p + d(p)); an unchosen image
            # has the identity M and a zero field d, which reads every pixel
            # at its own position (weights 0: the exact input).
            if resample is not None:
                return distort(images, {k: v for k, v in resample.items() if k != "gate"}, matrix)
            return images if matrix is None else ops.apply_affine_static(images, matrix)

        if matrix is None:
            if resample is None:
                return images
            values = {k: v for k, v in resample.items() if k != "gate"}
            keys = sorted(values)
            return ops.apply_where(images, resample["gate"], lambda batch, *vs: distort(batch, dict(zip(keys, vs))),
                                   *[values[k] for k in keys])
        any_gate = any_gate_of(params, self.geometric)

        def warp(batch, gate, matrices):
            return ops.apply_where(batch, gate, ops.apply_affine, matrices, identity_safe=True)

        if resample is None:
            return warp(images, any_gate, matrix)

        def partitioned():
            # Images that chose the resampling op are sampled once at
            # M (p + d(p)) and skip the warp; the others are warped.
            partitions = tf.cast(resample["gate"], tf.int32)
            rest, chosen = tf.dynamic_partition(tf.range(tf.shape(images)[0]), partitions, 2)
            warped = warp(tf.gather(images, rest), tf.gather(any_gate, rest), tf.gather(matrix, rest))
            chosen_params = {k: tf.gather(v, chosen) for k, v in resample.items() if k != "gate"}
            distorted = distort(tf.gather(images, chosen), chosen_params, tf.gather(matrix, chosen))
            return tf.ensure_shape(tf.dynamic_stitch([rest, chosen], [warped, distorted]), images.shape)

        return tf.cond(tf.reduce_any(resample["gate"]), partitioned, lambda: warp(images, any_gate, matrix))

    def _apply_pixel_group(self, images, params, group, static) -> tf.Tensor:
        """One gated pass over the images that chose any op of `group`."""
        seed = params["seed"]
        per_op = {name: self._op_values(images, params, name) for name in group}
        keys = {name: sorted(per_op[name]) for name in group}
        values = [per_op[name][k] for name in group for k in keys[name]]
        gate = any_gate_of(params, group)

        def run(selected, *selected_values):
            position = 0
            for name in group:
                count = len(keys[name])
                values_of_op = dict(zip(keys[name], selected_values[position : position + count]))
                selected = OPS[name].build(selected, values_of_op, seed)
                position += count
            return selected

        identity_safe = all(OPS[name].identity_params for name in group)
        if static:
            return ops.apply_everywhere(images, gate, run, *values, identity_safe=identity_safe)
        if identity_safe:
            # Cheap elementwise ops that leave unselected images as they
            # are: the whole batch costs less than a gather + scatter once
            # about a third of it is selected (measured on MNIST batches).
            return ops.apply_where(images, gate, run, *values, identity_safe=True, subset_below=1.0 / 3.0)
        return ops.apply_where(images, gate, run, *values)

    def get_config(self) -> dict:
        return {"ops": {name: list(value) for name, value in self.ops_config.items()}}


def _shares_pass(name) -> bool:
    """Cheap elementwise ops with identity parameters share one pass with their neighbours of that kind.

    Costlier ops (a smoothing, a reduction) keep their own pass: grouped, the
    whole batch would run them once a third of it chose any op of the group
    (measured: the RandAugment paper's policy ran 1.66x faster at 32x32 with
    its colour ops in separate passes).
    """
    return OPS[name].identity_params and OPS[name].elementwise


def any_gate_of(params, names) -> tf.Tensor:
    """`(B,)`: True where an image chose any of the ops `names`."""
    gate = params[names[0]]["gate"]
    for name in names[1:]:
        gate = gate | params[name]["gate"]
    return gate
