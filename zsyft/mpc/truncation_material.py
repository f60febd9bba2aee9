"""The provider's material for truncation: shares of a mask ``r``, of ``floor(r / D)`` and
of the top bit of ``r`` (see :mod:`zsyft.mpc.truncation` for the protocol that uses them,
and :mod:`zsyft.mpc.provider` for how material is dealt: seeded shares, and one correction
for the last party)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .prg import OpId, Prg
from .provider import Correction, DealerStreams, PartyStreams, Shape
from .ring import top_bit, unsigned_floordiv

__all__ = [
    "MAX_DIVISOR",
    "TruncationMaterial",
    "check_divisor",
    "deal_truncation",
    "deal_truncations",
    "draw_truncation",
    "party_truncation",
    "take_truncation",
]

MAX_DIVISOR = 1 << 62
"""Largest supported truncation divisor."""


def check_divisor(divisor: int) -> None:
    """Raise ``ValueError`` unless ``divisor`` is an integer in ``[1, 2^62]``."""
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise ValueError(f"divisor must be an integer, got {divisor!r}")
    if not 1 <= divisor <= MAX_DIVISOR:
        raise ValueError(f"divisor must be in [1, 2^62], got {divisor}")


class TruncationMaterial:
    """One party's additive shares of ``r``, ``floor(r / D)`` and ``r >> 63`` (r unsigned).

    ``r`` masks the party's first message; ``r_div`` and ``r_top`` are needed only when the
    opened value comes back.  For the last party they are the provider's correction, so they
    may be given as ``late``, a function returning both: it is called on first use, and the
    party sends its masked value without waiting for the provider.
    """

    __slots__ = ("_late", "_r_div", "_r_top", "r")

    def __init__(
        self,
        r: torch.Tensor,
        r_div: torch.Tensor | None = None,
        r_top: torch.Tensor | None = None,
        *,
        late: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        if (late is None) == (r_div is None or r_top is None):
            raise ValueError("give either r_div and r_top, or late (a function returning both)")
        self.r, self._r_div, self._r_top, self._late = r, r_div, r_top, late

    def arrive(self) -> None:
        """Take ``r_div`` and ``r_top`` now (waiting for a late correction)."""
        if self._late is not None:
            self._r_div, self._r_top = self._late()
            self._late = None

    @property
    def r_div(self) -> torch.Tensor:
        self.arrive()
        assert self._r_div is not None
        return self._r_div

    @property
    def r_top(self) -> torch.Tensor:
        self.arrive()
        assert self._r_top is not None
        return self._r_top


def draw_truncation(
    dealer: DealerStreams, shape: Shape, divisor: int, unshared: torch.Tensor | None = None
) -> None:
    """Provider: add the corrections ``(r_div, r_top)`` of a truncation to ``dealer``.

    ``unshared`` is a value the parties' shares of the input lack (they hold shares of
    ``x - unshared``): the mask the opened value really carries is then ``r - unshared``,
    and ``r_div`` and ``r_top`` are dealt for that mask instead of ``r``.
    """
    check_divisor(divisor)
    r = dealer.random_arith("trunc.r", shape)
    if unshared is not None:
        r -= unshared.reshape(-1)
    dealer.arith("trunc.r_div", unsigned_floordiv(r, divisor))
    dealer.arith("trunc.r_top", top_bit(r))


def deal_truncations(
    prgs: Sequence[Prg | bytes], op_ids: Sequence[OpId], shape: Shape, divisor: int
) -> list[torch.Tensor]:
    """Provider: corrections ``(r_div, r_top)`` for the last party, int64 ``(2, *shape)``,
    for each op (dealt together)."""
    dealer = DealerStreams(prgs, op_ids)
    draw_truncation(dealer, shape, divisor)
    return [c.view(torch.int64).reshape(2, *shape) for c in dealer.corrections()]


def deal_truncation(
    prgs: Sequence[Prg | bytes], op_id: OpId, shape: Shape, divisor: int
) -> torch.Tensor:
    """`deal_truncations` for one op."""
    return deal_truncations(prgs, [op_id], shape, divisor)[0]


def take_truncation(src: PartyStreams, shape: Shape, divisor: int) -> TruncationMaterial:
    """Party: its truncation material from ``src`` (the divisor is public metadata).

    ``r_div`` and ``r_top`` are taken (for the last party: the provider's correction
    awaited) only when first used, and ``src`` is then checked to be used up.
    """
    check_divisor(divisor)
    r = src.random_arith("trunc.r", shape)

    def late() -> tuple[torch.Tensor, torch.Tensor]:
        r_div, r_top = src.arith("trunc.r_div", shape), src.arith("trunc.r_top", shape)
        src.finish()
        return r_div, r_top

    return TruncationMaterial(r, late=late)


def party_truncation(
    prg: Prg,
    op_id: OpId,
    party_index: int,
    n_parties: int,
    shape: Shape,
    divisor: int,
    correction: Correction | None = None,
) -> TruncationMaterial:
    """Party ``party_index``'s truncation material (the divisor is public metadata); the last
    party passes the provider's correction, or a function that waits for it."""
    src = PartyStreams(prg, op_id, party_index, n_parties, correction)
    return take_truncation(src, shape, divisor)
