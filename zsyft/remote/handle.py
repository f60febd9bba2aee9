"""A handle on one worker: what `bob` is in `bob = sy.VirtualWorker(hook, id="bob")`.

The handle owns the link to the worker and speaks the request/notice protocol over it:

- `post()` pipelines a message (commands, stores, deletes): no reply is awaited. Pipelined
  messages wait in an outbox and leave in bursts (64 messages, or 2 ms after the oldest was
  queued, checked at the next post; at once when they carry a large tensor) and always before
  any request, which rides in the same burst. A burst is one BATCH message (`batching.batch`):
  one ZeroMQ send, one wake-up of each side's I/O thread, instead of one per message.
  The first message after a reply leaves at once: the worker is idle then, and starts on it
  while the client prepares the next one (a `get()` right after an op overlaps the two).
- `request()` sends a message and waits for its reply. While waiting, ERROR notices of earlier
  pipelined commands are collected by the local node, which raises them at a sync point.
- Deletes queued by garbage-collected pointers go out, batched, in front of the next message.

Handles compare by identity, so `bob == x_ptr.location` holds for the one `bob` handle.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from zsyft.errors import (
    WorkerError,
    WorkerUnavailableError,
)
from zsyft.remote.interrupts import interrupts_deferred
from zsyft.remote.received import error_from_body
from zsyft.remote.refs import collect_dropped
from zsyft.remote.worker_api import WorkerApi
from zsyft.transport.keys import KeyPair
from zsyft.transport.link import Link
from zsyft.transport.zmq import SETTINGS, context
from zsyft.wire.batching import batch
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import Kind

if TYPE_CHECKING:
    from zsyft.remote.node import LocalNode

ISSUED_MEMORY = 4096  # how many recent commands keep their call site for error messages
DELETE_BATCH = 64  # garbage-collected ids wait for this many (or for a request) before a DELETE
OUTBOX_MESSAGES = 64  # pipelined messages sent together in one burst
OUTBOX_AGE_S = 0.002  # a burst leaves at the next post once its oldest message is this old


class Process(Protocol):
    """What a handle needs from a worker process it started (see `launcher.spawn`)."""

    pid: int

    def diagnose(self) -> str | None: ...

    def stop(self) -> None: ...


class WorkerHandle(WorkerApi):
    """The client side of one worker: `id` (its name), `address`, `pid` and `_objects`."""

    def __init__(
        self,
        node: LocalNode,
        name: str,
        address: str,
        pid: int | None = None,
        process: Process | None = None,
        *,
        public_key: str | None = None,
        client_keys: KeyPair | None = None,
    ) -> None:
        self.node = node
        self.id = name
        self.address = address
        self.public_key = public_key  # the worker's CURVE key, checked during the handshake
        self.pid = pid
        self.process = process
        self.link = Link(context(), address, name, public_key, client_keys)
        if process is not None:
            self.link.exited = process.diagnose  # a worker that died unconnected fails fast
        self._lock = threading.RLock()
        self._pending_deletes: list[tuple[bytes, str | None]] = []  # (id, on behalf of)
        self._outbox: list[list[Any]] = []
        self._outbox_since = 0.0
        self._rids = itertools.count(1)
        self._seqs = itertools.count(1)
        self._issued: OrderedDict[int, tuple[str, str | None, Any]] = OrderedDict()
        self.dirty = False  # messages posted since the last reply: the worker may lag behind
        self._posts = 0  # messages queued so far; a reply covers those sent before its request
        self._covered: dict[int, int] = {}  # request id -> `_posts` when it was sent
        # A protocol op was posted since the last reply: the next reply waits on its rounds.
        self.computing = False
        self.answered = False  # whether the worker replied yet (it may still be starting)
        self.in_flight = 0  # requests sent and not yet answered (nested waits in a worker)
        self._awaited: set[int] = set()  # ids of requests sent whose reply is still wanted
        self._early: dict[int, Any] = {}  # replies that came while waiting for another one
        self.lost_reply = False  # an interrupt cut off reading a message (see `_receive`)
        self.gets_done = 0  # completed get()s here: the round of `FetchMode.HAND_OVER`
        # Objects whose hand-over reply an interrupt cut off: the worker keeps them set aside
        # in round `gets_done`, which stays until they are fetched again or deleted.
        self.unreceived: set[bytes] = set()

    def endpoint(self) -> dict[str, Any]:
        """How another worker reaches this one: name, address and public key."""
        return {"name": self.id, "address": self.address, "key": self.public_key}

    # -- lifetime of remote objects -------------------------------------------------------
    @property
    def principal(self) -> str | None:
        """The client this process acts for right now (in a worker process), else None."""
        return self.node.principal

    def release(self, object_id: bytes, principal: str | None = None) -> None:
        """Queue a delete (only appends, never does I/O)."""
        self._pending_deletes.append((object_id, principal))
        self.unreceived.discard(object_id)  # the delete frees it where it was set aside

    @property
    def unsynced(self) -> bool:
        """Whether something was posted (or a delete queued) since the worker last replied:
        a sync point must wait for it."""
        collect_dropped()
        return self.dirty or bool(self._pending_deletes)

    def flush(self, deletes: bool = True) -> None:
        """Send every pipelined message now, and every queued delete (with `deletes=False`,
        fewer than a batch of deletes keep waiting: a protocol op's flush need not carry
        them in a message of their own)."""
        with self._lock:
            self._flush_deletes(1 if deletes else DELETE_BATCH)
            self._flush_outbox()

    def _flush_deletes(self, at_least: int = 1) -> None:
        collect_dropped()
        if len(self._pending_deletes) >= at_least:
            pending, self._pending_deletes = self._pending_deletes, []
            by_principal: dict[str | None, list[bytes]] = {}
            for object_id, principal in pending:
                by_principal.setdefault(principal, []).append(object_id)
            for principal, ids in by_principal.items():
                self._queue(encode(Kind.DELETE, 0, ids, principal))

    def _queue(self, frames: list[Any]) -> None:
        if not self._outbox:
            self._outbox_since = time.monotonic()
        self._outbox.append(frames)
        self._posts += 1
        self.dirty = True

    def _flush_outbox(self, request: list[Any] | None = None) -> None:
        """Send the outbox (and then `request`, if given) as BATCH messages."""
        with interrupts_deferred():  # a message half sent would corrupt the next one
            outbox, self._outbox = self._outbox, []
            if request is not None:
                outbox.append(request)
            for frames in batch(outbox):
                self._send(frames)

    # -- pipelined messages ---------------------------------------------------------------
    def post(self, kind: int, body: Any, send: bool = True) -> None:
        """Send a message that expects no reply (errors come back as notices). With
        `send=False` it waits in the outbox for the caller's `flush()` (or the next burst)."""
        if self.node.forwarders:
            self.node.settle(self)
        frames = encode(kind, 0, body, self.node.principal)
        with self._lock:
            self.computing = self.computing or kind == Kind.MPC_RUN
            self._flush_deletes(DELETE_BATCH)
            idle = not self.dirty  # nothing sent since the worker's last reply: it waits for us
            self._queue(frames)
            if not send:
                return
            if (
                idle
                or len(self._outbox) >= OUTBOX_MESSAGES
                or (len(frames) > 1 and any(not isinstance(f, bytes) for f in frames[1:]))
                or time.monotonic() - self._outbox_since > OUTBOX_AGE_S
            ):
                self._flush_outbox()

    def command(
        self, op: str, args: Any, kwargs: Any, result_ids: list[bytes | None], callsite: str | None
    ) -> None:
        """Pipeline one op; its failure is reported at the next sync point."""
        seq = next(self._seqs)
        self._remember(seq, op, callsite)
        self.post(Kind.COMMAND, [seq, op, args, kwargs, result_ids, False])

    def command_sync(
        self, op: str, args: Any, kwargs: Any, result_ids: list[bytes | None], callsite: str | None
    ) -> list[Any]:
        """Run one op and wait for its outputs' metadata (ops whose shapes depend on data)."""
        seq = next(self._seqs)
        self._remember(seq, op, callsite)
        reply = self.request(Kind.COMMAND, [seq, op, args, kwargs, result_ids, True])
        return reply[1]

    def _remember(self, seq: int, op: str, callsite: str | None) -> None:
        self._issued[seq] = (op, callsite, self.node.origin)
        if len(self._issued) > ISSUED_MEMORY:
            self._issued.popitem(last=False)

    def _send(self, frames: list[Any]) -> None:
        if self.link.socket.closed:
            raise WorkerUnavailableError(
                f"the connection to worker {self.id!r} was closed (it was shut down, or a new "
                f"worker named {self.id!r} replaced it); what this program held there is out "
                "of its reach",
                worker=self.id,
            )
        try:
            self.link.send(frames)
        except WorkerUnavailableError as exc:
            raise self._explain(exc) from None

    # -- requests -------------------------------------------------------------------------
    def request(self, kind: int, body: Any, timeout: float | None = None) -> Any:
        """Send one request and return the body of its reply; raises the typed error on ERROR."""
        rid = self.send_request(kind, body)
        try:
            return self.await_reply(rid, timeout)
        except KeyboardInterrupt:
            self.abandon(rid)
            raise

    def send_request(self, kind: int, body: Any) -> int:
        """Send a request (after everything queued before it) without waiting for the reply;
        returns the id `await_reply` takes. A client can so wait on several workers at once."""
        if self.node.forwarders:
            self.node.settle(self)
        with self._lock:
            rid = next(self._rids)
            frames = encode(kind, rid, body, self.node.principal)
            self._flush_deletes()
            self._flush_outbox(request=frames)
            self._awaited.add(rid)
            self._covered[rid] = self._posts
            return rid

    def await_reply(self, rid: int, timeout: float | None = None) -> Any:
        """The body of the reply to request `rid`; raises the typed error on ERROR.

        After a protocol op, the reply comes only once the parties have run its rounds: this
        process then blocks at once rather than first waiting awake, which would take a core
        the parties need (on two cores, two parties sharing the other one run a 1-element mul
        ~20% slower at the median).
        """
        timeout = SETTINGS.request_timeout_s if timeout is None else timeout
        with self._lock:
            deadline = time.monotonic() + timeout
            self.in_flight += 1
            awake = not self.computing
            interrupted = False
            try:
                while (reply := self._early.pop(rid, None)) is None:
                    self._receive(rid, deadline, awake)
                if self._covered.get(rid, self._posts) == self._posts:
                    # Nothing was posted after the request (a worker waiting on it may post
                    # more, serving a message nested): the worker ran all we sent it.
                    self.dirty = self.computing = False
                self.answered = True
                self.node.gone.discard(self.id)  # back (a restarted worker), or never gone
                if reply.kind == Kind.ERROR:
                    error = self._error(reply.body)
                    # Its notice came first, on the same connection: raised here, it is not
                    # raised again at the next sync point.
                    self.node.discard_error(error)
                    raise self.node.raising(error)
                return reply.body
            except KeyboardInterrupt:  # the reply stays awaited: the caller may still take it
                interrupted = True  # (`get()` does, see `fetching._keep_for_next_get`) or
                raise  # abandon it
            finally:
                if not interrupted:
                    self._awaited.discard(rid)
                    self._covered.pop(rid, None)
                self.in_flight -= 1

    def _receive(self, rid: int, deadline: float, awake: bool) -> None:
        """Read one message while waiting for request `rid`'s reply: a reply is kept for its
        waiter, a notice noted. An interrupt that loses a message read sets `lost_reply`."""
        frames = None
        try:
            frames = self.link.recv(deadline, self.node.serve_while_waiting, awake,
                                    until=lambda: rid in self._early)
            if frames is None:  # a request served meanwhile read our reply
                return
            self._file(decode(frames))
        except WorkerUnavailableError as exc:
            self.dirty = False  # what was posted to it is reported lost by this error
            raise self.node.raising(self._explain(exc)) from None
        except KeyboardInterrupt:
            if frames is not None or self.link.reading:
                self.link.reading = False
                self.lost_reply = True
            raise

    def reply_lost(self, rid: int) -> bool:
        """Whether request `rid`'s reply was lost to an interrupt (true once): replies come in
        order, so a message cut short was the first reply still awaited."""
        lost = (self.lost_reply and rid not in self._early and rid in self._awaited
                and rid == min(self._awaited))
        self.lost_reply = self.lost_reply and not lost
        return lost

    def abandon(self, rid: int) -> None:
        """Drop request `rid`'s reply, received or still to come (nobody will await it)."""
        with self._lock:
            self._awaited.discard(rid)
            self._early.pop(rid, None)
            self._covered.pop(rid, None)

    def drain_notices(self) -> None:
        """Collect ERROR notices that already arrived, without waiting."""
        with self._lock:
            for frames in self.link.poll_messages():
                self._file(decode(frames))

    def _file(self, received: Any) -> None:
        """Keep a reply for its waiter (this request's, or one further up the stack), or
        note a notice."""
        if received.rid in self._awaited:
            self._early[received.rid] = received
        else:
            self._notice(received)

    def _notice(self, reply: Any) -> None:
        if reply.kind == Kind.ERROR and reply.rid == 0:
            origin = None
            if isinstance(reply.body, dict) and isinstance(reply.body.get("seq"), int):
                origin = self._issued.get(reply.body["seq"], (None, None, None))[2]
            self.node.record_error(self._error(reply.body), reply.body, origin)
        # anything else is a late reply to a request that already timed out: drop it

    def _error(self, body: Any) -> WorkerError:
        callsite = seq = None
        if isinstance(body, dict) and isinstance(body.get("seq"), int):
            seq = body["seq"]
            callsite = self._issued.get(seq, (None, None, None))[1]
        error = error_from_body(body, callsite)
        error.issued = (self.id, seq) if seq is not None else None  # which command failed
        return error

    def _explain(self, exc: WorkerUnavailableError) -> WorkerUnavailableError:
        """Add what the worker's own process says (exit status, log tail) when we started it."""
        detail = self.process.diagnose() if self.process is not None else None
        if detail and detail not in str(exc):
            return type(exc)(f"{exc}\n{detail}", worker=self.id)
        return exc

    # -- what users call ------------------------------------------------------------------
    def fetch(self, object_id: bytes, delete: bool) -> Any:
        """The stored object (deleting it remotely if `delete`); a sync point."""
        self.node.raise_pending()
        return self.request(Kind.FETCH, [object_id, delete])

    def store(self, object_id: bytes, tensor: Any) -> None:
        """Pipeline storing a local tensor under `object_id`."""
        self.post(Kind.STORE, [object_id, tensor])

    def close(self) -> None:
        """Close the link; stop the worker process too if this handle started it."""
        with self._lock:
            if not self.link.socket.closed:
                try:
                    self.flush()
                except WorkerError:
                    pass  # the worker is gone: nothing to deliver
            self.link.close()
        if self.process is not None:
            self.node.retired.add((self.address, self.public_key))
            self.process.stop()
