"""The worker: a ROUTER socket, an object store and an executor in one single-threaded loop.

`Worker.serve()` receives messages, routes them by kind through `handlers.HANDLERS`, and sends
each reply back to the client that asked. A message that cannot be decoded, or a handler that
raises, produces an ERROR reply and the loop keeps serving: nothing a client sends can stop it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
import zmq

from zsyft.errors import ProtocolError
from zsyft.runtime.executor import Executor
from zsyft.runtime.handlers import HANDLERS, exception_body
from zsyft.runtime.store import ObjectStore
from zsyft.transport.zmq import context, recv_frames, send_frames, server_socket
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import Kind, Message, error_body

log = logging.getLogger("zsyft.worker")
BATCH = 256  # messages handled per wake-up before checking timers again


class Worker:
    """One worker's state and event loop; `address` is the endpoint it actually bound."""

    def __init__(self, name: str, address: str, ctx: zmq.Context | None = None) -> None:
        self.name = name
        self.ctx = ctx or context()
        self.socket, self.address = server_socket(self.ctx, address)
        self.store = ObjectStore(name)
        self.executor = Executor(self.store, name)
        self.started = time.time()

    def export(self, value: Any) -> Any:
        """The wire form of a stored object returned to a client."""
        if type(value) is torch.Tensor:
            return value
        exporter = getattr(type(value), "__zsyft_export__", None)
        if exporter is None:
            raise TypeError(f"cannot return a {type(value).__name__} to a client")
        return exporter(value)

    def serve(self, should_stop: Callable[[], bool] = lambda: False, tick_ms: int = 500) -> None:
        """Handle messages until `should_stop()` is true (checked at least every `tick_ms`)."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not should_stop():
            if not poller.poll(tick_ms):
                continue
            for _ in range(BATCH):
                if not self.socket.poll(0, zmq.POLLIN):
                    break
                frames = recv_frames(self.socket)
                self.handle(frames[0], frames[1:])

    def handle(self, identity: bytes, frames: list[Any]) -> None:
        """Decode, route and answer one message; never raises."""
        rid = 0
        try:
            msg: Message = decode(frames)
            rid = msg.rid
            handler = HANDLERS.get(msg.kind)
            if handler is None:
                raise ProtocolError(f"unknown message kind {msg.kind}")
            reply = handler(self, msg)
        except Exception as exc:
            if not isinstance(exc, ProtocolError | TypeError | ValueError):
                log.exception("request failed")
            reply = Kind.ERROR, exception_body(self, exc, None, None)
        if reply is not None:
            self.send(identity, reply[0], rid, reply[1])

    def send(self, identity: bytes, kind: int, rid: int, body: Any) -> None:
        """Reply to one client; a client that is gone or not reading is logged, not fatal."""
        try:
            frames = encode(kind, rid, body)
        except ProtocolError as exc:
            frames = encode(
                Kind.ERROR,
                rid,
                error_body(
                    worker=self.name,
                    message=f"reply could not be encoded: {exc}",
                    type_name="ProtocolError",
                ),
            )
        try:
            send_frames(self.socket, frames, prefix=identity)
        except zmq.ZMQError as exc:
            log.warning("dropped a reply to an unreachable client: %s", exc)

    def close(self) -> None:
        self.socket.close(0)
