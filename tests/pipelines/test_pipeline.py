import numpy as np
import pytest
import tensorflow as tf

from augpipe.pipelines import EpochCounter, EpochSync, build_pipeline, build_training_pipeline, make_splits


@pytest.fixture
def train_split(tiny_source):
    return make_splits(tiny_source, val_size=20, test_size=20, seed=0).train


def epoch_labels(dataset):
    return np.concatenate([labels.numpy() for _, labels in dataset])


def test_dtypes_shapes_and_cardinality(train_split):
    ds = build_pipeline(train_split, batch_size=32, training=True)
    assert ds.cardinality().numpy() == 5  # 160 / 32
    images, labels = next(iter(ds))
    assert images.dtype == tf.uint8 and images.shape == (32, 12, 12, 1)
    assert labels.dtype == tf.int64 and labels.shape == (32,)
    ds = build_pipeline(train_split, batch_size=50, training=False, one_hot=True)
    assert ds.cardinality().numpy() == 4
    batches = list(ds)
    assert batches[-1][0].shape[0] == 10
    assert batches[0][1].dtype == tf.float32 and batches[0][1].shape == (50, 10)
    dropped = build_pipeline(train_split, batch_size=50, training=True, drop_remainder=True)
    assert dropped.cardinality().numpy() == 3 and len(list(dropped)) == 3


def test_every_example_once_per_epoch(train_split):
    ds = build_pipeline(train_split, batch_size=32, training=True)
    images = np.concatenate([x.numpy() for x, _ in ds])
    assert sorted(map(bytes, images.reshape(len(images), -1))) == sorted(
        map(bytes, train_split.images.reshape(len(train_split), -1))
    )


def test_order_depends_only_on_seed_and_epoch(train_split):
    ds = build_pipeline(train_split, batch_size=32, training=True, seed=7)
    epochs = [epoch_labels(ds) for _ in range(3)]
    assert not np.array_equal(epochs[0], epochs[1])
    # A pipeline built for a resumed run at epoch 2 sees epoch 2's order.
    resumed = build_pipeline(train_split, batch_size=32, training=True, seed=7, initial_epoch=2)
    np.testing.assert_array_equal(epoch_labels(resumed), epochs[2])
    other_seed = build_pipeline(train_split, batch_size=32, training=True, seed=8)
    assert not np.array_equal(epoch_labels(other_seed), epochs[0])


def test_epoch_sync_sets_the_epoch(train_split):
    ds, epoch = build_training_pipeline(train_split, batch_size=32, seed=1)
    first = epoch_labels(ds)
    EpochSync(epoch).on_epoch_begin(0)
    np.testing.assert_array_equal(epoch_labels(ds), first)
    assert epoch.value() == 1
    with pytest.raises(ValueError, match="Expected the pipelines.EpochCounter of the training pipeline"):
        EpochSync(build_pipeline(train_split, batch_size=32, training=False))


def test_epoch_counter_survives_later_dataset_transformations(train_split):
    # The counter is an object the caller holds, so a .map() or .take() on the dataset keeps it working.
    ds, epoch = build_training_pipeline(train_split, batch_size=32, seed=1)
    reference = [epoch_labels(ds) for _ in range(3)]
    mapped = ds.map(lambda x, y: (x, y)).take(1000)
    sync = EpochSync(epoch)
    sync.on_epoch_begin(2)
    np.testing.assert_array_equal(epoch_labels(mapped), reference[2])
    shared = EpochCounter(initial_epoch=1)
    a = build_pipeline(train_split, batch_size=32, training=True, seed=1, epoch=shared)
    np.testing.assert_array_equal(epoch_labels(a), reference[1])
    assert shared.value() == 2
    with pytest.raises(ValueError, match="Expected a pipelines.EpochCounter"):
        build_pipeline(train_split, batch_size=32, training=True, epoch=3)


def test_eval_pipeline_is_in_order(train_split):
    ds = build_pipeline(train_split, batch_size=64, training=False)
    np.testing.assert_array_equal(epoch_labels(ds), train_split.labels)
    np.testing.assert_array_equal(epoch_labels(ds), train_split.labels)


