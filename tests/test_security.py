"""The guarantees of the README's security section that one machine can test."""

import gzip
import json
import os
import pathlib
import struct
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from augpipe import pipelines
from augpipe.pipelines import distribute
from augpipe.scripts import experiment
from augpipe.scripts.run_mnist import main

linux_proc = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc")


def listening_sockets(pid):
    """Local addresses of the TCP sockets in LISTEN state that process `pid` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                found.append(fields[1])
    return found


def run_and_watch_listeners(args, env=None):
    """Runs run-mnist in a subprocess and returns (returncode, stderr, every listener seen while it ran)."""
    command = [sys.executable, "-m", "augpipe.scripts.run_mnist", *map(str, args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = set()
    while process.poll() is None:
        try:
            seen.update(listening_sockets(process.pid))
        except FileNotFoundError:  # the process ended between poll() and the read
            break
        time.sleep(0.1)
    _, stderr = process.communicate(timeout=600)
    return process.returncode, stderr, seen


def _is_wildcard(address):
    host = address.rsplit(":", 1)[0]
    return set(host) == {"0"}  # 00000000 (IPv4) or 32 zeros (IPv6): all interfaces


def test_local_data_service_refuses_without_the_opt_in(monkeypatch):
    service = tf.data.experimental.service
    monkeypatch.setattr(service, "DispatchServer", lambda *a, **k: pytest.fail("a server was started"))
    monkeypatch.setattr(service, "WorkerServer", lambda *a, **k: pytest.fail("a server was started"))
    with pytest.raises(ValueError, match="listen on every network interface.*listen_on_all_interfaces=True"):
        distribute.LocalDataService(2)
    with pytest.raises(ValueError, match="Refusing"):
        distribute.LocalDataService(2, listen_on_all_interfaces="yes")  # only True itself opts in


def test_run_mnist_refuses_the_local_data_service_without_the_flag(tmp_path):
    result = CliRunner().invoke(main, ["--local-data-service", "2", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "--local-data-service-on-all-interfaces" in result.output and "every network interface" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@linux_proc
def test_default_run_mnist_opens_no_listening_socket_and_the_probe_sees_the_opt_in(tiny_npz, tmp_path):
    base = ["--source", tiny_npz, "--model", "mlp", "--epochs", "2", "--batch-size", "32", "--quiet"]
    code, stderr, seen = run_and_watch_listeners(base + ["--run-dir", tmp_path / "a"])
    assert code == 0, stderr[-2000:]
    assert seen == set()
    # The probe is not blind: with the explicit opt-in, it sees the service's wildcard listeners.
    code, stderr, seen = run_and_watch_listeners(
        base + ["--run-dir", tmp_path / "b", "--local-data-service", "1", "--local-data-service-on-all-interfaces"]
    )
    assert code == 0, stderr[-2000:]
    assert seen and any(_is_wildcard(address) for address in seen), seen


def test_npz_with_pickled_objects_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    objects = np.empty(4, dtype=object)
    objects[:] = [Payload()] * 4
    np.savez(path, x_train=objects, y_train=np.arange(4), x_test=objects, y_test=np.arange(4))
    with pytest.raises(ValueError, match="object \\(pickled\\) arrays. augpipe never loads pickles"):
        pipelines.load_source(f"npz:{path}")
    assert not marker.exists()


def test_npz_that_is_not_a_zip_gives_a_clear_error(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(ValueError, match="Could not read npz file .*not an npz"):
        pipelines.load_source(f"npz:{path}")


def _idx_header(dims):
    return struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(">" + "I" * len(dims), *dims)


def test_idx_sizes_are_checked_against_the_file_before_reading_the_body(tmp_path):
    # A header that declares 4 billion images of 28x28 in a 100-byte file.
    path = tmp_path / "lying-idx3-ubyte"
    path.write_bytes(_idx_header((4_000_000_000, 28, 28)) + bytes(84))
    with pytest.raises(ValueError, match=r"holds 84 data bytes but its header declares dimensions"):
        pipelines.read_idx(path)
    # A gzip that inflates to far more than its header declares is read only one byte past the declared size.
    bomb = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(bomb, "wb") as handle:
        handle.write(_idx_header((10,)) + bytes(50_000_000))
    with pytest.raises(ValueError, match=r"holds 11\+ data bytes .* need 10"):
        pipelines.read_idx(bomb)


def _finished_run(tiny_npz, run_dir):
    result = CliRunner().invoke(main, ["--source", tiny_npz, "--model", "mlp", "--epochs", "1", "--batch-size", "64",
                                       "--run-dir", str(run_dir), "--quiet", "--no-tensorboard"])
    assert result.exit_code == 0, result.output


def test_overwrite_never_deletes_through_a_symlinked_run_directory(tiny_npz, tmp_path):
    real = tmp_path / "real-run"
    _finished_run(tiny_npz, real)
    before = sorted(p.name for p in real.iterdir())
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    result = CliRunner().invoke(main, ["--source", tiny_npz, "--run-dir", str(link), "--overwrite"])
    assert result.exit_code == 2 and "is a symbolic link" in result.output
    assert sorted(p.name for p in real.iterdir()) == before


def test_overwrite_never_follows_a_symlink_out_of_the_run_directory(tiny_npz, tmp_path):
    run_dir = tmp_path / "run"
    _finished_run(tiny_npz, run_dir)
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    (run_dir / "shortcut").symlink_to(outside, target_is_directory=True)
    (run_dir / "file-link").symlink_to(outside / "data.txt")
    result = CliRunner().invoke(main, ["--source", tiny_npz, "--model", "mlp", "--epochs", "1", "--batch-size", "64",
                                       "--run-dir", str(run_dir), "--overwrite", "--quiet", "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    assert (outside / "data.txt").read_text() == "keep me"
    assert not (run_dir / "shortcut").exists() and json.loads((run_dir / "config.json").read_text())


def test_a_model_with_a_lambda_layer_is_refused_by_the_default_load_path(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = tmp_path / "best.keras"
    model.save(path)
    with pytest.raises(experiment.RunError, match="Lambda layer.*safe mode"):
        experiment.load_best_model(path)
