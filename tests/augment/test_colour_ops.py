"""The colour ops against the reference implementations: PIL, as the papers' code and timm/torchvision use it.

Every op applied at several magnitudes to a real photograph (the sample image
shipped inside matplotlib) and to a drawn gray image, in colour and in gray:
mean absolute difference under 2 grey levels of 255, the bound we promise.
The measured differences are far below it (see MAX_MEAN_DIFFERENCE's note).
"""

import os

import matplotlib
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from augpipe.augment import ops

# The promise. Measured worst mean differences over the four images: 0 for
# equalize, solarize, solarize_add, posterize and the flip (integer rules,
# exact), 0.001 grayscale, 0.31 sharpness, 0.43 autocontrast, 0.47 colour,
# 0.63 brightness, 0.73 contrast (PIL truncates where augpipe rounds, and
# rounds its luminance, smoothing and mean to integers).
MAX_MEAN_DIFFERENCE = 2.0


def _photo() -> Image.Image:
    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    with Image.open(path) as image:
        return image.convert("RGB").resize((80, 96), Image.BILINEAR)


def _drawn() -> Image.Image:
    # Low contrast on purpose (levels 40-170), so autocontrast and equalize have work to do.
    y, x = np.mgrid[0:64, 0:48]
    gray = 40 + (x * 2 + y + 30 * np.sin(x / 5.0) * np.cos(y / 7.0)).clip(0, 130)
    return Image.fromarray(gray.astype(np.uint8), "L")


IMAGES = {
    "photo-rgb": _photo,
    "photo-gray": lambda: _photo().convert("L"),
    "drawn-gray": _drawn,
    "drawn-rgb": lambda: Image.merge("RGB", [_drawn(), _drawn().point(lambda v: 255 - v), _drawn()]),
}


def ours(image: Image.Image, fn) -> np.ndarray:
    """Applies an op of augment.ops to a PIL image as augpipe would (uint8 -> [0, 1] -> uint8)."""
    array = np.asarray(image)
    batch = tf.constant(array.reshape(1, array.shape[0], array.shape[1], -1))
    out = fn(ops.to_float(batch)).numpy()[0]
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).reshape(array.shape)


def difference(image, ours_fn, reference: Image.Image) -> float:
    return float(np.abs(ours(image, ours_fn) - np.asarray(reference, np.float64)).mean())


def one(value):
    return tf.constant([value], tf.float32)


FACTORS = [0.0, 0.3, 0.7, 1.0, 1.4, 1.99]

CASES = (
    [("autocontrast", None, lambda x, m: ops.autocontrast(x), lambda im, m: ImageOps.autocontrast(im))]
    + [("equalize", None, lambda x, m: ops.equalize(x), lambda im, m: ImageOps.equalize(im))]
    + [("solarize", t, lambda x, m: ops.solarize(x, one(m)), lambda im, m: ImageOps.solarize(im, m))
       for t in (0, 64, 128, 200, 256)]
    + [("posterize", b, lambda x, m: ops.posterize(x, one(m)), lambda im, m: ImageOps.posterize(im, m))
       for b in (1, 2, 4, 6, 8)]
    + [("color", f, lambda x, m: ops.color(x, one(m)), lambda im, m: ImageEnhance.Color(im).enhance(m))
       for f in FACTORS]
    + [("contrast_factor", f, lambda x, m: ops.contrast_factor(x, one(m)),
        lambda im, m: ImageEnhance.Contrast(im).enhance(m)) for f in FACTORS]
    + [("brightness_factor", f, lambda x, m: ops.brightness_factor(x, one(m)),
        lambda im, m: ImageEnhance.Brightness(im).enhance(m)) for f in FACTORS]
    + [("sharpness", f, lambda x, m: ops.sharpness(x, one(m)),
        lambda im, m: ImageEnhance.Sharpness(im).enhance(m)) for f in FACTORS]
    + [("grayscale", None, lambda x, m: ops.grayscale(x), lambda im, m: im.convert("L").convert(im.mode))]
    # timm's solarize_add: a lookup table through PIL's point().
    + [("solarize_add", a, lambda x, m: ops.solarize_add(x, one(m)),
        lambda im, m: im.point([min(255, v + m) if v < 128 else v for v in range(256)] * len(im.getbands())))
       for a in (0, 30, 110)]
    + [("flip_horizontal", None,
        lambda x, m: ops.apply_affine(x, ops.flip_matrix(tf.constant([True]), tf.constant([False]),
                                                         x.shape[1], x.shape[2])),
        lambda im, m: ImageOps.mirror(im))]
)


