"""The ZAP authenticator of a worker process: only keys in the key directory get in.

Without a ZAP handler a CURVE server accepts every client key; so a worker starts this
handler (pyzmq's `ThreadAuthenticator`, a thread answering libzmq's ZAP requests) before it
binds, and its ROUTER sets `ZAP_DOMAIN` with `ZAP_ENFORCE_DOMAIN`, so that a missing or
failing handler refuses connections instead of letting them in.

A key is accepted when some `*.key` file in the key directory holds it. The directory is
re-read when an unknown key knocks, so workers spawned later (whose pairs are written there)
are accepted without restarting anyone. Every accepted handshake is timestamped per key:
the worker's lease on a disconnected client's objects uses it to see a reconnect that has not
sent a message yet.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from zsyft.transport.keys import authorized_keys

ZAP_DOMAIN = "zsyft"
log = logging.getLogger("zsyft.auth")


class KeyDirectoryPolicy:
    """The credentials provider pyzmq's authenticator calls for each CURVE handshake."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys = authorized_keys(directory)
        self._workers = authorized_keys(directory, "w*")
        self._lock = threading.Lock()
        self.handshakes: dict[str, float] = {}  # key -> time of its last accepted handshake

    def allows(self, key: str) -> bool:
        with self._lock:
            if key not in self._keys:
                self._keys = authorized_keys(self.directory)
            allowed = key in self._keys
            if allowed:
                self.handshakes[key] = time.monotonic()
        return allowed

    def is_worker(self, key: str) -> bool:
        """True for a worker's key (trusted to act on behalf of the clients it forwards for)."""
        with self._lock:
            if key not in self._workers:
                self._workers = authorized_keys(self.directory, "w*")
            return key in self._workers

    def callback(self, domain: str, key: bytes) -> bool:
        text = key.decode("ascii", "replace")
        allowed = domain == ZAP_DOMAIN and self.allows(text)
        if not allowed:
            log.warning("refused a client with an unknown key %s", text)
        return allowed

    def last_handshake(self, key: str) -> float:
        with self._lock:
            return self.handshakes.get(key, 0.0)


class Authenticator:
    """A running ZAP handler for one context; `policy` tells who was let in and when."""

    def __init__(self, ctx: zmq.Context, directory: Path) -> None:
        self.policy = KeyDirectoryPolicy(directory)
        self._thread = ThreadAuthenticator(ctx, log=logging.getLogger("zsyft.zap"))
        self._thread.start()
        self._thread.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self.policy)

    def stop(self) -> None:
        self._thread.stop()
