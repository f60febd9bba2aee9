"""What a worker needs in order to hold pointers to other workers (pointer chains).

The runtime does not know about pointer tensors (they live in a higher layer); the process
entry point gives the worker an object with this interface. Without one, a worker stores only
tensors and refuses pointer messages with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import zmq


class Peer(Protocol):
    """The worker-as-client side: pointers held at this worker, and its links to other workers."""

    def is_pointer(self, value: Any) -> bool:
        """Whether a stored value is a pointer to another worker."""

    def import_pointer(self, descriptor: Any) -> Any:
        """A pointer built from a descriptor; this worker now owns the remote object."""

    def export_pointer(self, pointer: Any, transfer: bool) -> dict:
        """The descriptor of a stored pointer; with `transfer`, ownership leaves this worker
        (after every command this worker forwarded to the pointer's location has run)."""

    def call(self, op: Any, args: list, kwargs: dict) -> Any:
        """Run an aten op whose arguments include pointers stored here: pipelined to where
        they point; returns pointers to its results."""

    def fetch(self, pointer: Any) -> Any:
        """The value the pointer points at, deleted at its location (waits, serving
        meanwhile): a tensor, or the descriptor of the pointer held there (`import_pointer`
        makes it a pointer; it may point back at this worker)."""

    def send(self, value: Any, destination: Any, new_id: bytes) -> Any:
        """Send a stored value on to `destination` under `new_id`; returns the pointer to it."""

    def sockets(self) -> list[zmq.Socket]:
        """The sockets of this worker's outbound links (polled for error notices)."""

    def on_readable(self, socket: zmq.Socket) -> None:
        """Collect error notices that arrived on one outbound link."""

    def flush(self) -> None:
        """Send deletes queued by pointers this worker dropped."""

    def sync(self, after_relay: bool = False) -> None:
        """Wait until every peer ran what this worker sent it (transitively), and every error
        that came back meanwhile was relayed on; with `after_relay`, first read what came from
        each peer (the requester relayed errors to us: `AFTER_RELAY`)."""

    def attach(
        self,
        name: str,
        serve_one: Callable[[], None],
        socket: zmq.Socket,
        relay_error: Callable[[Any, Any], None],
    ) -> None:
        """Connect the peer to its worker: how to keep serving while waiting, and where
        errors of forwarded commands go."""

    def set_origin(self, origin: Any, principal: str | None = None) -> None:
        """The client request being served; forwarded commands remember it for errors and
        act on behalf of `principal` (that client's key)."""
