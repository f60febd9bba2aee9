"""The client side of a worker process: what lets a worker hold pointers to other workers.

Implements the runtime's `Peer` interface with this process's `LocalNode` (named after the
worker, so pointers it holds print as `alice:ID -> bob:ID`). Commands on stored pointers go
through the ordinary pointer dispatch, pipelined; errors they raise at the next worker come
back as notices and are relayed to the client whose command caused them, with the path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import zmq

from zsyft.errors import WorkerUnavailableError
from zsyft.remote.node import local_node
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.remote_ops import call_remote
from zsyft.tensors.transfer import (
    descriptor,
    fence,
    handle_for,
    import_pointer,
    send,
)
from zsyft.wire.messages import AFTER_RELAY, Kind

log = logging.getLogger("zsyft.worker")


class WorkerPeer:
    """Pointer chains for one worker process (see `zsyft.runtime.peering.Peer`)."""

    def __init__(self) -> None:
        self.node = local_node()
        self.relays = 0  # errors relayed to the clients (or peers) whose commands caused them

    def attach(
        self,
        name: str,
        serve_one: Callable[[], None],
        socket: zmq.Socket,
        relay_error: Callable[[Any, Any], None],
    ) -> None:
        self.node.id = name
        self.node.user_facing = False  # no user's line to name in this process's errors
        self.node.serve_while_waiting = (socket, serve_one)

        def relay(body: Any, origin: Any) -> None:
            self.relays += 1
            relay_error(body, origin)

        self.node.error_sink = relay

    def set_origin(self, origin: Any, principal: str | None = None) -> None:
        self.node.origin = origin
        self.node.principal = principal

    def is_pointer(self, value: Any) -> bool:
        return isinstance(value, PointerTensor)

    def import_pointer(self, desc: Any) -> PointerTensor:
        return import_pointer(self.node, desc)

    def export_pointer(self, pointer: PointerTensor, transfer: bool) -> dict:
        if transfer and pointer.ref.shared_beyond(pointer):  # a detached alias of a stored one
            with torch.no_grad():
                pointer = torch.ops.aten.clone.default(pointer)  # hand over a copy
        if transfer:
            fence(pointer.location)
        desc = descriptor(pointer, self.node.id)
        if transfer:
            pointer.ref.forget()
        return desc

    def call(self, op: Any, args: list, kwargs: dict) -> Any:
        return call_remote(op, *args, **kwargs)

    def fetch(self, pointer: PointerTensor) -> Any:
        value = pointer.location.fetch(pointer.ref.id, delete=True)
        pointer.ref.forget()
        return value

    def send(self, value: Any, destination: Any, new_id: bytes) -> Any:
        if not isinstance(destination, dict):
            raise TypeError("destination must be {name, address, key}")
        if not isinstance(value, torch.Tensor):  # checked before connecting anywhere
            raise TypeError("only a tensor or a pointer can be sent on (that id holds neither: "
                            "the op that made it failed)")
        worker = handle_for(
            self.node, destination.get("name"), destination.get("address"), destination.get("key")
        )
        return send(value, worker, self.node.id, new_id)

    def _handles(self) -> list[Any]:
        return [h for h in self.node.all_handles() if not h.link.socket.closed]

    def sockets(self) -> list[zmq.Socket]:
        return [h.link.socket for h in self._handles()]

    def on_readable(self, socket: zmq.Socket) -> None:
        for handle in self._handles():
            if handle.link.socket is socket:
                handle.drain_notices()

    def flush(self) -> None:
        for handle in self._handles():
            handle.flush()

    def sync(self, after_relay: bool = False) -> None:
        """Wait until every peer ran what this worker posted to it, and every error that came
        back meanwhile was relayed on.

        An error relayed to a peer may come back through it: a chain that visits a worker twice
        relays its errors back along the chain, on the other connection of each pair of workers
        than the one a sync's reply comes on. So after a pass that relayed an error, another
        pass syncs every peer with `AFTER_RELAY`, which has it read what we sent it (and relay
        it on, to us) before it answers; until a pass relays nothing. `after_relay`: our
        requester did so, so the first pass syncs every peer too (reading its notices to us).
        """
        force, body = after_relay, None
        while True:
            relays = self.relays
            for handle in self._handles():
                self._sync_peer(handle, force, body)
            if self.relays == relays:
                return
            force, body = True, AFTER_RELAY

    def _sync_peer(self, handle: Any, force: bool, body: str | None) -> None:
        posted = self.node.unconfirmed(handle)
        try:
            if force and not handle.in_flight:  # a request in flight reads the link anyway
                handle.request(Kind.SYNC, body)
            fence(handle)
        except WorkerUnavailableError as exc:
            if exc.worker != handle.id:  # the peer lost a worker further along its chains
                raise
            # A peer that died cannot run anything more, and what it held is gone. Forget it
            # so later syncs pass. Commands posted to it since its last reply are lost: this
            # sync fails with the loss, as `LocalNode.sync` does (else nobody would learn).
            log.warning("dropping unreachable peer %s: %s", handle.id, exc)
            self.node.workers.pop(handle.id, None)
            if handle in self.node.extra_handles:
                self.node.extra_handles.remove(handle)
            handle.link.close()
            if posted:
                raise
