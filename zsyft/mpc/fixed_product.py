"""Fixed-point products as one protocol op: a Beaver product, then its truncation.

A product of two fixed-point values carries the scale twice, so every shared ``x * y`` or
``x @ y`` is followed by a division by the scale (:mod:`.truncation`).  Run as two separate
ops, that costs the client two control messages per party and the provider two deals, and
the truncation cannot start before its own control message arrives.  Here both steps form
one op: the provider deals the triple and the truncation material under one op id in one
correction (the triple's ``c`` share first, then the truncation's ``(r_div, r_top)``), and
each party runs the Beaver round and then the truncation round (:class:`Sequential`).

Cost: 2 rounds; per output element of an equal-shape ``mul``, each party sends 16 bytes
(Beaver) + 8 bytes (truncation) to each other party; the provider sends the last party
24 bytes.  The security argument is that of the two protocols: their masks are drawn under
distinct labels of the same op id, so they are independent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .beaver import BeaverParty
from .prg import OpId, Prg
from .protocol import PartyProtocol, Sequential, Transcript, run_local
from .provider import (
    Correction,
    DealerStreams,
    PartyStreams,
    Shape,
    bilinear_output_shape,
    check_divisor,
    draw_triple,
    draw_truncation,
    prgs_for_pairs,
    take_triple,
    take_truncation,
)
from .truncation import TruncationParty

__all__ = ["deal_fixed_product", "fixed_product_party", "run_local_fixed_product"]


def deal_fixed_product(
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    kind: str,
    x_shape: Shape,
    y_shape: Shape,
    divisor: int,
) -> torch.Tensor:
    """Provider: the last party's correction for ``op(x, y) / divisor`` (flat int64)."""
    check_divisor(divisor)
    dealer = DealerStreams(prgs, op_id)
    draw_triple(dealer, kind, x_shape, y_shape)
    draw_truncation(dealer, bilinear_output_shape(kind, x_shape, y_shape), divisor)
    return dealer.correction().view(torch.int64)


def fixed_product_party(
    prg: Prg,
    op_id: OpId,
    party_index: int,
    n_parties: int,
    kind: str,
    x_i: torch.Tensor,
    y_i: torch.Tensor,
    divisor: int,
    correction: Correction | None = None,
) -> PartyProtocol:
    """Party ``party_index``'s side of ``op(x, y) / divisor`` on its shares ``x_i, y_i``.

    The last party passes the provider's correction, or a function returning it: it is then
    awaited only when the Beaver round's output needs ``c``.
    """
    check_divisor(divisor)
    src = PartyStreams(prg, op_id, party_index, n_parties, correction)
    triple = take_triple(src, kind, x_i.shape, y_i.shape)
    beaver = BeaverParty(kind, party_index, n_parties, x_i, y_i, triple)

    def truncate(product: torch.Tensor) -> PartyProtocol:
        material = take_truncation(src, product.shape, divisor)  # after c: the stream order
        src.finish()
        return TruncationParty(party_index, n_parties, product, material, divisor)

    return Sequential(beaver, truncate)


def run_local_fixed_product(
    kind: str,
    x_shares: Sequence[torch.Tensor],
    y_shares: Sequence[torch.Tensor],
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    divisor: int,
    transcript: Transcript | None = None,
) -> list[torch.Tensor]:
    """Provider and all parties in this process: shares of ``op(x, y) / divisor``."""
    prgs = prgs_for_pairs(prgs, x_shares, y_shares)
    n = len(prgs)
    correction = deal_fixed_product(
        prgs, op_id, kind, x_shares[0].shape, y_shares[0].shape, divisor
    )
    parties = [
        fixed_product_party(prgs[i], op_id, i, n, kind, x_shares[i], y_shares[i], divisor,
                            correction if i == n - 1 else None)
        for i in range(n)
    ]
    return run_local(parties, transcript)
