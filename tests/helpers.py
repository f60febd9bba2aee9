"""Helpers for tests: finding zsyft processes and waiting with a deadline."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import zmq

# Every process this test run starts inherits this variable, so concurrent runs on one machine
# never count (or kill) each other's workers.
RUN_TAG = "ZSYFT_TEST_RUN"
os.environ.setdefault(RUN_TAG, uuid.uuid4().hex)
_TAG = f"{RUN_TAG}={os.environ[RUN_TAG]}".encode()


def zsyft_pids(marker: str = "zsyft-worker") -> set[int]:
    """Pids of live processes of this test run whose command line contains `marker`."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
            if marker not in cmdline or state == "Z":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if _TAG in environ:
            pids.add(int(entry.name))
    return pids


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def raw_dealer(
    address: str, server_key: str | None, client: object = None, timeout_ms: int = 5000
) -> zmq.Socket:
    """A bare DEALER speaking to a worker: a CURVE client with `client` (default: this test
    run's client pair) when `server_key` is given. Close it with `close(0)`."""
    from zsyft.transport import keys
    from zsyft.transport.zmq import curve_client

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    if server_key is not None:
        curve_client(sock, server_key, client or keys.client_pair())
    sock.connect(address)
    return sock
