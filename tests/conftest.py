"""Shared fixtures: tiny offline data, no GPU, no network."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def load_tiny_tfds():
    """The `tests/helpers/tiny_tfds.py` module: one tiny tensorflow-datasets set for every test that needs one."""
    import importlib.util
    import sys

    if "augpipe_tiny_tfds" in sys.modules:  # tensorflow-datasets registers a builder class once per process
        return sys.modules["augpipe_tiny_tfds"]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers", "tiny_tfds.py")
    spec = importlib.util.spec_from_file_location("augpipe_tiny_tfds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["augpipe_tiny_tfds"] = module
    return module


def make_digits(num_per_class=20, num_classes=10, size=12, seed=0):
    """Distinct synthetic uint8 images: a class-dependent bar plus noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for cls in range(num_classes):
        for _ in range(num_per_class):
            image = rng.integers(0, 60, size=(size, size), dtype=np.uint8)
            image[:, cls % size] = 255
            images.append(image)
            labels.append(cls)
    return np.stack(images)[..., None], np.array(labels, np.int64)


@pytest.fixture
def tiny_source():
    from augpipe.pipelines import Source

    images, labels = make_digits()
    return Source.from_arrays(images, labels, name="tiny")


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory):
    """An `npz:` source spec: 300 28x28 digits-like images, 10 classes of a bar at a class-dependent column."""
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 10
    images = rng.integers(0, 40, (300, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 4:24, 2 + 2 * label : 4 + 2 * label] = 255
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=images[:240], y_train=labels[:240], x_test=images[240:], y_test=labels[240:])
    return f"npz:{path}"


@pytest.fixture(scope="session")
def embedded_splits():
    from augpipe.pipelines import load_source, make_splits

    return make_splits(load_source("mnist-embedded"), seed=0)


def pytest_collection_modifyitems(config, items):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    skip = pytest.mark.skip(reason="needs a GPU; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory):
    """A `folder:` source spec: 4 shape classes x 15 images, 40-120 px, JPEG and PNG, some gray."""
    from augpipe.pipelines.synthetic import write_shapes_folder

    return f"folder:{write_shapes_folder(tmp_path_factory.mktemp('shapes'), per_class=15, seed=2)}"
