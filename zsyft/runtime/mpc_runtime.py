"""Secure computation inside a worker: the crypto-provider role and the party role.

Setup (once per group of parties): the client asks the provider for a session; the provider
draws one PRG seed per party and sends each party its seed and PRG scheme directly (the client
never sees a seed), then answers. Per protocol op, with an op id the client chose:

1. the client posts DEAL (metadata only: protocol, shapes, and the op's id, or the ids of up to
   `MAX_DEALT` ops of the same protocol and shapes it will run later) to the provider, which
   derives every party's correlated randomness from the seeds and sends the one correction
   tensor per op the last party needs straight to it (MATERIAL, one message for all the ids:
   material dealt ahead of need waits in the party's mailbox under its op id);
2. the client posts MPC_RUN to every party; each party derives its material from its seed
   (the last party waits for its correction), then runs the protocol's broadcast rounds,
   exchanging masked values directly with the other parties (MPC_MSG), and stores its output
   share under the id the client chose.

While a party waits for a peer's message it keeps serving its socket (so the peer's messages,
the provider's material and other clients get through); a peer that dies fails the op with an
error naming it. The client only ever sends ids and metadata and receives nothing but errors.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import zmq

from zsyft.errors import WorkerUnavailableError
from zsyft.mpc.prg import Prg, fresh_seed
from zsyft.runtime.executor import FailedInput
from zsyft.runtime.mpc_bodies import checked_id, op_ids, output_ids, party_list, worker_entry
from zsyft.runtime.op_order import NO_OP, HeldRuns, OpKey, op_key
from zsyft.runtime.protocols import protocol
from zsyft.runtime.store import Failed
from zsyft.transport.link import Link
from zsyft.transport.zmq import SETTINGS, poll_awake
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import Kind

ABORT_ROUND = -1  # an MPC_MSG in this round says the sender gave up on the op
CLOSED_OPS_KEPT = 4096  # ops remembered as over, so their late messages are dropped
LIVENESS_CHECK_S = 0.02  # how often a waiting party checks that the peer it waits for is up
# How long a waiting party sleeps when no message comes: it then checks its peer's liveness
# (and the deadline). Nothing else may need the wake-up: a test sets it to hours.
IDLE_WAKE_MS = int(os.environ.get("ZSYFT_IDLE_WAKE_MS", "100"))
MATERIAL = "material"  # the mailbox entry of an op's correction from the provider

if TYPE_CHECKING:
    from zsyft.runtime.worker import Worker


@dataclass
class PartySession:
    """This worker's place in a group of parties: its index, the group, its PRG."""

    index: int
    parties: list[dict[str, str]]
    provider: dict[str, str]
    prg: Prg


