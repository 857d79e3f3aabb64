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


def test_pictures_show_every_class_named_with_the_ops_each_image_took(tmp_path):
    # Found on main: the TensorBoard pictures of a 6-class run were all of the first class, and preview tiles
    # named neither class nor op.
    import glob

    import numpy as np
    from tensorboard.backend.event_processing import event_accumulator

    from augpipe import augment, callbacks, pipelines
    from augpipe.scripts.preview_augment import applied_ops

    labels = np.repeat(np.arange(6), 20)
    picks = pipelines.splits.balanced_sample(labels, 8, seed=0)
    assert labels[picks].tolist() == [0, 1, 2, 3, 4, 5, 0, 1]
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), np.uint8)
    names = applied_ops(images, "trivialaugment", [0.0, 1.0], seed=0)
    assert names[0] == [[]] * 8  # strength 0: no image takes an op
    assert sum(len(n) == 1 for n in names[1]) >= 4 and all(len(n) <= 1 for n in names[1])  # TrivialAugment: one
    assert applied_ops(images, "augmix", [1.0]) is None  # no per-image op choice to show
    layer = augment.Augment("trivialaugment", strength=1.0, seed=0)
    captions = [f"class{k}" for k in labels[picks]]
    callback = callbacks.AugmentationImages(layer, images, tmp_path, every=1, captions=captions)
    callback.on_epoch_end(0)
    callback.on_train_end()
    accumulator = event_accumulator.EventAccumulator(glob.glob(str(tmp_path / "augmentation" / "*"))[0],
                                                     size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = [t for t in accumulator.Tags()["tensors"] if t.startswith("augmentation/")]
    assert tags == [f"augmentation/{i:02d} {c}" for i, c in enumerate(captions)]


def test_the_curves_mark_the_reported_models_epoch(tmp_path):
    from augpipe import callbacks

    curves = callbacks.TrainingCurves(tmp_path / "curves.png")
    for epoch, accuracy in enumerate([0.5, 0.8, 0.8, 0.7]):
        curves.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": accuracy, "test_accuracy": accuracy - 0.1})
    assert curves.best_epoch() == 3  # the later of the tied epochs, as the checkpoint keeps it
    assert (tmp_path / "curves.png").stat().st_size > 0
    lower = callbacks.TrainingCurves(tmp_path / "loss.png", monitor="loss", mode="min")
    for epoch, loss in enumerate([0.9, 0.4, 0.6]):
        lower.on_epoch_end(epoch, {"val_loss": loss})
    assert lower.best_epoch() == 2


def test_the_curves_draw_every_few_epochs_and_when_training_ends(tmp_path):
    from augpipe import callbacks

    path = tmp_path / "curves.png"
    curves = callbacks.TrainingCurves(path, every=3)
    drawn = []
    for epoch in range(5):
        curves.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_accuracy": 0.5})
        drawn.append(path.stat().st_mtime_ns if path.exists() else None)
    assert drawn[:2] == [None, None] and drawn[2] is not None  # drawn after the third epoch only
    assert drawn[3] == drawn[4] == drawn[2]
    assert len(curves.rows) == 5  # every epoch is recorded, drawn or not
    path.unlink()
    curves.on_train_end()  # epoch 5 was not drawn: training's end draws it
    assert path.stat().st_size > 0
    path.unlink()
    curves.on_epoch_end(5, {"loss": 0.1, "val_accuracy": 0.6})  # epoch 6, drawn
    curves.on_train_end()
    assert path.exists()
    path.unlink()
    curves.on_train_end()  # nothing new since the last drawing
    assert not path.exists()
    with pytest.raises(ValueError, match=r"Received: every=0\. Expected a whole number of epochs >= 1"):
        callbacks.TrainingCurves(path, every=0)
