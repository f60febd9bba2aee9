"""The client's side of a secure protocol op: control messages only, never shares.

For one op (say, `z = x * y` on values shared between bob and alice with james as provider)
the client:

1. makes sure james has seeded bob and alice for this group (`session`, once per group);
2. takes an op id james has already dealt for (`DealtAhead`), or picks fresh ones, posts DEAL
   (protocol name, shapes, the ids) to james and sends it at once: dealing and delivering
   the correction is the op's longest path;
3. posts MPC_RUN (share ids, the output id it chose, the same metadata) to each party and
   flushes every link at once: a party waits for its peers, so none may sit in an outbox;
4. returns pointers to the output shares, whose shapes it knows already.

Dealing ahead: an op of a protocol and shapes seen before is dealt together with the next
ones like it (2, 4, ... up to `AHEAD_OPS` at a time, small ops only), so a training loop's
ops find their material waiting at the parties: one DEAL and one MATERIAL message serve many
ops, and the provider is off the op's path. The material stays tied to op ids the client
chose, so nothing about the protocols changes; what the client has not used yet is bounded
(`AHEAD_ELEMENTS` per kind of op, `AHEAD_TOTAL` per provider).

Nothing it sends contains data, and it receives nothing: the parties and the provider talk to
each other directly. Errors come back at the next sync point, like any pipelined op.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgpack
import torch

from zsyft.errors import PointerUsageError
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.interrupts import interrupts_deferred
from zsyft.remote.refs import RemoteRef
from zsyft.tensors.pointer import PointerTensor
from zsyft.wire.messages import Kind

_seqs = itertools.count(1)
AHEAD_OPS = 32  # at most this many ops dealt in one DEAL
AHEAD_ELEMENTS = 1 << 15  # ... and at most this many elements of material for them
AHEAD_TOTAL = 1 << 20  # elements dealt ahead and not used yet, per provider


class DealtAhead:
    """Op ids a provider has been asked to deal for and no op has used yet, per session,
    protocol and parameters, and how many to ask for next time.

    The first op of a kind is dealt alone. From the second on, whenever fewer than half a
    batch are left, the next batch (2, 4, ... up to `AHEAD_OPS` ops) is asked for at once, so
    in a loop the material is dealt while earlier ops run, and an op finds its own waiting.
    """

    def __init__(self) -> None:
        self.ready: dict[tuple[bytes, str, bytes], deque[bytes]] = {}
        self.batch: dict[tuple[bytes, str, bytes], int] = {}
        self.unused = 0  # elements of material asked for and not used yet

    def op_id(
        self, provider: WorkerHandle, session_id: bytes, name: str, params: Any, numel: int
    ) -> bytes:
        """An op id for one op of `name` with `params` whose DEAL has been posted."""
        key = (session_id, name, msgpack.packb(params))
        ready = self.ready.setdefault(key, deque())
        count = self._to_deal(key, len(ready), numel)
        if count:
            self._deal(provider, key, params, count, numel)
        self.unused -= numel
        return ready.popleft()

    def _to_deal(self, key: tuple[bytes, str, bytes], left: int, numel: int) -> int:
        """How many ops of this kind to ask for now: none while half a batch is left; the
        first op of a kind alone; then batches that double, cut to fit the bounds (when not
        even two fit, one op, once none is left)."""
        batch = self.batch.get(key)
        if batch is None:
            self.batch[key] = 2
            return 1
        if left >= batch // 2:
            return 0
        fits = min(batch, AHEAD_ELEMENTS // numel, (AHEAD_TOTAL - self.unused) // numel)
        if fits < 2:
            return 0 if left else 1
        self.batch[key] = min(2 * batch, AHEAD_OPS)
        return fits

    def _deal(
        self, provider: WorkerHandle, key: tuple[bytes, str, bytes], params: Any, count: int,
        numel: int,
    ) -> None:
        ids = [os.urandom(16) for _ in range(count)]
        provider.post(Kind.DEAL, [key[0], ids, key[1], params])
        provider.flush(deletes=False)  # first: dealing and delivering it is the longest path
        self.ready[key].extend(ids)
        self.unused += count * numel


def dealt_ahead(provider: WorkerHandle) -> DealtAhead:
    """The provider's `DealtAhead`, kept on its handle like its sessions."""
    found = provider.__dict__.get("_mpc_dealt")
    if found is None:
        found = provider.__dict__["_mpc_dealt"] = DealtAhead()
    return found


