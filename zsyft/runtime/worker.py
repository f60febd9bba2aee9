"""The worker: a ROUTER socket, an object store and an executor in one single-threaded loop.

`Worker.serve()` receives messages, routes them by kind through `handlers.HANDLERS`, and sends
each reply back to the client that asked. A message that cannot be decoded, or a handler that
raises, produces an ERROR reply and the loop keeps serving: nothing a client sends can stop it.

With a `Peer` (pointer chains) the worker is also a client of other workers. While it waits on
one of them it keeps serving its own socket (`serve_one`), so cycles such as
me -> bob -> alice -> bob cannot deadlock. Messages from a client whose earlier message is still
being handled further up the stack are deferred and run afterwards, in arrival order, so each
client's messages still run in the order it sent them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import torch
import zmq
from zmq.utils.monitor import recv_monitor_message

from zsyft.errors import ProtocolError, WorkerUnavailableError
from zsyft.runtime.clients import DEFAULT_LEASE_S, Clients
from zsyft.runtime.executor import Executor
from zsyft.runtime.handlers import HANDLERS, exception_body
from zsyft.runtime.mpc_runtime import MpcRuntime
from zsyft.runtime.peering import Peer
from zsyft.runtime.store import ObjectStore
from zsyft.transport.auth import Authenticator
from zsyft.transport.keys import KeyPair
from zsyft.transport.zmq import (
    context,
    poll_awake,
    readable,
    recv_routed,
    send_frames,
    server_socket,
    unwatch,
    watch,
)
from zsyft.wire.batching import unbatch
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import Kind, Message, error_body

log = logging.getLogger("zsyft.worker")
PER_WAKEUP = 256  # messages handled per wake-up before checking timers again
MAX_DEFERRED = 10_000  # messages waiting for a nested request to finish; beyond: "busy"


class Worker:
    """One worker's state and event loop; `address` is the endpoint it actually bound."""

    def __init__(
        self,
        name: str,
        address: str,
        ctx: zmq.Context | None = None,
        peer: Peer | None = None,
        record: str | None = None,
        keys: KeyPair | None = None,
        authenticator: Authenticator | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        spin_s: float = 0.0,
    ) -> None:
        self.name = name
        self.ctx = ctx or context()
        self.socket, self.address = server_socket(self.ctx, address, keys)
        self.public_key = keys.public if keys else None
        policy = authenticator.policy if authenticator else None
        self.clients = Clients(
            lease_s,
            policy.is_worker if policy else lambda key: False,
            policy.last_handshake if policy else lambda key: 0.0,
        )
        self._disconnects = watch(self.socket, zmq.EVENT_DISCONNECTED)
        self.store = ObjectStore(name)
        self.executor = Executor(self.store, name)
        self.started = time.time()
        self.spin_s = spin_s  # wait awake for the next message (a worker process; not threads)
        self.peer = peer
        self.mpc = MpcRuntime(self)
        # Audits: every frame received, appended as [count][len][bytes]... (see `read_frames`).
        self._record = open(record, "ab") if record else None  # noqa: SIM115 (kept open)
        self._busy: list[bytes] = []  # identities whose message is being handled (a stack)
        self._deferred: deque[tuple[bytes, list[Any]]] = deque()
        self._queued: Counter[bytes] = Counter()  # deferred messages per client
        self._requesting: list[bytes] = []  # clients whose request is being handled (a stack)
        self._draining = False  # `_run_deferred` is running (further down the stack)
        self._next_lease_check = 0.0
        self._origin: Any = None
        if peer is not None:
            peer.attach(name, self.serve_one, self.socket, self.relay_error)
            self.executor.forward = peer.call

    def export(self, value: Any, transfer: bool) -> Any:
        """The wire form of a stored object returned to a client."""
        if type(value) is torch.Tensor:
            return value
        if self.peer is not None and self.peer.is_pointer(value):
            return self.peer.export_pointer(value, transfer)
        raise TypeError(f"cannot return a {type(value).__name__} to a client")

    def serve(self, should_stop: Callable[[], bool] = lambda: False, tick_ms: int = 500) -> None:
        """Handle messages until `should_stop()` is true (checked at least every `tick_ms`)."""
        watched: list[zmq.Socket] = []
        poller = zmq.Poller()
        active = False  # a message came in the last round: wait for the next one awake
        while not should_stop():
            self._expire_leases()
            sockets = [
                self.socket,
                self._disconnects,
                *(self.peer.sockets() if self.peer else ()),
                *self.mpc.sockets(),
            ]
            if sockets != watched:  # a new outbound link appeared (or one closed)
                poller, watched = zmq.Poller(), sockets
                for sock in sockets:
                    poller.register(sock, zmq.POLLIN)
            events = dict(poll_awake(poller, self.spin_s if active else 0.0, tick_ms))
            active = bool(events)
            for sock in events:
                if sock is self.socket or sock is self._disconnects:
                    continue
                if self.peer is not None and sock in self.peer.sockets():
                    self.peer.on_readable(sock)
                else:
                    self.mpc.drain(sock)
            if self._disconnects in events:
                self._note_disconnects()
            if self.socket in events:
                for _ in range(PER_WAKEUP):
                    if not readable(self.socket):
                        break
                    self.serve_one()

    def serve_one(self, hold: Callable[[bytes, list[Any]], bool] | None = None) -> None:
        """Receive and handle one message (also called while waiting on a peer); unless
        `hold(identity, frames)` keeps it back for later (see `op_order`)."""
        identity, first, frames = recv_routed(self.socket)
        if not self.clients.knows(identity):
            self._note_disconnects()  # first: the new connection may reuse a closed one's fd
            self.clients.connection(identity, first)
        if self._record is not None:
            self._write_record(frames)
        if hold is None or not hold(identity, frames):
            self.handle(identity, frames)

    def _note_disconnects(self) -> None:
        while readable(self._disconnects):
            event = recv_monitor_message(self._disconnects)
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self.clients.disconnected(event["value"])

    def _expire_leases(self) -> None:
        now = time.monotonic()
        if now < self._next_lease_check:
            return
        self._next_lease_check = now + min(1.0, self.clients.lease_s / 4)
        for principal in self.clients.expired():
            freed = self.store.free_owner(principal)
            if freed:
                log.info("lease ended for a disconnected client: freed %d objects", len(freed))

    def _write_record(self, frames: list[Any]) -> None:
        out = self._record
        out.write(len(frames).to_bytes(4, "little"))
        for frame in frames:
            data = frame.bytes if hasattr(frame, "bytes") else bytes(frame)
            out.write(len(data).to_bytes(8, "little") + data)
        out.flush()

    def handle(
        self, identity: bytes, frames: list[Any], in_turn: bool = False, released: bool = False
    ) -> None:
        """Handle one message now, or defer it while the same client is being served or has
        messages deferred already: a client's messages run in the order they came."""
        # A sender whose request is in hand here waits for our reply, so what it sends
        # meanwhile comes from serving a message of ours (a chain that passes through it and
        # back, me -> alice -> bob -> alice -> bob): it runs now, or both wait for each other.
        nested = identity in self._requesting
        if not (nested or in_turn or released) and self.mpc.held.keep_behind(identity, frames):
            return  # behind its client's held protocol op
        if not nested and (identity in self._busy or (self._queued[identity] and not in_turn)):
            self.defer(identity, frames)
            return
        self._busy.append(identity)
        try:
            self._handle(identity, frames)
        finally:
            self._busy.pop()
        if not self._busy and not self._draining:
            self._run_deferred()

    def defer(self, identity: bytes, frames: list[Any]) -> None:
        """Handle this message once the messages being handled (and those deferred before
        it) are done."""
        if len(self._deferred) >= MAX_DEFERRED:
            self.send(identity, Kind.ERROR, 0, error_body(
                worker=self.name, type_name="WorkerBusyError",
                message=f"{self.name} is busy: {len(self._deferred)} messages already wait "
                "for a long request to finish; this one was dropped, retry later"))
            return
        self._deferred.append((identity, frames))
        self._queued[identity] += 1

    def take_unblocked(self) -> list[tuple[bytes, list[Any]]]:
        """Remove and return, in order, the deferred messages of clients no longer being
        served (a waiting protocol op decides which of them run nested, see `op_order`)."""
        taken = [entry for entry in self._deferred if entry[0] not in self._busy]
        if taken:
            self._deferred = deque(e for e in self._deferred if e[0] in self._busy)
            for identity, _ in taken:
                self._unqueue(identity)
        return taken

    def has_deferred(self, identity: bytes) -> bool:
        """Whether messages of this client wait in the deferred queue."""
        return bool(self._queued[identity])

    def _unqueue(self, identity: bytes) -> None:
        self._queued[identity] -= 1
        if not self._queued[identity]:
            del self._queued[identity]

    def _run_deferred(self) -> None:
        """Handle the deferred messages in order (one loop: not one stack frame each)."""
        self._draining = True
        try:
            while self._deferred:
                identity, frames = self._deferred.popleft()
                self._unqueue(identity)
                self.handle(identity, frames, in_turn=True)
        finally:
            self._draining = False

    def _handle(self, identity: bytes, frames: list[Any]) -> None:
        """Handle one received message (a BATCH: each it carries, in order), then send on
        what it queued for peers."""
        self._handle_message(identity, frames, in_batch=False)
        if self.peer is not None:
            try:
                self.peer.flush()
            except WorkerUnavailableError as exc:  # a peer died with messages queued for it
                log.warning("could not forward to a peer: %s", exc)
                self.send(identity, Kind.ERROR, 0, exception_body(self, exc, None, None))

    def _handle_message(self, identity: bytes, frames: list[Any], in_batch: bool) -> None:
        rid = 0
        try:
            msg: Message = decode(frames)
            rid = msg.rid
            if msg.kind == Kind.BATCH and not in_batch:
                for message in unbatch(frames, msg.body):
                    self._handle_message(identity, message, in_batch=True)
                return
            handler = HANDLERS.get(msg.kind)
            if msg.kind == Kind.BATCH:
                raise ProtocolError("a BATCH message cannot carry another BATCH")
            if handler is None:
                raise ProtocolError(f"unknown message kind {msg.kind}")
            principal = self.clients.principal(identity, msg.on_behalf)
            seq = msg.body[0] if msg.kind == Kind.COMMAND and msg.body else None
            if rid:
                self._requesting.append(identity)
            try:
                reply = self._as(principal, (identity, seq), handler, msg)
            finally:
                if rid:
                    self._requesting.pop()
        except Exception as exc:
            rid = rid or getattr(exc, "rid", 0)  # a request whose values failed to decode
            if not isinstance(exc, ProtocolError | TypeError | ValueError):
                log.exception("request failed")
            reply = Kind.ERROR, exception_body(self, exc, None, None)
        if reply is not None:
            self.send(identity, reply[0], rid, reply[1])

    def _as(self, principal: str | None, origin: Any, handler: Any, msg: Message) -> Any:
        """Run `handler` with `principal`'s authority, restoring the outer one afterwards
        (messages are handled nested while this worker waits on a peer)."""
        outer = self.store.requester, self._origin
        self.store.requester, self._origin = principal, origin
        if self.peer is not None:
            self.peer.set_origin(origin, principal)
        try:
            return handler(self, msg)
        finally:
            self.store.requester, self._origin = outer
            if self.peer is not None:
                self.peer.set_origin(outer[1], outer[0])

    def log_peer_error(self, peer: str, body: Any) -> None:
        """An error another worker answered to one of our pipelined protocol messages."""
        log.warning("%s reported an error: %s", peer, body)

    def relay_error(self, body: dict[str, Any], origin: Any) -> None:
        """Pass an error from a peer back to the client whose command caused it."""
        if not origin:
            log.warning("error from a peer with no client to report to: %s", body)
            return
        identity, seq = origin
        relayed = dict(body, path=[self.name, *body.get("path", [])], seq=seq)
        self.send(identity, Kind.ERROR, 0, relayed)

    def send(self, identity: bytes, kind: int, rid: int, body: Any) -> None:
        """Reply to one client; a client that is gone or not reading is logged, not fatal."""
        try:
            frames = encode(kind, rid, body)
        except ProtocolError as exc:
            frames = encode(Kind.ERROR, rid, error_body(
                worker=self.name, message=f"reply could not be encoded: {exc}",
                type_name="ProtocolError"))
        try:
            send_frames(self.socket, frames, prefix=identity)
        except zmq.ZMQError as exc:
            log.warning("dropped a reply to an unreachable client: %s", exc)

    def close(self) -> None:
        if self._record is not None:
            self._record.close()
        self.mpc.close()
        unwatch(self.socket, self._disconnects)