def test_host_augment_called_once_per_batch(train_split):
    calls = tf.Variable(0, dtype=tf.int64)

    def count(images):
        calls.assign_add(1)
        return images

    ds = build_pipeline(train_split, batch_size=32, training=True, host_augment=count)
    assert len(list(ds)) == 5
    assert int(calls.numpy()) == 5


def test_host_augment_with_labels_and_lists(train_split):
    class Flip:
        uses_labels = True

        def __call__(self, images, labels):
            return images, 9 - labels

    ds = build_pipeline(train_split, batch_size=32, training=True, host_augment=[Flip(), lambda x: x // 2])
    images, labels = next(iter(ds))
    assert int(tf.reduce_max(images)) <= 127
    assert sorted(np.unique(epoch_labels(ds)).tolist()) == list(range(10))


def test_bad_arguments(train_split):
    with pytest.raises(ValueError, match=r"Received: batch_size=0. Expected an int >= 1"):
        build_pipeline(train_split, batch_size=0, training=True)
    with pytest.raises(ValueError, match="must be a pipelines.Split"):
        build_pipeline(np.zeros((3, 4, 4, 1)), batch_size=2, training=True)
    with pytest.raises(ValueError, match="host_augment` must be a callable"):
        build_pipeline(train_split, batch_size=2, training=True, host_augment=3)


def test_host_augmentation_with_parallel_calls_gives_the_same_batches_every_run(train_split):
    from augpipe import augment

    def one_epoch():
        layer = augment.Augment("mnist", strength=1.0, seed=3, placement="host")
        mix = augment.MixUpCutMix(num_classes=10, seed=3)
        ds, _ = build_training_pipeline(train_split, batch_size=8, seed=1, host_augment=[mix, layer],
                                        one_hot=True, host_parallel_calls=4, deterministic=True)
        return [(x.numpy(), y.numpy()) for x, y in ds]

    first, second = one_epoch(), one_epoch()
    assert len(first) == len(second) > 4
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_mix_and_policy_draw_from_separate_streams():
    from augpipe.augment import ops

    key = tf.constant([2, 5], tf.int64)
    seeds = {stream: tuple(ops.keyed_seed(7, stream, key).numpy()) for stream in (ops.STREAM_POLICY, ops.STREAM_MIX)}
    assert seeds[ops.STREAM_POLICY] != seeds[ops.STREAM_MIX]
    # And a batch's seed depends on its (epoch, index), not on call order.
    assert tuple(ops.keyed_seed(7, ops.STREAM_POLICY, key).numpy()) == seeds[ops.STREAM_POLICY]
    assert ops.keyed_seed(7, 1, [2, 6]).numpy().tolist() != list(seeds[ops.STREAM_POLICY])


def test_host_placement_is_safe_by_construction(tiny_source):
    # The same script with device or host placement: only the layer's placement differs.
    import keras

    from augpipe import augment

    splits = make_splits(tiny_source, val_size=40, test_size=20, seed=0)
    results = {}
    for placement in ("device", "host"):
        keras.utils.set_random_seed(0)
        aug = augment.Augment("mnist", strength=0.3, seed=0, placement=placement)
        train, epoch = build_training_pipeline(splits.train, batch_size=32, seed=0,
                                               host_augment=aug if placement == "host" else None)
        val = build_pipeline(splits.val, batch_size=64, training=False)
        x_train, _ = next(iter(train))
        x_val, _ = next(iter(val))
        assert x_train.dtype == x_val.dtype == tf.uint8  # one dtype and range for all three
        model = keras.Sequential([keras.Input((12, 12, 1), dtype="uint8"), aug, keras.layers.Flatten(),
                                  keras.layers.Dense(10)])
        model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        history = model.fit(train, validation_data=val, epochs=4, verbose=0, callbacks=[EpochSync(epoch)])
        results[placement] = history.history["val_accuracy"][-1]
    assert results["host"] > 0.8 and abs(results["host"] - results["device"]) < 0.15, results


def test_a_device_placed_augment_is_refused_as_host_augmentation(train_split):
    from augpipe import augment

    with pytest.raises(ValueError, match="placement='device'.*augment twice.*placement='host'"):
        build_pipeline(train_split, batch_size=8, training=True, host_augment=augment.Augment("mnist", seed=0))
