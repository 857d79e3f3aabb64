"""Host-only adapters: run an albumentations pipeline on batches inside tf.data."""

from __future__ import annotations

import os
import warnings
from typing import Optional

import numpy as np
import tensorflow as tf


# The last albumentations release under the MIT licence; its successor (AlbumentationsX, AGPL-3.0 or a
# commercial licence) installs under the same import name.
MIT_ALBUMENTATIONS = ("albumentations", "2.0.8")
_warned = []


def check_albumentations_licence() -> Optional[str]:
    """Warns once (and returns the reason) when the `albumentations` module is not the MIT release augpipe pins.

    >>> check_albumentations_licence() is None  # the pinned 2.0.8
    True
    """
    from importlib import metadata

    owners = metadata.packages_distributions().get("albumentations") or []
    if not owners:
        return None
    found = [(name, metadata.version(name)) for name in owners]
    if found == [MIT_ALBUMENTATIONS] or all(
            name == "albumentations" and _version(version) <= _version(MIT_ALBUMENTATIONS[1]) for name, version in found):
        return None
    reason = (
        f"the 'albumentations' module comes from {', '.join(f'{n} {v}' for n, v in found)}, not the MIT-licensed "
        f"albumentations {MIT_ALBUMENTATIONS[1]} that augpipe pins; its successor is licensed AGPL-3.0 (or "
        f"commercially). Check that its licence suits you, or pip install 'albumentations=={MIT_ALBUMENTATIONS[1]}'."
    )
    if not _warned:
        _warned.append(reason)
        warnings.warn(reason, UserWarning, stacklevel=2)
    return reason


def _version(text: str) -> tuple:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


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
    check_albumentations_licence()
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
