"""The op table: every op the policies can use, as a named sampler and a named builder.

An op is an `OpDef` built by keyword. Its sampler turns uniforms and an
already strength-scaled magnitude into per-image parameters; its builder
applies them (through one function of `augment.ops`, so each op has one
implementation). `kind` says how the engine (`augment.engine`) runs it:

- `"geometric"`: the builder returns a 3x3 matrix per image about the
  origin; all geometric ops of a policy are composed into one warp.
- `"resample"`: the builder resamples the image itself at displaced
  coordinates, with the composed geometric matrix fused in (elastic
  distortion), so every image is interpolated once.
- `"pixel"`: the builder maps images to images.

Example:

>>> OPS["rotate"].unit
'degrees'
>>> sorted(name for name, op in OPS.items() if op.kind == "resample")
['elastic']
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Optional

import tensorflow as tf

from augpipe.augment import ops
from augpipe.validation import did_you_mean

KINDS = ("geometric", "resample", "pixel")


@dataclasses.dataclass(frozen=True)
class OpDef:
    """One augmentation op as the policies see it.

    Attributes:
        kind: `"geometric"`, `"resample"` or `"pixel"` (see the module docs).
        num_uniforms: how many uniform numbers per image `sample` needs.
        sample: `(v, gate, height, width, magnitude) -> dict` of per-image
            parameters, where `v` is a list of `num_uniforms` `(B,)` tensors
            uniform in [-1, 1) and `magnitude` is already scaled by strength.
            Geometric ops return identity parameters where `gate` is False.
        build: geometric: `(params) -> (B, 3, 3)` about the origin;
            resample: `(images, params, matrix) -> images`; pixel:
            `(images, params, seed) -> images`.
        magnitude: the default maximum magnitude at strength 1.
        unit: what the magnitude means.
        strength_rule: how magnitude `m` and strength `s` give the drawn
            parameter (docs/ops.md is generated from it).
        identity_params: `sample` gives unselected images parameters under
            which `build` is the exact identity (a zero noise level, an empty
            box), so the static-shape path needs no `tf.where` for it.
        elementwise: cheap per-pixel arithmetic (no reduction, no
            neighbourhood): with `identity_params`, consecutive such ops
            share one gated pass.
        dense: pixel ops only, optional: `(images, seed) -> dict` of
            per-image random tensors drawn for the whole batch before any
            gating (the noise op's normals), then gathered with the other
            parameters. An image's draw then depends only on its position
            in the batch, never on which other images chose the op, so the
            per-image subset path and the static-shape path give it the
            same pixels.
        max_magnitude: the largest magnitude that means something (posterize
            cannot remove more than 7 of 8 bits); `check_magnitude` refuses
            more, and NaN or infinity for every op.
    """

    kind: str
    num_uniforms: int
    sample: Callable
    build: Callable
    magnitude: float
    unit: str
    identity_params: bool = False
    strength_rule: str = ""
    dense: Optional[Callable] = None
    elementwise: bool = False
    max_magnitude: float = float("inf")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Received: kind={self.kind!r}. Expected one of: {', '.join(KINDS)}.")


def _unit(v):
    """Maps uniforms in [-1, 1) to [0, 1)."""
    return 0.5 * v + 0.5


def _gated(values, gate, identity=0.0):
    return tf.where(gate, values, identity)


# ---------------------------------------------------------------- samplers
# (v, gate, height, width, magnitude) -> per-image parameters


def sample_rotate(v, gate, height, width, magnitude):
    return {"angle": _gated(v[0] * magnitude * (math.pi / 180.0), gate)}


def sample_scale(v, gate, height, width, magnitude):
    return {"scale": _gated(1.0 + v[0] * magnitude, gate, 1.0)}


def sample_shear(v, gate, height, width, magnitude):
    return {"shear_x": _gated(v[0] * magnitude, gate), "shear_y": _gated(v[1] * magnitude, gate)}


def sample_translate(v, gate, height, width, magnitude):
    return {
        "dx": _gated(v[0] * magnitude * tf.cast(width, tf.float32), gate),
        "dy": _gated(v[1] * magnitude * tf.cast(height, tf.float32), gate),
    }


def sample_flip(v, gate, height, width, magnitude):
    return {"flip": gate}


def sample_shear_one(v, gate, height, width, magnitude):
    return {"shear": _gated(v[0] * magnitude, gate)}


def sample_translate_x(v, gate, height, width, magnitude):
    return {"shift": _gated(v[0] * magnitude * tf.cast(width, tf.float32), gate)}


def sample_translate_y(v, gate, height, width, magnitude):
    return {"shift": _gated(v[0] * magnitude * tf.cast(height, tf.float32), gate)}


def sample_pad_crop(v, gate, height, width, magnitude):
    # Whole pixels, as padding then cropping does.
    return {
        "dx": _gated(tf.round(v[0] * magnitude * tf.cast(width, tf.float32)), gate),
        "dy": _gated(tf.round(v[1] * magnitude * tf.cast(height, tf.float32)), gate),
    }


_CROP_MAX_MAGNITUDE = 0.92  # the Inception crop's smallest area is 8 %
_CROP_LOG_RATIO = math.log(4.0 / 3.0)


def sample_resized_crop(v, gate, height, width, magnitude):
    # Area uniform in [1 - m, 1] of the image, log aspect ratio uniform in
    # ±log(4/3) scaled like the area, position uniform where the crop fits.
    area = 1.0 - magnitude * _unit(v[0])
    log_ratio = v[1] * (_CROP_LOG_RATIO * tf.minimum(1.0, magnitude / _CROP_MAX_MAGNITUDE))
    ratio = tf.exp(log_ratio)
    scale_x = _gated(tf.minimum(tf.sqrt(area * ratio), 1.0), gate, 1.0)
    scale_y = _gated(tf.minimum(tf.sqrt(area / ratio), 1.0), gate, 1.0)
    return {
        "scale_x": scale_x,
        "scale_y": scale_y,
        "offset_x": v[2] * (1.0 - scale_x) * tf.cast(width, tf.float32) / 2.0,
        "offset_y": v[3] * (1.0 - scale_y) * tf.cast(height, tf.float32) / 2.0,
    }


def sample_none(v, gate, height, width, magnitude):
    return {}


def sample_factor(v, gate, height, width, magnitude):
    return {"factor": _gated(1.0 + v[0] * magnitude, gate, 1.0)}


def sample_solarize(v, gate, height, width, magnitude):
    return {"threshold": _gated(256.0 - 256.0 * magnitude * _unit(v[0]), gate, 256.0)}


def sample_solarize_add(v, gate, height, width, magnitude):
    return {"addition": _gated(255.0 * magnitude * _unit(v[0]), gate)}


def sample_posterize(v, gate, height, width, magnitude):
    return {"bits": _gated(8.0 - tf.round(magnitude * _unit(v[0])), gate, 8.0)}


def sample_hue(v, gate, height, width, magnitude):
    return {"delta": _gated(v[0] * magnitude, gate)}


def sample_elastic(v, gate, height, width, magnitude):
    return {
        "noise": tf.reshape(tf.stack(v, axis=1), (-1, 4, 4, 2)),
        # Zero where not chosen: the static-shape path samples every image.
        "alpha": _gated(tf.fill(tf.shape(gate), tf.cast(magnitude, tf.float32)), gate),
    }


def sample_brightness(v, gate, height, width, magnitude):
    return {"delta": _gated(v[0] * magnitude, gate)}


def sample_contrast(v, gate, height, width, magnitude):
    return {"factor": 1.0 + v[0] * magnitude}


def sample_gamma(v, gate, height, width, magnitude):
    return {"gamma": _gated(tf.exp(v[0] * magnitude), gate, 1.0)}


def sample_noise(v, gate, height, width, magnitude):
    return {"stddev": _gated(_unit(v[0]) * magnitude, gate)}


def sample_erase(v, gate, height, width, magnitude):
    area = _unit(v[0]) * magnitude
    # Aspect ratio log-uniform in [0.3, 3.3].
    ratio = tf.exp(0.5 * (math.log(3.3) + math.log(0.3)) + v[1] * (0.5 * (math.log(3.3) - math.log(0.3))))
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    box_h = _gated(tf.minimum(tf.round(tf.sqrt(area * h * w * ratio)), h), gate)
    box_w = _gated(tf.minimum(tf.round(tf.sqrt(area * h * w / ratio)), w), gate)
    top = tf.floor(_unit(v[2]) * (h - box_h + 1.0))
    left = tf.floor(_unit(v[3]) * (w - box_w + 1.0))
    return {"boxes": tf.stack([top, left, top + box_h, left + box_w], axis=1)}


# ---------------------------------------------------------------- builders


def build_rotate(p):
    return ops.rotation_matrix(p["angle"], None, None)


def build_scale(p):
    return ops.scale_matrix(p["scale"], p["scale"], None, None)


def build_shear(p):
    return ops.shear_matrix(p["shear_x"], p["shear_y"], None, None)


def build_translate(p):
    return ops.translation_matrix(p["dx"], p["dy"])


def build_flip_horizontal(p):
    return ops.flip_matrix(p["flip"], tf.zeros_like(p["flip"]), None, None)


def build_flip_vertical(p):
    return ops.flip_matrix(tf.zeros_like(p["flip"]), p["flip"], None, None)


def build_shear_x(p):
    return ops.shear_matrix(p["shear"], tf.zeros_like(p["shear"]), None, None)


def build_shear_y(p):
    return ops.shear_matrix(tf.zeros_like(p["shear"]), p["shear"], None, None)


def build_translate_x(p):
    return ops.translation_matrix(p["shift"], tf.zeros_like(p["shift"]))


def build_translate_y(p):
    return ops.translation_matrix(tf.zeros_like(p["shift"]), p["shift"])


def build_resized_crop(p):
    return ops.crop_matrix(p["scale_x"], p["scale_y"], p["offset_x"], p["offset_y"])


def build_elastic(images, p, matrix=None):
    return ops.elastic(images, p["noise"], p["alpha"], matrix)


def build_brightness(images, p, seed):
    return ops.brightness(images, p["delta"])


def build_contrast(images, p, seed):
    return ops.contrast(images, p["factor"])


def build_gamma(images, p, seed):
    return ops.gamma(images, p["gamma"])


def dense_noise(images, seed):
    return {"normals": ops.standard_normal_noise(tf.shape(images), seed)}


def build_noise(images, p, seed):
    return ops.add_noise(images, p["normals"], p["stddev"])


def build_erase(images, p, seed):
    return ops.erase(images, p["boxes"])


def build_brightness_factor(images, p, seed):
    return ops.brightness_factor(images, p["factor"])


def build_color(images, p, seed):
    return ops.color(images, p["factor"])


def build_contrast_factor(images, p, seed):
    return ops.contrast_factor(images, p["factor"])


def build_sharpness(images, p, seed):
    return ops.sharpness(images, p["factor"])


def build_autocontrast(images, p, seed):
    return ops.autocontrast(images)


def build_equalize(images, p, seed):
    return ops.equalize(images)


def build_solarize(images, p, seed):
    return ops.solarize(images, p["threshold"])


def build_solarize_add(images, p, seed):
    return ops.solarize_add(images, p["addition"])


def build_posterize(images, p, seed):
    return ops.posterize(images, p["bits"])


def build_grayscale(images, p, seed):
    return ops.grayscale(images)


def build_hue(images, p, seed):
    return ops.hue(images, p["delta"])


OPS: Dict[str, OpDef] = {
    "rotate": OpDef(kind="geometric", num_uniforms=1, sample=sample_rotate, build=build_rotate,
                    magnitude=25.0, unit="degrees",
                    strength_rule="angle uniform in ±m·s degrees"),
    "scale": OpDef(kind="geometric", num_uniforms=1, sample=sample_scale, build=build_scale,
                   magnitude=0.2, unit="relative zoom",
                   strength_rule="zoom factor uniform in 1 ± m·s"),
    "shear": OpDef(kind="geometric", num_uniforms=2, sample=sample_shear, build=build_shear,
                   magnitude=0.3, unit="shear factor",
                   strength_rule="x and y shear uniform in ±m·s"),
    "translate": OpDef(kind="geometric", num_uniforms=2, sample=sample_translate, build=build_translate,
                       magnitude=0.15, unit="fraction of the image size",
                       strength_rule="shift uniform in ±m·s of the width (x) and height (y)"),
    "flip_horizontal": OpDef(kind="geometric", num_uniforms=0, sample=sample_flip, build=build_flip_horizontal,
                             magnitude=1.0, unit="unused (a flip has no magnitude)",
                             strength_rule="none: a flip, chosen or not"),
    "flip_vertical": OpDef(kind="geometric", num_uniforms=0, sample=sample_flip, build=build_flip_vertical,
                           magnitude=1.0, unit="unused (a flip has no magnitude)",
                           strength_rule="none: a flip, chosen or not"),
    "shear_x": OpDef(kind="geometric", num_uniforms=1, sample=sample_shear_one, build=build_shear_x,
                     magnitude=0.3, unit="shear factor", strength_rule="x shear uniform in ±m·s"),
    "shear_y": OpDef(kind="geometric", num_uniforms=1, sample=sample_shear_one, build=build_shear_y,
                     magnitude=0.3, unit="shear factor", strength_rule="y shear uniform in ±m·s"),
    "translate_x": OpDef(kind="geometric", num_uniforms=1, sample=sample_translate_x, build=build_translate_x,
                         magnitude=0.3, unit="fraction of the width",
                         strength_rule="shift uniform in ±m·s of the width"),
    "translate_y": OpDef(kind="geometric", num_uniforms=1, sample=sample_translate_y, build=build_translate_y,
                         magnitude=0.3, unit="fraction of the height",
                         strength_rule="shift uniform in ±m·s of the height"),
    "pad_crop": OpDef(kind="geometric", num_uniforms=2, sample=sample_pad_crop, build=build_translate,
                      magnitude=0.125, unit="padding as a fraction of the size (0.125: 4 px of 32)",
                      strength_rule="pad by m·s of the size, crop at a random place: a whole-pixel shift "
                                    "uniform in ±m·s, zeros shifted in"),
    "resized_crop": OpDef(kind="geometric", num_uniforms=4, sample=sample_resized_crop, build=build_resized_crop,
                          magnitude=0.92, unit="largest share of the area cropped away",
                          strength_rule="crop of area uniform in [1 - m·s, 1], log aspect ratio uniform in "
                                        "±(m·s/0.92)·log(4/3), anywhere it fits, resized to the whole image"),
    "elastic": OpDef(kind="resample", num_uniforms=32, sample=sample_elastic, build=build_elastic,
                     magnitude=2.5, unit="peak displacement in pixels",
                     strength_rule="smooth 4x4-grid displacement field of peak m·s pixels"),
    "brightness": OpDef(kind="pixel", elementwise=True, num_uniforms=1, sample=sample_brightness, build=build_brightness,
                        magnitude=0.3, unit="added to [0, 1] pixels", identity_params=True,
                        strength_rule="added value uniform in ±m·s"),
    "contrast": OpDef(kind="pixel", num_uniforms=1, sample=sample_contrast, build=build_contrast,
                      magnitude=0.5, unit="relative change of contrast",
                      strength_rule="factor uniform in 1 ± m·s about the image mean"),
    "gamma": OpDef(kind="pixel", elementwise=True, num_uniforms=1, sample=sample_gamma, build=build_gamma,
                   magnitude=0.5, unit="log of the gamma exponent", identity_params=True,
                   strength_rule="exponent exp(u), u uniform in ±m·s"),
    "noise": OpDef(kind="pixel", elementwise=True, num_uniforms=1, sample=sample_noise, build=build_noise,
                   magnitude=0.1, unit="noise standard deviation on [0, 1] pixels", identity_params=True,
                   strength_rule="Gaussian noise, standard deviation uniform in [0, m·s]", dense=dense_noise),
    "erase": OpDef(kind="pixel", elementwise=True, num_uniforms=4, sample=sample_erase, build=build_erase,
                   magnitude=0.25, unit="largest erased fraction of the image area", identity_params=True,
                   max_magnitude=1.0,
                   strength_rule="one box of area uniform in [0, m·s] of the image, aspect 0.3-3.3"),
    "brightness_factor": OpDef(kind="pixel", elementwise=True, num_uniforms=1, sample=sample_factor, build=build_brightness_factor,
                               magnitude=0.9, unit="relative change of brightness (PIL Brightness)",
                               identity_params=True, strength_rule="pixels times a factor uniform in 1 ± m·s"),
    "color": OpDef(kind="pixel", num_uniforms=1, sample=sample_factor, build=build_color,
                   magnitude=0.9, unit="relative change of saturation (PIL Color)", identity_params=True,
                   strength_rule="saturation factor uniform in 1 ± m·s (0 is gray)"),
    "contrast_factor": OpDef(kind="pixel", num_uniforms=1, sample=sample_factor, build=build_contrast_factor,
                             magnitude=0.9, unit="relative change of contrast (PIL Contrast)", identity_params=True,
                             strength_rule="factor uniform in 1 ± m·s about the mean gray level"),
    "sharpness": OpDef(kind="pixel", num_uniforms=1, sample=sample_factor, build=build_sharpness,
                       magnitude=0.9, unit="relative change of sharpness (PIL Sharpness)", identity_params=True,
                       strength_rule="factor uniform in 1 ± m·s (0 is PIL's smoothed image)"),
    "autocontrast": OpDef(kind="pixel", num_uniforms=0, sample=sample_none, build=build_autocontrast,
                          magnitude=1.0, unit="unused (no magnitude)",
                          strength_rule="none: each channel stretched to the full range, chosen or not"),
    "equalize": OpDef(kind="pixel", num_uniforms=0, sample=sample_none, build=build_equalize,
                      magnitude=1.0, unit="unused (no magnitude)",
                      strength_rule="none: each channel's histogram equalized, chosen or not"),
    "solarize": OpDef(kind="pixel", elementwise=True, num_uniforms=1, sample=sample_solarize, build=build_solarize,
                      magnitude=1.0, unit="share of the grey levels inverted", identity_params=True, max_magnitude=1.0,
                      strength_rule="levels at or above a threshold uniform in [256 (1 - m·s), 256] inverted"),
    "solarize_add": OpDef(kind="pixel", elementwise=True, num_uniforms=1, sample=sample_solarize_add, build=build_solarize_add,
                          magnitude=110 / 255, unit="added to levels below 128, as a fraction of 255", max_magnitude=1.0,
                          identity_params=True,
                          strength_rule="levels below 128 raised by uniform [0, 255·m·s] levels"),
    "posterize": OpDef(kind="pixel", num_uniforms=1, sample=sample_posterize, build=build_posterize,
                       magnitude=4.0, unit="bits removed from 8", max_magnitude=7.0,
                       strength_rule="keeps 8 - round(u·m·s) bits, u uniform in [0, 1)"),
    "grayscale": OpDef(kind="pixel", num_uniforms=0, sample=sample_none, build=build_grayscale,
                       magnitude=1.0, unit="unused (no magnitude)",
                       strength_rule="none: the gray level in every channel, chosen or not"),
    "hue": OpDef(kind="pixel", num_uniforms=1, sample=sample_hue, build=build_hue,
                 magnitude=0.1, unit="hue rotation in turns", max_magnitude=0.5,
                 strength_rule="hue rotated by a uniform ±m·s turns"),
}


def markdown_table() -> str:
    """The op table as Markdown: name, kind, unit, default magnitude, and how strength scales it."""
    lines = [
        "| op | kind | magnitude `m` means | default `m` | at strength `s` |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(OPS):
        op = OPS[name]
        lines.append(f"| `{name}` | {op.kind} | {op.unit} | {op.magnitude:g} | {op.strength_rule} |")
    return "\n".join(lines) + "\n"


def list_ops() -> list:
    """The names of every op a policy can use."""
    return sorted(OPS)


def check_magnitude(name: str, magnitude) -> float:
    """A finite magnitude in `[0, OPS[name].max_magnitude]`, as a float; otherwise a ValueError naming the range.

    >>> check_magnitude("posterize", 12)
    Traceback (most recent call last):
    ...
    ValueError: Op 'posterize' magnitude must be a finite number in [0, 7] (bits removed from 8). Received: 12.
    """
    op = OPS[check_op(name)]
    try:
        value = float(magnitude)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and 0.0 <= value <= op.max_magnitude):
        interval = f"[0, {op.max_magnitude:g}]" if math.isfinite(op.max_magnitude) else "[0, inf)"
        raise ValueError(f"Op {name!r} magnitude must be a finite number in {interval} ({op.unit}). "
                         f"Received: {magnitude!r}.")
    return value


def check_op(name: str) -> str:
    """Returns `name` if it is an op; otherwise a ValueError that lists the ops and suggests one."""
    if name not in OPS:
        raise ValueError(f"Unknown op {name!r}. Valid ops: {', '.join(sorted(OPS))}.{did_you_mean(name, OPS)}")
    return name