class MpcRuntime:
    """Sessions, mailbox and links to other workers for one worker's secure computation."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.party_sessions: dict[bytes, PartySession] = {}
        self.provider_sessions: dict[bytes, tuple[list[dict[str, str]], list[Prg]]] = {}
        # (session, op id) -> {MATERIAL | ("msg", round, sender) | "abort": what arrived}
        self.mailbox: dict[tuple[bytes, bytes], dict[Any, Any]] = {}
        self.links: dict[tuple[str, str | None], Link] = {}
        self._rids = itertools.count(1)
        self._awaited: set[int] = set()  # requests (`_request`) waiting for their reply
        self._replies: dict[int, Any] = {}  # replies read while waiting for another one
        self._own_socket_poller = zmq.Poller()  # waits for peers' messages (`wait_for`)
        self._own_socket_poller.register(worker.socket, zmq.POLLIN)
        # (session, op id) of ops that ended here: a failed op's peers may still send their
        # round messages, aborts or material, which nobody would ever take from the mailbox.
        self._closed: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
        self.held = HeldRuns(worker)  # other clients' ops kept back while we wait in one
        self._running = 0  # protocol ops in progress here (nested while waiting)
        self._keys: dict[tuple[bytes, bytes], OpKey] = {}  # their order (`op_order`)

    # -- links to other workers -----------------------------------------------------------
    def link(self, party: dict[str, str]) -> Link:
        where = (party["address"], party["key"])
        link = self.links.get(where)
        if link is None:
            link = self.links[where] = Link(
                self.worker.ctx, party["address"], party["name"], party["key"]
            )
        return link

    def sockets(self) -> list[zmq.Socket]:
        return [link.socket for link in self.links.values()]

    def drain(self, socket: zmq.Socket) -> None:
        """Read (and drop) what peers answered to our pipelined messages: errors are logged."""
        for link in self.links.values():
            if link.socket is socket:
                for frames in link.poll_messages():
                    reply = decode(frames)
                    if reply.kind == Kind.ERROR:
                        self.worker.log_peer_error(link.peer, reply.body)

    def _request(self, link: Link, kind: int, body: Any, errors: list | None = None) -> Any:
        """Send a request and wait for its reply; errors that peer reports meanwhile about
        earlier pipelined messages go to `errors` (if given) or to the log."""
        rid = next(self._rids)
        link.send(encode(kind, rid, body))
        deadline = time.monotonic() + SETTINGS.request_timeout_s
        self._awaited.add(rid)
        try:
            while (reply := self._replies.pop(rid, None)) is None:
                # a request nested meanwhile (another client's setup) may read our reply
                frames = link.recv(deadline, (self.worker.socket, self.worker.serve_one),
                                   until=lambda: rid in self._replies)
                if frames is None:
                    continue
                received = decode(frames)
                if received.rid in self._awaited:
                    self._replies[received.rid] = received
                elif received.kind == Kind.ERROR and errors is not None:
                    errors.append((link.peer, received.body))
                elif received.kind == Kind.ERROR:
                    self.worker.log_peer_error(link.peer, received.body)
            return reply.body
        finally:
            self._awaited.discard(rid)

    def wait_for(self, op: tuple[bytes, bytes], entry: Any, waiting_on: Link, what: str) -> Any:
        """The mailbox entry `entry` of `op` (session, op id) from `waiting_on`'s worker,
        serving this worker's socket until it arrives; a typed error naming that worker if it
        dies or stays silent."""
        deadline = time.monotonic() + SETTINGS.request_timeout_s
        poller = self._own_socket_poller
        awake = self.worker.spin_s  # the peer's message usually comes within a round trip
        box = self.mailbox.setdefault(op, {})
        next_check = 0.0  # the peer's connection is checked this often, not per message
        key = self._keys.get(op, NO_OP)  # which other ops may start meanwhile (`op_order`)

        def hold(identity: bytes, frames: list[Any]) -> bool:
            return self.held.hold(identity, frames, key)

        while entry not in box:
            if "abort" in box:
                culprit, reason = box["abort"]
                raise WorkerUnavailableError(
                    f"a party abandoned this op ({what} will not come): {reason}", worker=culprit
                )
            now = time.monotonic()
            if now >= next_check:
                next_check = now + LIVENESS_CHECK_S
                waiting_on.check_alive()
                if now > deadline:
                    raise WorkerUnavailableError(
                        f"{waiting_on.peer} did not send {what} in time", worker=waiting_on.peer
                    )
            # Other messages, run meanwhile, get torch's usual mode (this op runs in
            # inference mode): a tensor they store would be an inference tensor, which a
            # later in-place op (another program's SGD step) may not change.
            with torch.inference_mode(False):
                self.held.take_deferred()
                # ops that may start inside this one now do; what they ran may defer more
                while self.held.release_before(key) and self.held.take_deferred():
                    pass
                if entry in box:
                    continue
                if poll_awake(poller, awake, IDLE_WAKE_MS):
                    self.worker.serve_one(hold=hold)
        return box.pop(entry)

    # -- provider role --------------------------------------------------------------------
    def setup(self, body: Any) -> None:
        """PROVIDER_SETUP: seed every party directly, wait until each has its seed."""
        if not (isinstance(body, list) and len(body) == 2):
            raise TypeError("provider setup body must be [session, parties]")
        session, parties = checked_id(body[0]), party_list(body[1])
        seeds = [fresh_seed() for _ in parties]
        prgs = [Prg(seed) for seed in seeds]  # this process's fastest scheme; parties follow
        self.provider_sessions[session] = (parties, prgs)
        me = {
            "name": self.worker.name, "address": self.worker.address, "key": self.worker.public_key
        }
        for index, (party, seed) in enumerate(zip(parties, seeds, strict=True)):
            body = [session, index, parties, seed, me, prgs[index].scheme]
            self.link(party).send(encode(Kind.MPC_SEED, 0, body))
        refusals: list[tuple[str, Any]] = []  # a party's error about its seed comes first
        for party in parties:
            self._request(self.link(party), Kind.SYNC, None, refusals)
        if refusals:
            del self.provider_sessions[session]
            peer, error = refusals[0]
            why = error.get("message") if isinstance(error, dict) else error
            raise RuntimeError(f"party {peer} refused the crypto provider's seed: {why}")

    def deal(self, body: Any) -> None:
        """DEAL: send the last party the one correction tensor each named op needs (ops dealt
        ahead of need travel together, in one MATERIAL message)."""
        if not (isinstance(body, list) and len(body) == 4):
            raise TypeError("deal body must be [session, op id(s), protocol, params]")
        session, ids = checked_id(body[0]), op_ids(body[1])
        if session not in self.provider_sessions:
            raise LookupError("unknown session: set up the crypto provider first")
        parties, prgs = self.provider_sessions[session]
        spec = protocol(body[2])
        with torch.inference_mode():  # see `run`
            corrections = spec.deal(prgs, ids, body[3])  # the whole batch at once
        material = [session, ids, corrections] if isinstance(body[1], list) else [
            session, ids[0], corrections[0]]
        self.link(parties[-1]).send(encode(Kind.MATERIAL, 0, material))

    # -- party role -----------------------------------------------------------------------
    def seed(self, body: Any) -> None:
        """MPC_SEED: remember this worker's seed, its PRG scheme and place in the session."""
        if not (
            isinstance(body, list) and len(body) == 6 and isinstance(body[3], bytes)
            and isinstance(body[5], str)
        ):
            raise TypeError("seed body must be [session, index, parties, seed, provider, scheme]")
        session, index, parties = checked_id(body[0]), body[1], party_list(body[2])
        provider = worker_entry(body[4])
        self._check_sender(provider, "the crypto provider")
        if not (isinstance(index, int) and 0 <= index < len(parties)):
            raise TypeError("party index out of range")
        prg = Prg(body[3], body[5])
        self.party_sessions[session] = PartySession(index, parties, provider, prg)

    def deposit(self, kind: int, body: Any) -> None:
        """MPC_MSG / MATERIAL: keep a peer's round message or the provider's corrections."""
        if kind == Kind.MATERIAL:
            self._deposit_material(body)
            return
        if not (isinstance(body, list) and len(body) == 5):
            raise TypeError("message body must be [session, op id, round, sender, tensor]")
        if not (isinstance(body[2], int) and isinstance(body[3], int)):
            raise TypeError("round and sender must be integers")
        parties = self._session(checked_id(body[0])).parties
        if not 0 <= body[3] < len(parties):
            raise TypeError("sender index out of range")
        self._check_sender(parties[body[3]], f"party {body[3]}")
        if body[2] == ABORT_ROUND:  # a peer gave up on this op: [culprit, reason]
            cause = body[4]
            if not (isinstance(cause, list) and len(cause) == 2
                    and all(isinstance(c, str) for c in cause)):
                raise TypeError("an abort carries [worker, reason]")
            self._keep((checked_id(body[0]), checked_id(body[1])), "abort", cause)
            return
        if not isinstance(body[4], torch.Tensor):
            raise TypeError("protocol messages carry one tensor")
        op = (checked_id(body[0]), checked_id(body[1]))
        self._keep(op, ("msg", body[2], body[3]), body[4])

    def _deposit_material(self, body: Any) -> None:
        if not (isinstance(body, list) and len(body) == 3):
            raise TypeError("material body must be [session, op id(s), tensor(s)]")
        session, ids = checked_id(body[0]), op_ids(body[1])
        tensors = body[2] if isinstance(body[1], list) else [body[2]]
        if not (isinstance(tensors, list) and len(tensors) == len(ids)
                and all(isinstance(t, torch.Tensor) for t in tensors)):
            raise TypeError("material carries one tensor per op id")
        self._check_sender(self._session(session).provider, "the crypto provider")
        for op_id, tensor in zip(ids, tensors, strict=True):
            self._keep((session, op_id), MATERIAL, tensor)

    def _keep(self, op: tuple[bytes, bytes], entry: Any, value: Any) -> None:
        """File a message for an op, unless the op is over here already (too late: dropped)."""
        if op not in self._closed:
            self.mailbox.setdefault(op, {})[entry] = value

    def _session(self, session_id: bytes) -> PartySession:
        session = self.party_sessions.get(session_id)
        if session is None:
            raise LookupError("unknown session: the crypto provider has not seeded this worker")
        return session

    def _check_sender(self, expected: dict[str, Any], role: str) -> None:
        """Protocol messages are accepted only from the worker whose role they claim (when
        connections are authenticated): no other client can feed a party values."""
        sender = self.worker.store.requester
        if sender is not None and expected.get("key") is not None and sender != expected["key"]:
            raise PermissionError(f"this message must come from {role}, {expected['name']}")

    def run(self, body: Any) -> None:
        """MPC_RUN: run this party's side of one protocol op and store its output shares."""
        if not (isinstance(body, list) and len(body) == 7):
            raise TypeError("run body must be [seq, session, op id, protocol, inputs, output, "
                            "params]")
        _, session_id, op_id, name, inputs, output, params = body
        session = self._session(checked_id(session_id))
        op_id = checked_id(op_id)
        self._running += 1
        self._keys[(session_id, op_id)] = op_key(body[0], op_id)
        try:  # from here on, a failure must reach the other parties (they would wait for us)
            spec = protocol(name)
            outputs = output_ids(output)
            if not (
                isinstance(inputs, list) and len(inputs) == spec.arity
                and len(outputs) == spec.outputs
            ):
                raise TypeError(f"{name} takes {spec.arity} input ids and {spec.outputs} "
                                "output id(s)")
            values = [self.worker.store.get(checked_id(i)) for i in inputs]
            for value in values:
                if isinstance(value, Failed):
                    raise FailedInput(value.error)  # an input is the result of a failed op
            if not all(isinstance(v, torch.Tensor) and v.dtype == torch.int64 for v in values):
                raise TypeError(f"{name} runs on int64 shares")
            # No autograd bookkeeping on the protocol's many small ops (a fifth to a third
            # of their cost); the outputs are stored as normal tensors, which later in-place
            # ops (SGD's step, gradient accumulation) may change.
            with torch.inference_mode():
                shares = self._run_party(session, session_id, op_id, spec, name, values,
                                         params)
            for object_id, share in zip(outputs, shares, strict=True):
                self.worker.store.put(object_id, share.clone())
        except Exception as exc:
            self._abort(session, session_id, op_id, exc)
            raise
        finally:
            self._close(session_id, op_id)
            self._keys.pop((session_id, op_id), None)
            self._running -= 1
            if not self._running:
                self.held.release_all()

    def _close(self, session_id: bytes, op_id: bytes) -> None:
        """The op is over here: drop what the mailbox holds for it and what comes later."""
        self._closed[(session_id, op_id)] = None
        if len(self._closed) > CLOSED_OPS_KEPT:
            self._closed.popitem(last=False)
        self.mailbox.pop((session_id, op_id), None)

    def _abort(
        self, session: PartySession, session_id: bytes, op_id: bytes, exc: Exception
    ) -> None:
        """Tell the other parties this op failed here, so none of them waits for us in vain."""
        if isinstance(exc, FailedInput):
            culprit, reason = exc.error.get("worker"), exc.error.get("message")
        else:
            culprit, reason = getattr(exc, "worker", None), str(exc) or type(exc).__name__
        cause = [str(culprit or self.worker.name), str(reason)]
        for j, peer in enumerate(session.parties):
            if j != session.index:
                try:
                    self.link(peer).send(
                        encode(Kind.MPC_MSG, 0, [session_id, op_id, ABORT_ROUND, session.index,
                                                 cause]))
                except WorkerUnavailableError:
                    pass  # that peer is gone: nobody waits there

    def _run_party(
        self, session: PartySession, session_id: bytes, op_id: bytes, spec: Any, name: str,
        values: list[torch.Tensor], params: Any,
    ) -> list[torch.Tensor]:
        """This party's side of the protocol's rounds; its output shares."""
        n, me = len(session.parties), session.index
        correction = None
        if me == n - 1:  # awaited when the protocol first needs it, not before it can start

            def correction() -> torch.Tensor:
                return self.wait_for((session_id, op_id), MATERIAL, self.link(session.provider),
                                     f"the material for {name}")

        party = spec.party(session.prg, op_id, me, n, values, params, correction)
        message, round_no = party.first_message(), 0
        while message is not None:
            for j, peer in enumerate(session.parties):
                if j != me:
                    frames = encode(Kind.MPC_MSG, 0, [session_id, op_id, round_no, me, message])
                    self.link(peer).send(frames)
            party.prepare()  # while the other parties' messages are on their way
            messages = [
                message if j == me else self.wait_for(
                    (session_id, op_id), ("msg", round_no, j), self.link(peer),
                    f"its round-{round_no + 1} message of {name}",
                )
                for j, peer in enumerate(session.parties)
            ]
            message, round_no = party.receive(messages), round_no + 1
        return party.outputs()

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()
