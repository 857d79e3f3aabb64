"""Host-only adapters: run an albumentations pipeline on batches inside tf.data."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf


def albumentations_batch(compose, seed=None):
    """Wraps an `albumentations.Compose` as a host-side batch callable.

    This is the slow path: every image crosses from the TensorFlow runtime to
    Python and back through `tf.numpy_function`, one at a time, holding the
    GIL. Use it only for transforms that have no in-graph version in
    `augment.ops`; it cannot run on an accelerator, and it ignores the
    strength variable.

    Args:
        compose: an `albumentations.Compose` (or any callable taking
            `image=` and returning `{"image": ...}`).
        seed: seeds albumentations' generator (`Compose.set_random_seed`).

    Returns:
        A callable `images -> images` for `pipelines.build_pipeline(host_augment=...)`.

    Example:

    >>> import albumentations as A
    >>> fn = albumentations_batch(A.Compose([A.Affine(rotate=(-15, 15), p=1.0)]), seed=0)
    >>> fn(np.zeros((2, 28, 28, 1), np.uint8)).shape
    TensorShape([2, 28, 28, 1])
    """
    # Albumentations asks the network for updates on import unless told not to.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if not callable(compose):
        raise ValueError(
            f"Received: compose={compose!r}. Expected an albumentations.Compose or a callable "
            "taking image= and returning a dict with 'image'."
        )
    if seed is not None and hasattr(compose, "set_random_seed"):
        compose.set_random_seed(int(seed))

    def run(batch: np.ndarray) -> np.ndarray:
        out = np.empty_like(batch)
        for i, image in enumerate(batch):
            result = compose(image=image)["image"]
            out[i] = result.reshape(image.shape)
        return out

    def augment_batch(images):
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4:
            raise ValueError(
                f"albumentations_batch expects images (B, H, W, C). Received shape {tuple(images.shape)}."
            )
        result = tf.numpy_function(run, [images], images.dtype, stateful=True)
        result.set_shape(images.shape)
        return result

    return augment_batch
