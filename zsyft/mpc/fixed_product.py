"""Fixed-point products as one protocol op: a Beaver product, then its truncation.

A product of two fixed-point values carries the scale twice, so every shared ``x * y`` or
``x @ y`` is followed by a division by the scale (:mod:`.truncation`).  Run as two separate
ops, that costs the client two control messages per party and the provider two deals, and
the truncation cannot start before its own control message arrives.  Here both steps form
one op, and the triple's ``c`` is folded into the truncation's mask:

* The parties hold seeded shares of the triple's ``a`` and ``b`` but no shares of
  ``c = op(a, b)``, so the Beaver round (:class:`~.beaver.BeaverParty`) leaves them with
  shares of ``op(x, y) - op(a, b)``.
* Each party then masks its share with its seeded share of the truncation mask ``r``
  (:class:`~.truncation.TruncationParty`).  The opened value is ``op(x, y) + S +
  (r - op(a, b))`` (``S`` about ``2^62``): a truncation of ``op(x, y)`` under the mask
  ``r* = r - op(a, b)``.  The provider, who knows ``a``, ``b`` and ``r``, deals the shares
  of ``floor(r* / D)`` and of the top bit of ``r*`` (one correction, to the last party).

So the provider sends the last party 16 bytes per output element (not 24: no share of
``c``), and no party waits for the provider before its second-round message: the last party
needs the correction only to finish the truncation.

Cost: 2 rounds; per output element of an equal-shape ``mul``, each party sends 16 bytes
(Beaver) + 8 bytes (truncation) to each other party.  Security: ``r`` is uniform on
Z/2^64, unknown to every party and independent of ``a`` and ``b`` (distinct labels), so
``r*`` is uniform too and the opened value is independent of ``x`` and ``y``, exactly as
in a separate truncation; ``eps`` and ``delta`` are masked by ``a`` and ``b`` as in
Beaver's protocol; the last party's correction is masked by the other parties' seeded
shares.  The error bound is the truncation's (:func:`~.truncation.truncation_error_bounds`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .beaver import BeaverParty
from .prg import OpId, Prg
from .protocol import PartyProtocol, Sequential, Transcript, run_local
from .provider import (
    BeaverTriple,
    BilinearKind,
    Correction,
    DealerStreams,
    PartyStreams,
    Shape,
    batched_bilinear,
    bilinear_output_shape,
    prgs_for_pairs,
)
from .truncation import TruncationParty
from .truncation_material import (
    TruncationMaterial,
    check_divisor,
    draw_truncation,
    take_truncation,
)

__all__ = [
    "deal_fixed_product", "deal_fixed_products", "fixed_product_party", "run_local_fixed_product"
]


def deal_fixed_products(
    prgs: Sequence[Prg | bytes],
    op_ids: Sequence[OpId],
    kind: BilinearKind,
    x_shape: Shape,
    y_shape: Shape,
    divisor: int,
) -> list[torch.Tensor]:
    """Provider: the last party's correction for ``op(x, y) / divisor`` (flat int64) for
    each op, dealt together: its shares of ``floor(r* / D)`` and of the top bit of
    ``r* = r - op(a, b)``."""
    check_divisor(divisor)
    out_shape = bilinear_output_shape(kind, x_shape, y_shape)
    dealer = DealerStreams(prgs, op_ids)
    a = dealer.random_arith("triple.a", x_shape)
    b = dealer.random_arith("triple.b", y_shape)
    unshared = batched_bilinear(kind, a, b, dealer.ops, x_shape, y_shape)
    draw_truncation(dealer, out_shape, divisor, unshared=unshared)
    return [c.view(torch.int64) for c in dealer.corrections()]


def deal_fixed_product(
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    kind: BilinearKind,
    x_shape: Shape,
    y_shape: Shape,
    divisor: int,
) -> torch.Tensor:
    """`deal_fixed_products` for one op."""
    return deal_fixed_products(prgs, [op_id], kind, x_shape, y_shape, divisor)[0]


def fixed_product_party(
    prg: Prg,
    op_id: OpId,
    party_index: int,
    n_parties: int,
    kind: BilinearKind,
    x_i: torch.Tensor,
    y_i: torch.Tensor,
    divisor: int,
    correction: Correction | None = None,
) -> PartyProtocol:
    """Party ``party_index``'s side of ``op(x, y) / divisor`` on its shares ``x_i, y_i``.

    The last party passes the provider's correction, or a function returning it: it is then
    awaited only when the truncation's opened value has arrived.
    """
    check_divisor(divisor)
    src = PartyStreams(prg, op_id, party_index, n_parties, correction)
    a = src.random_arith("triple.a", x_i.shape)
    b = src.random_arith("triple.b", y_i.shape)
    beaver = BeaverParty(kind, party_index, n_parties, x_i, y_i, BeaverTriple(a, b, None))
    drawn: list[TruncationMaterial] = []

    def draw_truncation_mask() -> None:  # while the Beaver round's messages travel
        if not drawn:
            drawn.append(take_truncation(src, bilinear_output_shape(kind, a.shape, b.shape),
                                         divisor))

    def truncate(product: torch.Tensor) -> PartyProtocol:
        draw_truncation_mask()
        return TruncationParty(party_index, n_parties, product, drawn[0], divisor)

    return Sequential(beaver, truncate, draw_truncation_mask)


def run_local_fixed_product(
    kind: BilinearKind,
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
