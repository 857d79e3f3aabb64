import numpy as np
import pytest
import tensorflow as tf

from augpipe import augment


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_beta_from_two_gammas(alpha):
    draws = augment.sample_beta(alpha, tf.constant([7, 1], tf.int64), shape=[20000]).numpy()
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)). A uniform would give 1/12.
    assert draws.mean() == pytest.approx(0.5, abs=0.01)
    assert draws.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_lambda_matches_beta_mean_and_labels_sum_to_one(mode):
    alpha = 0.4
    mix = augment.MixUpCutMix(
        num_classes=10,
        mixup_alpha=alpha if mode == "mixup" else 0.0,
        cutmix_alpha=alpha if mode == "cutmix" else 0.0,
        seed=0,
    )
    sample = tf.function(lambda i: mix.sample(28, 28, tf.stack([tf.constant(7, tf.int64), i]))["lam"])
    lams = np.array([float(sample(tf.constant(i, tf.int64))) for i in range(600)])
    if mode == "mixup":
        assert lams.mean() == pytest.approx(0.5, abs=0.04)
        assert lams.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.2)
    else:
        # Clipping the box at the border only removes pasted area, so the
        # corrected lambda sits above the Beta mean, never below 0.
        assert 0.5 < lams.mean() < 0.8 and lams.min() >= 0.0
    images = np.random.default_rng(0).integers(0, 255, (8, 28, 28, 1), dtype=np.uint8)
    mixed, labels = mix(images, np.arange(8))
    assert mixed.dtype == tf.uint8 and mixed.shape == images.shape
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, atol=1e-6)


def test_cutmix_lambda_is_area_corrected():
    mix = augment.MixUpCutMix(num_classes=2, mixup_alpha=0.0, cutmix_alpha=1.0, seed=0)
    images = np.zeros((2, 10, 10, 1), np.float32)
    images[1] = 1.0
    for i in range(50):
        params = mix.sample(10, 10, tf.constant([1, i], tf.int64))
        mixed, labels = mix.apply(images, np.array([0, 1]), params)
        pasted = mixed.numpy()[0].mean()  # fraction of image 0 covered by image 1
        assert labels.numpy()[0, 1] == pytest.approx(pasted, abs=1e-6)
        assert float(params["lam"]) == pytest.approx(1 - pasted, abs=1e-6)


def test_soft_labels_and_smoothing():
    mix = augment.MixUpCutMix(num_classes=4, mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.2, seed=0)
    soft = np.array([[0.5, 0.5, 0, 0], [0, 0, 1.0, 0]], np.float32)
    _, labels = mix(np.zeros((2, 4, 4, 1), np.float32), soft)
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, atol=1e-6)
    assert labels.numpy().min() >= 0.05 - 1e-6  # smoothing floor 0.2 / 4


def test_probability_variable_controls_mixing():
    mix = augment.MixUpCutMix(num_classes=3, prob=0.0, seed=0)
    images = np.random.default_rng(0).integers(0, 255, (4, 6, 6, 1), dtype=np.uint8)
    same, labels = mix(images, [0, 1, 2, 0])
    np.testing.assert_array_equal(same.numpy(), images)
    np.testing.assert_array_equal(labels.numpy().argmax(1), [0, 1, 2, 0])
    mix.prob.assign(1.0)
    mixed, _ = mix(images, [0, 1, 2, 0])
    assert not np.array_equal(mixed.numpy(), images)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: mixup_alpha=-1. Expected a float >= 0"):
        augment.MixUpCutMix(10, mixup_alpha=-1)
    with pytest.raises(ValueError, match=r"Received: prob=2. Expected a float in \[0, 1\]"):
        augment.MixUpCutMix(10, prob=2)
    with pytest.raises(ValueError, match="at least one > 0"):
        augment.MixUpCutMix(10, mixup_alpha=0, cutmix_alpha=0)
    with pytest.raises(ValueError, match=r"expects images \(B, H, W, C\)"):
        augment.MixUpCutMix(10)(np.zeros((28, 28, 1), np.uint8), [0])


def test_albumentations_adapter_in_pipeline(tiny_source):
    import albumentations as A

    from augpipe.pipelines import build_pipeline, make_splits

    split = make_splits(tiny_source, seed=0).train
    fn = augment.albumentations_batch(A.Compose([A.Affine(rotate=(-30, 30), p=1.0)]), seed=0)
    ds = build_pipeline(split, batch_size=32, training=True, host_augment=fn)
    images, _ = next(iter(ds))
    assert images.dtype == tf.uint8 and images.shape == (32, 12, 12, 1)
    with pytest.raises(ValueError, match="Expected an albumentations.Compose"):
        augment.albumentations_batch("rotate")
