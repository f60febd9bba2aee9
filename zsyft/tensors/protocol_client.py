"""The client's side of a secure protocol op: control messages only, never shares.

For one op (say, `z = x * y` on values shared between bob and alice with james as provider)
the client:

1. makes sure james has seeded bob and alice for this group (`session`, once per group);
2. picks a fresh op id, posts DEAL (protocol name and shapes) to james and sends it at
   once: dealing and delivering the correction is the op's longest path;
3. posts MPC_RUN (share ids, the output id it chose, the same metadata) to each party and
   flushes every link at once: a party waits for its peers, so none may sit in an outbox;
4. returns pointers to the output shares, whose shapes it knows already.

Nothing it sends contains data, and it receives nothing: the parties and the provider talk to
each other directly. Errors come back at the next sync point, like any pipelined op.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import torch

from zsyft.errors import PointerUsageError
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.refs import RemoteRef
from zsyft.tensors.pointer import PointerTensor
from zsyft.wire.messages import Kind

_seqs = itertools.count(1)


def session(parties: Sequence[WorkerHandle], provider: WorkerHandle) -> bytes:
    """The session id under which `provider` seeded `parties` (set up on first use)."""
    if provider is None:
        raise PointerUsageError(
            "this operation needs a crypto provider: share with "
            "share(bob, alice, crypto_provider=james)"
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
    session_id = session(parties, provider)
    op_id = os.urandom(16)
    provider.post(Kind.DEAL, [session_id, op_id, name, params])
    provider.flush(deletes=False)  # first: dealing and delivering it is the longest path
    layout = torch.empty(tuple(output_shape), dtype=torch.int64, device="meta")
    outputs: list[list[PointerTensor]] = [[] for _ in range(count)]
    for index, party in enumerate(parties):
        refs = [RemoteRef(party) for _ in range(count)]
        share_ids = [shares[index].ref.id for shares in inputs]
        output_ids: Any = refs[0].id if count == 1 else [ref.id for ref in refs]
        party.post(Kind.MPC_RUN, [next(_seqs), session_id, op_id, name, share_ids, output_ids,
                                  params])
        for k, ref in enumerate(refs):
            outputs[k].append(PointerTensor(ref, layout.shape, layout.stride(), torch.int64))
    for handle in parties:
        handle.flush(deletes=False)
    return outputs

