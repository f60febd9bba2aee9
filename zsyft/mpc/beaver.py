"""Beaver multiplication of additively shared tensors in Z/2^64.

Multiplying two shared values needs interaction; with a dealt triple ``(a, b, c = a * b)``
it costs one round of opening uniformly masked values (Beaver, "Efficient Multiparty
Protocols Using Circuit Randomization", CRYPTO 1991).  The same identity works for any
bilinear operation; here elementwise ``mul`` (with torch broadcasting) and ``matmul``
(including batched ``(..., n, k) @ (k, m)`` and ``(..., n, k) @ (..., k, m)``).

The result is the exact ring product.  For fixed-point values it carries the scale twice
and must then be divided by the scale with :mod:`zsyft.mpc.truncation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .prg import OpId, Prg
from .protocol import PartyProtocol, Transcript, open_sum, run_local
from .provider import (
    BeaverTriple,
    BilinearKind,
    bilinear_op,
    deal_triple,
    party_triple,
    prgs_for_pairs,
)
from .ring import check_int64

__all__ = [
    "BeaverParty",
    "beaver_combine",
    "beaver_masked",
    "beaver_message_bytes",
    "run_local_beaver",
]


def beaver_masked(
    x_i: torch.Tensor, y_i: torch.Tensor, triple: BeaverTriple
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1 (party i): the masked shares ``eps_i = x_i - a_i`` and ``delta_i = y_i - b_i``."""
    return x_i - triple.a, y_i - triple.b


def beaver_combine(
    kind: BilinearKind,
    party_index: int,
    triple: BeaverTriple,
    eps: torch.Tensor,
    delta: torch.Tensor,
) -> torch.Tensor:
    """Step 2 (party i): its share of ``op(x, y)`` from the opened ``eps`` and ``delta``.

    ``op(x, y) = op(eps, delta) + op(eps, b) + op(a, delta) + op(a, b)`` by bilinearity, so
    ``z_i = c_i + op(eps, b_i) + op(a_i, delta)``, and party 0 also adds
    ``op(eps, delta)`` - folded into ``op(eps, b_0 + delta)``: two products per party.
    Without shares of ``c`` (``triple.c is None``) the shares add up to
    ``op(x, y) - op(a, b)``.
    """
    op = bilinear_op(kind)
    b = triple.b + delta if party_index == 0 else triple.b
    z = op(eps, b)
    z += op(triple.a, delta)
    c = triple.c
    return z if c is None else z.add_(c)


class BeaverParty(PartyProtocol):
    """Party ``i`` of the Beaver protocol for ``op(x, y)`` with ``op`` = ``mul`` or ``matmul``.

    Steps (n parties, Z/2^64):

    1. Party i broadcasts ``eps_i = x_i - a_i`` and ``delta_i = y_i - b_i`` to all others
       (one message: both flattened, int64).
    2. Every party sums the messages into ``eps = x - a`` and ``delta = y - b`` and outputs
       ``z_i = c_i + op(eps, b_i) + op(a_i, delta)`` (+ ``op(eps, delta)`` for party 0).

    Cost: 1 round; each party sends ``8 * (numel(x) + numel(y))`` bytes to each of the
    other ``n - 1`` parties (16 bytes per element for equal-shape ``mul``).  The provider
    sends one int64 correction of the output's shape to the last party.

    Security (semi-honest, non-colluding provider): ``a`` and ``b`` are uniform in Z/2^64
    and unknown to every party, so the opened ``eps`` and ``delta`` are uniform and
    independent of ``x`` and ``y``; a party's view is simulatable from its own shares.
    """

    rounds = 1

    def __init__(
        self,
        kind: BilinearKind,
        party_index: int,
        n_parties: int,
        x_i: torch.Tensor,
        y_i: torch.Tensor,
        triple: BeaverTriple,
    ) -> None:
        super().__init__(party_index, n_parties)
        bilinear_op(kind)
        check_int64("x_i", x_i)
        check_int64("y_i", y_i)
        if x_i.shape != triple.a.shape or y_i.shape != triple.b.shape:
            raise ValueError(
                f"input shapes {tuple(x_i.shape)}, {tuple(y_i.shape)} do not match the triple's "
                f"{tuple(triple.a.shape)}, {tuple(triple.b.shape)}"
            )
        self.kind = kind
        self.x_i = x_i
        self.y_i = y_i
        self.triple = triple

    def first_message(self) -> torch.Tensor:
        eps_i, delta_i = beaver_masked(self.x_i, self.y_i, self.triple)
        return torch.cat([eps_i.reshape(-1), delta_i.reshape(-1)])

    def prepare(self) -> None:
        self.triple.c  # noqa: B018 - derives c (the last party: takes the correction) now

    def receive(self, messages: Sequence[torch.Tensor]) -> None:
        self._check_messages(messages)
        opened = open_sum(messages)
        nx = self.x_i.numel()
        eps = opened[:nx].reshape(self.x_i.shape)
        delta = opened[nx:].reshape(self.y_i.shape)
        self._output = beaver_combine(self.kind, self.party_index, self.triple, eps, delta)
        return None


def beaver_message_bytes(x_shape: Sequence[int], y_shape: Sequence[int]) -> int:
    """Bytes each party sends to each other party in one Beaver multiplication."""
    return 8 * (torch.Size(x_shape).numel() + torch.Size(y_shape).numel())


def run_local_beaver(
    kind: BilinearKind,
    x_shares: Sequence[torch.Tensor],
    y_shares: Sequence[torch.Tensor],
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    transcript: Transcript | None = None,
) -> list[torch.Tensor]:
    """Provider and all parties in this process: shares of ``op(x, y)``."""
    prgs = prgs_for_pairs(prgs, x_shares, y_shares)
    n = len(prgs)
    x_shape, y_shape = x_shares[0].shape, y_shares[0].shape
    correction = deal_triple(prgs, op_id, kind, x_shape, y_shape)
    parties = []
    for i in range(n):
        corr = correction if i == n - 1 else None
        triple = party_triple(prgs[i], op_id, i, n, kind, x_shape, y_shape, corr)
        parties.append(BeaverParty(kind, i, n, x_shares[i], y_shares[i], triple))
    return run_local(parties, transcript)
