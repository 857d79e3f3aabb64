"""tf.distribute and the tf.data service, on loopback only, no GPU."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from augpipe import pipelines
from augpipe.pipelines import distribute

HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers")


def run_helper(name, *args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, os.path.join(HELPERS, name), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def test_mirrored_matches_single_device_and_strength_reaches_replicas():
    result = run_helper("mirrored_run.py")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["steps_per_epoch"] == 5
    assert report["max_weight_difference"] < 1e-5
    assert report["replica_strengths"] == pytest.approx([0.7, 0.7])


@pytest.fixture(scope="module")
def local_service():
    # Not stopped: a worker's stop waits out its heartbeat (about 20 s); the
    # servers end with the test process.
    return distribute.LocalDataService(num_workers=2, listen_on_all_interfaces=True)


def test_data_service_distributed_epoch_yields_each_element_once(local_service):
    dataset = distribute.through_data_service(
        tf.data.Dataset.range(200), local_service.target, processing_mode="distributed_epoch", job_name="once"
    )
    elements = sorted(int(x) for x in dataset)
    assert elements == list(range(200))
    assert len(local_service.workers) == 2


def _epoch_examples(dataset):
    images = np.concatenate([x.numpy() for x, _ in dataset])
    return sorted(map(bytes, images.reshape(len(images), -1)))


def test_each_epoch_through_the_service_holds_every_example_exactly_once(local_service, tiny_source):
    # Two workers: the old single stream mixed two data epochs into one Keras epoch.
    split = pipelines.make_splits(tiny_source, val_size=20, test_size=20, seed=0).train
    every = sorted(map(bytes, split.images.reshape(len(split), -1)))
    counter = pipelines.EpochCounter()
    dataset = distribute.service_training_dataset(split, local_service.target, batch_size=16, seed=2, epoch=counter)
    for epoch in range(3):
        assert _epoch_examples(dataset) == every, f"epoch {epoch}"
    assert counter.value() == 3
    # Two runs with the same seed on one dispatcher do not share a job: each gets whole epochs.
    other = distribute.service_training_dataset(split, local_service.target, batch_size=16, seed=2)
    first, second = iter(dataset), iter(other)
    a = [next(first) for _ in range(3)] + list(first)
    b = list(second)
    for batches in (a, b):
        images = np.concatenate([x.numpy() for x, _ in batches])
        assert sorted(map(bytes, images.reshape(len(images), -1))) == every


def test_bad_service_addresses_fail_fast(monkeypatch):
    with pytest.raises(ValueError, match="Expected grpc://HOST:PORT"):
        distribute.parse_service_address("localhost:5050")
    # The failure comes from one bounded TCP connect, before the retrying tf.data service client starts.
    service = tf.data.experimental.service
    monkeypatch.setattr(service, "distribute", lambda *a, **k: pytest.fail("the retrying client was reached"))
    with pytest.raises(ConnectionError, match="No tf.data service dispatcher at grpc://127.0.0.1:9"):
        distribute.through_data_service(tf.data.Dataset.range(3), "grpc://127.0.0.1:9")
    with pytest.raises(ValueError, match="processing_mode"):
        distribute.through_data_service(tf.data.Dataset.range(3), "grpc://127.0.0.1:9", processing_mode="dynamic")


def test_run_mnist_with_local_data_service(tiny_npz, tmp_path):
    from augpipe.scripts.run_mnist import main

    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["--source", tiny_npz, "--model", "mlp", "--epochs", "1", "--batch-size", "32",
               "--local-data-service", "2", "--local-data-service-on-all-interfaces",
               "--run-dir", str(run_dir), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == 1 and report["options"]["local_data_service"] == 2


def test_run_mnist_bad_data_service(tiny_npz, tmp_path):
    from augpipe.scripts.run_mnist import main

    result = CliRunner().invoke(
        main, ["--source", tiny_npz, "--epochs", "1", "--data-service", "grpc://127.0.0.1:9",
               "--run-dir", str(tmp_path / "a"), "--quiet"],
    )
    assert result.exit_code == 1 and "No tf.data service dispatcher" in result.stderr
    result = CliRunner().invoke(main, ["--data-service", "localhost", "--run-dir", str(tmp_path / "b")])
    assert result.exit_code == 2 and "Expected grpc://HOST:PORT" in result.output
    result = CliRunner().invoke(main, ["--local-data-service", "2", "--local-data-service-on-all-interfaces",
                                       "--placement", "host", "--run-dir", str(tmp_path / "c")])
    assert result.exit_code == 2 and "cannot read the trainer's strength" in result.output


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(command_for):
    """Runs `command_for(index)` as workers 0 and 1 of a loopback cluster; returns their stderr."""
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            command_for(index), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        outputs = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, (_, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]


@pytest.mark.slow
def test_two_process_multiworker_training_agrees(tmp_path):
    run_two_workers(lambda i: [sys.executable, os.path.join(HELPERS, "multiworker_run.py"), str(tmp_path / f"w{i}.npz")])
    first, second = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert first.files == second.files and len(first.files) == 4  # strength, rng state, kernel, bias
    for key in first.files:
        np.testing.assert_allclose(first[key], second[key], atol=1e-6)


@pytest.mark.slow
def test_run_mnist_multiworker_two_processes(tiny_npz, tmp_path):
    run_two_workers(lambda i: [
        sys.executable, "-m", "augpipe.scripts.run_mnist", "--source", tiny_npz, "--model", "mlp", "--epochs", "2",
        "--batch-size", "32", "--strategy", "multiworker", "--run-dir", str(tmp_path / f"w{i}"),
        "--quiet", "--no-tensorboard",
    ])
    reports = [json.loads((tmp_path / f"w{i}" / "report.json").read_text()) for i in range(2)]
    assert [r["epochs_run"] for r in reports] == [2, 2]
    assert reports[0]["test_loss"] == pytest.approx(reports[1]["test_loss"], abs=1e-6)


def test_multiworker_patch_restores_what_it_patched():
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    original, saved = tf_trainer.reduce_per_replica, model._distribute_strategy
    with distribute.patched_keras_for_multiworker(model):
        assert tf_trainer.reduce_per_replica is not original
        assert model._distribute_strategy is None
    assert tf_trainer.reduce_per_replica is original and model._distribute_strategy is saved
    with pytest.raises(ZeroDivisionError):
        with distribute.patched_keras_for_multiworker(model):
            1 / 0
    assert tf_trainer.reduce_per_replica is original and model._distribute_strategy is saved


def test_multiworker_patch_refuses_an_unknown_keras(monkeypatch):
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    monkeypatch.setattr(keras, "__version__", "4.2.0")
    with pytest.raises(RuntimeError, match=r"written for Keras 3.10 up to .* Received: keras 4.2.0"):
        with distribute.patched_keras_for_multiworker(model):
            pass
    monkeypatch.undo()
    monkeypatch.delattr(tf_trainer, "reduce_per_replica")
    with pytest.raises(RuntimeError, match="reduce_per_replica.*moved"):
        with distribute.patched_keras_for_multiworker(model):
            pass


def test_multiworker_fit_is_only_a_scope_for_other_strategies():
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    original = tf_trainer.reduce_per_replica
    strategy = tf.distribute.get_strategy()
    with distribute.multiworker_fit(model, strategy):
        assert tf_trainer.reduce_per_replica is original
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0)
