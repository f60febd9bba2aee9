"""Who is asking: the principal behind each message, and the lease on a gone client's objects.

A worker's objects belong to a principal: the CURVE public key of the client that created
them (ZeroMQ hands the key over as the message's `User-Id`). A worker forwarding a client's
work along a pointer chain says so in the header (`on_behalf`); the next worker believes that
claim only from a trusted worker key (a worker pair in the key directory), so a client cannot
borrow another's identity, and a worker cannot be used as a confused deputy: it only ever acts
for the client whose message it is handling.

Connections are tracked by their ROUTER routing id (assigned by the ROUTER, never reused) and
file descriptor: when every connection of a principal's own (with its key) has closed, its
lease starts, however long workers relaying for it stay connected; if it has not come back
(a message, or a new handshake with its key) when the lease ends, the worker frees its
objects. Sockets without CURVE (inproc, in-process tests) have no principal (`None`): one
trust domain, no lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from zsyft.errors import ProtocolError

DEFAULT_LEASE_S = 60.0


@dataclass(frozen=True)
class Connection:
    """One client connection: its authenticated key (None without CURVE) and socket fd."""

    key: str | None
    fd: int


def connection_of(frame: zmq.Frame) -> Connection:
    """The connection a received frame came through, from the frame's metadata."""
    try:
        key = frame.get("User-Id")
    except zmq.ZMQError:
        key = None
    try:
        fd = frame.get(zmq.SRCFD)
    except zmq.ZMQError:
        fd = -1
    return Connection(key or None, fd)


class Clients:
    """Connections, principals and leases of one worker."""

    def __init__(
        self,
        lease_s: float = DEFAULT_LEASE_S,
        is_trusted_worker: Callable[[str], bool] = lambda key: False,
        last_handshake: Callable[[str], float] = lambda key: 0.0,
    ) -> None:
        self.lease_s = lease_s
        self._is_trusted_worker = is_trusted_worker
        self._last_handshake = last_handshake
        self._connections: dict[bytes, Connection] = {}
        self._seen_on: dict[str, set[bytes]] = {}  # principal -> routing ids it came through
        self._orphaned: dict[str, float] = {}  # principal -> when its last connection closed

    def knows(self, identity: bytes) -> bool:
        return identity in self._connections

    def connection(self, identity: bytes, frame: zmq.Frame) -> Connection:
        """The connection behind `identity` (metadata is read once per connection)."""
        known = self._connections.get(identity)
        if known is None:
            known = self._connections[identity] = connection_of(frame)
        return known

    def principal(self, identity: bytes, on_behalf: str | None) -> str | None:
        """Whose authority a message from `identity` carries; refuses a borrowed identity."""
        connection = self._connections.get(identity)
        if connection is None:
            raise ProtocolError("the client disconnected before its message was handled")
        key = connection.key
        principal = key
        if on_behalf is not None and on_behalf != key:
            if key is not None and not self._is_trusted_worker(key):
                raise ProtocolError(
                    "only a worker may act on behalf of another client; this connection's key "
                    "is not a worker's"
                )
            principal = on_behalf
        if principal is not None and principal == key:
            # Only the client's own connections count for its lease: a worker relaying for
            # it (a pointer chain) stays connected long after the client is gone.
            self._seen_on.setdefault(principal, set()).add(identity)
            self._orphaned.pop(principal, None)
        return principal

    def disconnected(self, fd: int) -> None:
        """A connection closed (socket monitor event): start the lease of whoever it carried."""
        gone = {identity for identity, conn in self._connections.items() if conn.fd == fd}
        if not gone:
            return
        for identity in gone:
            del self._connections[identity]
        now = time.monotonic()
        for principal, identities in self._seen_on.items():
            if identities & gone:
                identities -= gone
                if not identities:
                    self._orphaned.setdefault(principal, now)

    def expired(self) -> list[str]:
        """Principals whose lease ran out without them coming back (forgotten from now on)."""
        now = time.monotonic()
        done = []
        for principal, since in list(self._orphaned.items()):
            if self._last_handshake(principal) > since:
                del self._orphaned[principal]  # it reconnected and has not spoken yet
            elif now - since >= self.lease_s:
                del self._orphaned[principal]
                self._seen_on.pop(principal, None)
                done.append(principal)
        return done