@pytest.mark.parametrize("image_name", sorted(IMAGES))
@pytest.mark.parametrize("name,magnitude,fn,reference", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_op_matches_pil(name, magnitude, fn, reference, image_name):
    image = IMAGES[image_name]()
    assert difference(image, lambda x: fn(x, magnitude), reference(image, magnitude)) < MAX_MEAN_DIFFERENCE


def test_ops_change_what_they_should():
    # The comparison above cannot pass by doing nothing: each op changes the photograph
    # at every magnitude but its identity one.
    identity = {("solarize", 256), ("posterize", 8), ("solarize_add", 0)} | {(n, 1.0) for n, *_ in CASES}
    image = _photo()
    array = np.asarray(image, np.float64)
    for name, magnitude, fn, _ in CASES:
        if (name, magnitude) in identity:
            continue
        assert np.abs(ours(image, lambda x: fn(x, magnitude)) - array).mean() > 1.0, (name, magnitude)


def test_hue_matches_tensorflow_adjust_hue():
    # PIL has no hue rotation; TensorFlow's is the reference.
    photo = np.asarray(_photo())[None]
    images = tf.constant(np.concatenate([photo, photo[:, ::-1]]), tf.uint8)
    floats = ops.to_float(images)
    deltas = tf.constant([0.1, -0.3])
    expected = tf.stack([tf.image.adjust_hue(floats[i], float(deltas[i])) for i in range(2)])
    assert float(tf.reduce_mean(tf.abs(ops.hue(floats, deltas) - expected))) * 255 < 0.5
    gray = ops.to_float(tf.constant(np.asarray(_drawn())[None, :, :, None]))
    np.testing.assert_array_equal(ops.hue(gray, deltas[:1]).numpy(), gray.numpy())


def test_equalize_is_exactly_pils_rule_on_a_batch():
    # A batch of different images: each gets its own histogram.
    images = [_drawn(), _photo().convert("L").resize((48, 64)), ImageOps.autocontrast(_drawn())]
    batch = tf.constant(np.stack([np.asarray(im) for im in images])[..., None])
    out = np.round(ops.equalize(ops.to_float(batch)).numpy()[..., 0] * 255)
    for index, image in enumerate(images):
        np.testing.assert_array_equal(out[index], np.asarray(ImageOps.equalize(image)))
    # A flat image is left as it is (PIL: one level, nothing to spread).
    flat = tf.fill([1, 4, 4, 3], 0.5)
    np.testing.assert_array_equal(ops.equalize(flat).numpy(), np.round(flat.numpy() * 255) / 255)


def test_pad_crop_is_padding_then_cropping():
    photo = np.asarray(_photo())
    matrices = ops.translation_matrix(tf.constant([3.0]), tf.constant([-2.0]))
    out = np.round(ops.apply_affine(ops.to_float(tf.constant(photo[None])), matrices).numpy()[0] * 255)
    padded = np.pad(photo, [(4, 4), (4, 4), (0, 0)])
    # Content moves 3 right and 2 up: the crop starts 3 left of and 2 below the pad's corner.
    expected = padded[4 + 2 : 4 + 2 + photo.shape[0], 4 - 3 : 4 - 3 + photo.shape[1]]
    np.testing.assert_array_equal(out, expected)
