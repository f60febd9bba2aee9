"""CURVE on TCP: who gets in, what a refused client sees, and what the network sees."""

from __future__ import annotations

import gc
import os
import select
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
import torch
import zmq

import zsyft as sy
from tests import helpers
from zsyft.errors import AuthenticationError
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.node import LocalNode, local_node
from zsyft.transport import keys
from zsyft.transport.zmq import SETTINGS
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import Kind

CANARY = 7_654_321.0  # a value that appears in the stored tensor's raw bytes


@pytest.fixture(scope="module")
def tcp_worker(tmp_path_factory):
    """A worker process on TCP (as `zsyft launch` starts them), registered as "curvy"."""
    from launcher.spawn import spawn

    directory = tmp_path_factory.mktemp("curve")
    process = spawn("curvy", "tcp://127.0.0.1:*", directory / "curvy.log")
    try:
        process.wait_ready()
        registered = sy.local_worker.add_worker(_handle(local_node(), process, owner=process))
    except BaseException:
        process.stop()
        raise
    yield process
    sy.local_worker.workers.pop("curvy", None)
    registered.close()


@pytest.fixture
def node():
    node = LocalNode("curve-test")
    yield node
    node.shutdown()


def _handle(node, process, owner=None, **kwargs) -> WorkerHandle:
    """A handle on `process`'s worker; only with `owner` does closing it stop the process."""
    kwargs.setdefault("public_key", process.public_key)
    return WorkerHandle(node, process.name, process.address, process.pid, owner, **kwargs)


def test_known_client_key_is_served(node, tcp_worker):
    assert _handle(node, tcp_worker).ping()["name"] == "curvy"


@pytest.mark.parametrize("who", ["unknown client key", "wrong server key"])
def test_refused_handshake_is_a_clear_error_within_a_second(node, tcp_worker, who):
    if who == "unknown client key":
        handle = _handle(node, tcp_worker, client_keys=keys.generate())
        expected = "does not know this client's key"
    else:
        handle = _handle(node, tcp_worker, public_key=keys.generate().public)
        expected = "public key is not the one"
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match=expected) as info:
        handle.ping(timeout=10)
    assert info.value.worker == "curvy"
    assert time.monotonic() - started < 1.5


@pytest.fixture
def fast_reconnects(monkeypatch):
    """Links reconnect every millisecond: one that is refused reports ~1,000 failures a second."""
    monkeypatch.setattr(SETTINGS, "reconnect_ivl_ms", 1)
    monkeypatch.setattr(SETTINGS, "reconnect_ivl_max_ms", 1)


def test_a_refused_link_nobody_reads_does_not_stall_other_connections(
    node, tcp_worker, fast_reconnects
):
    refused = _handle(node, tcp_worker, public_key=keys.generate().public)
    try:
        time.sleep(3)  # it reconnects over and over; nothing reads what its monitor reports
        assert _handle(node, tcp_worker).ping(timeout=10)["name"] == "curvy"
        with pytest.raises(AuthenticationError, match="public key is not the one"):
            refused.ping(timeout=10)
    finally:
        refused.close()


def test_refused_links_dropped_without_close_do_not_stall_other_connections(
    node, tcp_worker, fast_reconnects
):
    for _ in range(20):
        refused = _handle(node, tcp_worker, public_key=keys.generate().public)
        cycle = [refused]
        cycle.append(cycle)  # freed by the garbage collector, in its own order
        time.sleep(0.05)
        del refused, cycle
        gc.collect()
    assert _handle(node, tcp_worker).ping(timeout=10)["name"] == "curvy"


def test_plaintext_and_raw_clients_get_nothing_and_the_worker_keeps_serving(node, tcp_worker):
    plain = helpers.raw_dealer(tcp_worker.address, None, timeout_ms=1000)
    try:
        plain.send_multipart(encode(Kind.PING, 1, None))
        with pytest.raises(zmq.Again):
            plain.recv_multipart()
    finally:
        plain.close(0)
    host, port = tcp_worker.address.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as raw:
        raw.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + b"NULL" + b"\0" * 50)
    assert _handle(node, tcp_worker).ping()["name"] == "curvy"


def test_a_key_added_to_the_key_directory_is_let_in_without_restart(node, tcp_worker):
    stem = f"late-{os.getpid()}"
    pair = keys.write_pair(keys.default_key_dir(), stem)
    try:
        assert _handle(node, tcp_worker, client_keys=pair).ping()["name"] == "curvy"
    finally:
        keys.remove_pair(keys.default_key_dir(), stem)


def test_key_files_are_private_and_the_secret_is_in_no_argv_or_log(tcp_worker):
    directory = keys.default_key_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    secret_file = directory / (tcp_worker.key_stem + keys.SECRET_SUFFIX)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = keys.read_pair(secret_file).secret
    cmdline = Path(f"/proc/{tcp_worker.pid}/cmdline").read_bytes()
    assert secret.encode() not in cmdline and str(secret_file).encode() in cmdline
    assert secret not in tcp_worker.log_path.read_text(errors="replace")
    assert secret not in repr(keys.read_pair(secret_file))


def test_stopping_a_worker_removes_its_key_pair(tmp_path):
    from launcher.spawn import spawn

    process = spawn("shortlived", "tcp://127.0.0.1:*", tmp_path / "s.log", die_with_parent=True)
    process.wait_ready()
    public = keys.default_key_dir() / (process.key_stem + keys.PUBLIC_SUFFIX)
    assert public.exists()
    process.stop()
    assert not public.exists()


class Relay:
    """A TCP man in the middle on loopback that forwards bytes both ways and keeps a copy."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("tcp://").rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen = bytearray()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.listener.settimeout(10)
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target, timeout=10)
        peers = {client: server, server: client}
        while not self._stop:
            readable, _, _ = select.select(list(peers), [], [], 0.1)
            for sock in readable:
                data = sock.recv(1 << 16)
                if not data:
                    self._stop = True
                    break
                self.seen += data
                peers[sock].sendall(data)
        client.close()
        server.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.listener.close()


def _canary_tensor() -> torch.Tensor:
    return torch.full((256,), CANARY, dtype=torch.float64)


def test_relay_sees_no_canary_under_curve(hook, node, tcp_worker):
    relay = Relay(tcp_worker.address)
    try:
        handle = WorkerHandle(node, "curvy", relay.address, public_key=tcp_worker.public_key)
        ptr = _canary_tensor().send(handle)
        assert torch.equal(ptr.get(), _canary_tensor())
    finally:
        relay.close()
    canary = _bytes_of(_canary_tensor()[:4])
    assert len(relay.seen) > 2 * 256 * 8  # the tensor went both ways through the relay
    assert canary not in relay.seen and b"curvy" not in relay.seen


def test_relay_sees_the_canary_without_curve():
    """The same relay in front of a plaintext ZeroMQ server: it records the canary."""
    ctx = zmq.Context.instance()
    server = ctx.socket(zmq.ROUTER)
    server.setsockopt(zmq.LINGER, 0)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    relay = Relay(f"tcp://127.0.0.1:{port}")
    client = helpers.raw_dealer(relay.address, None)
    try:
        client.send_multipart(encode(Kind.STORE, 0, [b"\1" * 16, _canary_tensor()]))
        frames = server.recv_multipart()
        assert torch.equal(decode(frames[1:]).body[1], _canary_tensor())
    finally:
        client.close(0)
        relay.close()
        server.close(0)
    assert _bytes_of(_canary_tensor()[:4]) in relay.seen


def _bytes_of(tensor: torch.Tensor) -> bytes:
    return bytes(tensor.contiguous().view(torch.uint8).tolist())
