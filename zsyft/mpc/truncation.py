"""Provider-assisted division of shared values by a public divisor (fixed-point truncation).

After a fixed-point multiplication the product carries the scale twice and must be divided
by the scale ``D`` (e.g. 1000 or 2^16).  The local "each party shifts its share" trick of
SecureML (Mohassel & Zhang, IEEE S&P 2017) fails catastrophically with probability about
``|x| / 2^63`` per element in 2-party sharing (and is unusable with more parties).  The
protocol here never fails for ``|x| < 2^62 - D`` and works for any divisor and any number of
parties; it costs one round.  It opens ``x`` under a dealt mask ``r`` together with
shares of ``floor(r / D)``, like the masked-opening truncation of Catrina & Saxena
("Secure Computation with Fixed-Point Numbers", FC 2010) and the truncation pairs of ABY3
(Mohassel & Rindal, CCS 2018), and removes their failure case in the ring Z/2^64 by
correcting the wrap-around exactly with dealt shares of the mask's top bit (cf. the
Z/2^k truncation of Escudero et al., "Improved Primitives for MPC over Mixed
Arithmetic-Binary Circuits", CRYPTO 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .prg import OpId, Prg
from .protocol import PartyProtocol, Transcript, open_sum, run_local
from .provider import (
    as_prgs,
)
from .ring import RING_SIZE, check_int64, unsigned_floordiv, wrap
from .truncation_material import (
    TruncationMaterial,
    check_divisor,
    deal_truncation,
    party_truncation,
)

__all__ = [
    "OFFSET",
    "TruncationParty",
    "run_local_truncation",
    "truncation_constants",
    "truncation_error_bounds",
    "truncation_message_bytes",
]

OFFSET = 1 << 62
"""``x`` is shifted by about this much before masking, so that the shifted ``x`` lies in
``[0, 2^63)`` (the exact shift is :func:`truncation_constants`' third value, ``<= OFFSET``)."""


def truncation_constants(divisor: int) -> tuple[int, int, int]:
    """Public constants ``(floor(2^64 / D) mod 2^64, K, S)`` of the protocol.

    Party 0 adds ``S`` to ``x`` before masking and subtracts ``K`` after dividing. ``S - K*D``
    is ``round((2^64 mod D) / 4)``: the wrap correction subtracts ``2^64 mod D`` about a
    quarter of the time (see :func:`truncation_error_bounds`), and this cancels it on
    average, so the rounding error is centred on zero (a floor would lose half a unit per
    product, which adds up over a sum of many products and biases training). ``S`` is at
    most ``2^62`` and at least ``2^62 - D``, so every ``-2^62 + D <= x < 2^62`` is exact.
    """
    check_divisor(divisor)
    centring = round((RING_SIZE % divisor) / 4)
    k = (OFFSET - centring) // divisor
    return wrap(RING_SIZE // divisor), k, k * divisor + centring


def truncation_error_bounds(divisor: int) -> tuple[int, int]:
    """Exact bounds ``lo <= result * D - x <= hi`` (both within ``(-2D, 2D)``).

    With ``c = x + S + r``: ``result * D - x = S - K*D + (r mod D) - (c mod D)
    - w * (2^64 mod D)``; each remainder lies in ``[0, D - 1]``, hence the bounds.  The
    error in units of the result is thus below 2 (for base 10, D = 1000: in
    ``[-1.461, 1.153]``, mean 0), and below 1 for a power-of-two ``D``.
    """
    _, k, shift = truncation_constants(divisor)
    base = shift - k * divisor
    r64 = RING_SIZE % divisor
    return base - (divisor - 1) - r64, base + divisor - 1


def truncation_message_bytes(numel: int) -> int:
    """Bytes each party sends to each other party: one int64 per element."""
    return 8 * numel


class TruncationParty(PartyProtocol):
    """Party ``i`` of the division of a shared ``x`` (``|x| < 2^62 - D``) by a public ``D``.

    Material (see :func:`zsyft.mpc.truncation_material.deal_truncation`): additive shares of
    a uniform ``r`` in [0, 2^64), of ``floor(r / D)`` and of ``r_hi = r >> 63`` (unsigned
    readings).

    1. Party i broadcasts ``c_i = x_i + r_i`` (party 0 also adds ``S``, about ``2^62``): one
       round, 8 bytes per element to each other party.  All parties sum them into the public
       ``c = x + S + r mod 2^64`` and read it as unsigned.
    2. Since ``x' = x + S`` is in ``[0, 2^63)``, ``x' + r`` wraps past 2^64 exactly when
       ``r_hi = 1`` and ``c_hi = 0``: the wrap bit ``w = r_hi * (1 - c_hi)`` is linear in
       the shares of ``r_hi`` because ``c`` is public.  From ``x' = c + w 2^64 - r``,
       party i outputs ``w_i * floor(2^64 / D) - floor(r / D)_i``, and party 0 adds
       ``floor(c / D) - K`` with ``K ~ 2^62 / D`` (:func:`truncation_constants`).

    Error: ``|result - x / D| < 2``, centred on zero, for every ``-2^62 + D <= x < 2^62``
    and every mask (exact interval in :func:`truncation_error_bounds`); there are no failure
    cases.  The provider
    sends the last party one int64 ``(2, *shape)`` correction.

    Security: ``r`` is uniform on Z/2^64 and unknown to every party, so ``c`` is uniform and
    independent of ``x``; all other steps are local.
    """

    rounds = 1

    def __init__(
        self,
        party_index: int,
        n_parties: int,
        x_i: torch.Tensor,
        material: TruncationMaterial,
        divisor: int,
    ) -> None:
        super().__init__(party_index, n_parties)
        check_int64("x_i", x_i)
        if x_i.shape != material.r.shape:
            raise ValueError(
                f"input shape {tuple(x_i.shape)} does not match the material's "
                f"{tuple(material.r.shape)}"
            )
        self.q64, self.k, self.shift = truncation_constants(divisor)
        self.divisor = divisor
        self.x_i = x_i
        self.material = material

    def first_message(self) -> torch.Tensor:
        c_i = self.x_i + self.material.r
        if self.is_first:
            c_i += self.shift
        return c_i

    def prepare(self) -> None:
        self.material.arrive()  # the last party's correction, the others' seeded shares

    def receive(self, messages: Sequence[torch.Tensor]) -> None:
        self._check_messages(messages)
        c = open_sum(messages)
        # w_i = r_hi_i * (1 - c_hi): keep r_hi_i where c >= 0 (c >> 63 is then 0, else -1)
        wrapped = self.material.r_top & (c >> 63).bitwise_not_()
        z = wrapped.mul_(self.q64).sub_(self.material.r_div)
        if self.is_first:
            z += unsigned_floordiv(c, self.divisor) - self.k
        self._output = z
        return None


def run_local_truncation(
    x_shares: Sequence[torch.Tensor],
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    divisor: int,
    transcript: Transcript | None = None,
) -> list[torch.Tensor]:
    """Provider and all parties in this process: shares of ``x / divisor`` (see above)."""
    check_divisor(divisor)
    prgs = as_prgs(prgs)
    n = len(prgs)
    if len(x_shares) != n:
        raise ValueError("need one share per party")
    shape = x_shares[0].shape
    correction = deal_truncation(prgs, op_id, shape, divisor)
    parties = []
    for i in range(n):
        corr = correction if i == n - 1 else None
        material = party_truncation(prgs[i], op_id, i, n, shape, divisor, corr)
        parties.append(TruncationParty(i, n, x_shares[i], material, divisor))
    return run_local(parties, transcript)