def session(parties: Sequence[WorkerHandle], provider: WorkerHandle, protocol: str) -> bytes:
    """The session id under which `provider` seeded `parties` (set up on first use)."""
    if provider is None:
        raise PointerUsageError(
            f"this operation ({protocol}: products, division, comparisons and the like) needs "
            "a crypto provider: share with share(bob, alice, crypto_provider=james)"
        )
    if any(provider is p for p in parties):
        raise PointerUsageError("the crypto provider must not be one of the parties")
    # Kept on the provider's handle and keyed by the parties' addresses: a new provider (or a
    # party replaced by a new process) starts a new session.
    sessions: dict[tuple[str, ...], bytes] = provider.__dict__.setdefault("_mpc_sessions", {})
    key = tuple(p.address for p in parties)
    found = sessions.get(key)
    if found is None:
        found = os.urandom(16)
        described = [p.endpoint() for p in parties]
        provider.request(Kind.PROVIDER_SETUP, [found, described])
        sessions[key] = found
    return found


def run_protocol(
    name: str,
    inputs: Sequence[Sequence[PointerTensor]],
    provider: WorkerHandle,
    params: dict[str, Any],
    output_shape: Sequence[int],
) -> list[PointerTensor]:
    """Run protocol `name` on shared inputs (`inputs[k][i]` = party i's share of input k);
    returns each party's output share."""
    return run_protocol_outputs(name, inputs, provider, params, output_shape, 1)[0]


def run_protocol_outputs(
    name: str,
    inputs: Sequence[Sequence[PointerTensor]],
    provider: WorkerHandle,
    params: dict[str, Any],
    output_shape: Sequence[int],
    count: int,
) -> list[list[PointerTensor]]:
    """`run_protocol` for a protocol with `count` outputs of the same shape: returns
    `outputs[k][i]`, party i's share of output k."""
    parties = [share.location for share in inputs[0]]
    for shares in inputs:
        if [s.location for s in shares] != parties:
            raise PointerUsageError(
                f"{name}: the operands are shared among different workers "
                f"({', '.join(s.location.id for s in shares)} vs "
                f"{', '.join(p.id for p in parties)})"
            )
        for share in shares:
            share.ref.check_live()
    session_id = session(parties, provider, name)
    numel = max(1, *(math.prod(shape) for shape in [output_shape, *(s[0].shape for s in inputs)]))
    with interrupts_deferred():  # every party gets its part, or none does
        op_id = dealt_ahead(provider).op_id(provider, session_id, name, params, numel)
        refs = [[RemoteRef(party) for _ in range(count)] for party in parties]
        seq = next(_seqs)  # the same at every party: it orders this client's ops (`op_order`)
        for index, party in enumerate(parties):  # every party's message first, then the sends
            share_ids = [shares[index].ref.id for shares in inputs]
            output_ids: Any = [ref.id for ref in refs[index]] if count > 1 else refs[index][0].id
            party.post(Kind.MPC_RUN, [seq, session_id, op_id, name, share_ids, output_ids,
                                      params], send=False)
        for handle in parties:
            handle.flush(deletes=False)
    layout = torch.empty(tuple(output_shape), dtype=torch.int64, device="meta")
    return [
        [PointerTensor(party_refs[k], layout.shape, layout.stride(), torch.int64)
         for party_refs in refs]
        for k in range(count)
    ]

