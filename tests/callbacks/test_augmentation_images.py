"""The TensorBoard picture of the augmentation: fixed images, current strength, no draw from the layer's stream."""

import numpy as np
import pytest
import tensorflow as tf

from augpipe import augment, callbacks


def read_images(log_dir):
    """{step: (strength, [decoded images])} from the augmentation event files."""
    found = {}
    for path in sorted((log_dir / "augmentation").glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if value.tag == "augmentation":
                    pictures = [tf.io.decode_png(encoded).numpy() for encoded in tensor[2:]]
                    found.setdefault(event.step, {})["images"] = pictures
                elif value.tag == "augmentation_strength":
                    found.setdefault(event.step, {})["strength"] = float(tensor)
    return found


def test_writes_the_fixed_batch_at_the_current_strength(embedded_splits, tmp_path):
    layer = augment.Augment("mnist", strength=0.0, seed=3)
    images = embedded_splits.val.images[:4]
    callback = callbacks.AugmentationImages(layer, images, tmp_path, every=2)
    state_before = layer.rng_state.numpy().copy()
    for epoch, strength in enumerate([0.0, 0.5, 0.5, 1.0]):
        layer.set_strength(strength)
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    written = read_images(tmp_path)
    assert sorted(written) == [1, 2, 4]  # epoch 1, then every 2 epochs
    assert [written[step]["strength"] for step in (1, 2, 4)] == pytest.approx([0.0, 0.5, 1.0])
    # Strength 0: the images themselves; then the same draws, more of them as strength grows.
    np.testing.assert_array_equal(np.stack(written[1]["images"]), images)
    assert not np.array_equal(np.stack(written[2]["images"]), images)
    assert not np.array_equal(np.stack(written[4]["images"]), np.stack(written[2]["images"]))
    # The same picture for the same strength, and nothing taken from the layer's random stream.
    layer.set_strength(0.5)
    again = np.round(callback.augmented().numpy() * 255)
    np.testing.assert_allclose(again, np.stack(written[2]["images"]), atol=1)
    np.testing.assert_array_equal(layer.rng_state.numpy(), state_before)


def test_refuses_a_single_image_without_a_batch_axis():
    with pytest.raises(ValueError, match=r"expects a batch \(N, H, W, C\). Received shape \(28, 28, 1\)"):
        callbacks.AugmentationImages(augment.Augment("mnist", seed=0), np.zeros((28, 28, 1), np.uint8), "tb")
