"""Secure comparison, ReLU and ReLU backward on additively shared int64 values.

Protocol: dealer-assisted *masked comparison* with a *carry-lookahead borrow circuit* on
XOR shares.  The input is opened under a uniform mask as in Rabbit (Makri, Rotaru,
Vercauteren, Wouters, "Rabbit: Efficient Comparison for Secure Multi-Party Computation",
FC 2021); the remaining comparison between the public masked value and the XOR-shared
mask bits is a parallel-prefix borrow computation (the generate/propagate operator of
Kogge-Stone / carry-lookahead adders) evaluated with dealt boolean Beaver triples, as in
ABY (Demmler, Schneider, Zohner, NDSS 2015) and CrypTen (Knott et al., NeurIPS 2021).
Results are exact for every 64-bit input: there is no statistical slack and no failure
probability.

Sign of ``v`` in Z/2^64 (``v = x``, or ``v = x - y`` for binary comparisons): with
``c = v + r`` public, ``v = c - r`` and

    msb(v) = c_63 XOR r_63 XOR [c mod 2^63 < r mod 2^63]

(the bracket is the borrow into bit 63 of ``c - r``).  The borrow is the group-generate
bit of the 63-bit subtraction, with per-bit generate ``g = ~c & r`` and propagate
``p = ~(c XOR r)`` (both linear in the XOR shares of ``r`` since ``c`` is public), and
groups combine as ``(G, P) = (G_hi ^ (P_hi & G_lo), P_hi & P_lo)`` (``G`` and ``P`` of
a group are never both 1, so OR is XOR).  Only the top group is needed, so the circuit is a
binary tree rather than a full prefix: in the bit-reversal layout of
:func:`~zsyft.mpc.bitops.permute_bits` each level combines the high half of a word with
its low half, halving the word width (64 -> 32 -> ... -> 1).  The first level is local
thanks to dealt shares of ``R_hi & R_lo``; the other five cost one round each.  The same
tree yields the group-propagate bit ``[c mod 2^63 == r mod 2^63]``; combined with bit 63
(via dealt products with ``r_63``, no extra round) it gives ``[v == 0]`` exactly, hence
``[v > 0] = NOT msb(v) XOR [v == 0]`` - correct even for ``v = INT64_MIN``, where the
usual ``msb(-v)`` is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .bitops import from_bytes, packed_nbytes, permute_bits, split_halves, to_bytes
from .comparison_material import (
    LEVEL_WIDTHS,
    ComparisonMaterial,
    PartyComparisonMaterial,
    comparison_spec,
    deal_comparison,
    party_comparison,
)
from .prg import OpId, Prg
from .protocol import PartyProtocol, Transcript, open_sum, open_xor, run_local
from .provider import as_prgs
from .ring import INT64_MAX, check_int64, top_bit

__all__ = [
    "ComparisonParty",
    "comparison_message_bytes",
    "run_local_comparison",
    "run_local_gt",
    "run_local_lt",
    "run_local_ltz",
    "run_local_relu",
    "run_local_relu_backward",
]

_LAST = len(LEVEL_WIDTHS) - 1


class ComparisonParty(PartyProtocol):
    """Party ``i`` of comparison ``name`` (see ``comparison_material.COMPARISONS``).

    ``inputs``: ``(x_i,)`` for ``ltz gez gtz lez eqz relu``; ``(x_i, y_i)`` for
    ``lt ge gt le eq`` (comparing ``x - y`` with 0); ``(grad_i, x_i)`` for
    ``relu_backward``.  The output is an int64 share: of the 0/1 predicate, of
    ``relu(x) = x * [x >= 0]``, or of ``grad * [x > 0]``; ``relu_with_mask`` outputs
    shares of ``relu(x) = x * [x > 0]`` and of the mask ``[x > 0]`` (:meth:`outputs`).

    Steps (every message is broadcast to the other ``n - 1`` parties):

    1. Open ``c = v + r`` (int64; for ``relu_backward`` also ``eps = grad - m``):
       8 (16) bytes per element.  Locally: ``C = permute_bits(c)``, per-bit ``g``/``p``
       and the first tree level (64 -> 32 bits) from the dealt ``R_hi & R_lo``.
    2. - 6. One AND level per round for word widths W = 32, 16, 8, 4, 2: broadcast
       ``P XOR a`` (W bits) and ``G_lo XOR b`` (W/2 bits); both ANDs of the level
       (``P_hi & G_lo`` and ``P_hi & P_lo``) reuse these two openings.  Bytes per
       element: 6, 3, 1.5, 0.75, 0.375 (narrow words are bit-packed).
    7. With the XOR-shared result bit ``s``, open ``e = s XOR t`` for the dealt random bit
       ``t`` (1 bit per element).  Then ``[s] = e + (1 - 2e) [t]`` arithmetically, and
       a product with a shared ``y`` is ``e [y] + (1 - 2e) [y t]`` where ``[y t]`` comes
       from the round-1 opening: ``c [t] - [r t]`` for ReLU (``y = v``: the comparison
       mask doubles as Beaver mask), ``eps [t] + [m t]`` otherwise.

    Cost: 7 rounds; per element and per other party 19.75 bytes (``ltz``, ``lt``,
    ``relu`` ...) or 27.75 bytes (``relu_backward``, which also opens ``eps``).  ReLU needs
    no separate Beaver round.  Provider: 28-36 bytes per element to the last party.

    Security (semi-honest parties, non-colluding provider): every opened value is a secret
    XORed or added with a fresh uniform mask that no party knows (``r``, the level masks
    ``a``/``b``, ``t``, ``m``), so each party's view is uniform and independent of the
    inputs; all other operations are local.
    """

    rounds = 2 + len(LEVEL_WIDTHS)

    def __init__(
        self,
        name: str,
        party_index: int,
        n_parties: int,
        inputs: Sequence[torch.Tensor],
        material: ComparisonMaterial | PartyComparisonMaterial,
    ) -> None:
        super().__init__(party_index, n_parties)
        self.spec = spec = comparison_spec(name)
        if len(inputs) != spec.arity:
            raise ValueError(f"{name} takes {spec.arity} input(s), got {len(inputs)}")
        for k, t in enumerate(inputs):
            check_int64(f"inputs[{k}]", t)
            if t.shape != inputs[0].shape:
                raise ValueError("comparison inputs must have the same shape")
        self.shape = inputs[0].shape
        if spec.multiply == "other":
            self.y, v = inputs[0].reshape(-1), inputs[1].reshape(-1)
        else:
            v = inputs[0] - inputs[1] if spec.arity == 2 else inputs[0]
            self.y = None
        self.v = v.reshape(-1)
        self.n = self.v.numel()
        if material.r.numel() != self.n:
            raise ValueError("material was dealt for a different number of elements")
        self._first = material  # r and mask, for the first message
        self._m = material if isinstance(material, ComparisonMaterial) else None
        self._stage = 0
        self._mask: torch.Tensor | None = None
        self._a_halves: tuple[torch.Tensor, torch.Tensor] | None = None  # this level's mask
        self._g_hi: torch.Tensor | None = None  # high half of G, split for the level message

    @property
    def m(self) -> ComparisonMaterial:
        """All of the material (derived from a `PartyComparisonMaterial` on first use)."""
        if self._m is None:
            assert isinstance(self._first, PartyComparisonMaterial)
            self._m = self._first.complete()
        return self._m

    # ---------------------------------------------------------------- messages
    def first_message(self) -> torch.Tensor:
        c_i = self.v + self._first.r
        if self.y is None:
            return c_i
        assert self._first.mask is not None
        return torch.cat([c_i, self.y - self._first.mask])

    def prepare(self) -> None:
        """The rest of the material once the first message is out; before an AND level, the
        halves of its mask (neither depends on the coming messages)."""
        level = self._stage - 1
        if 0 <= level < len(LEVEL_WIDTHS):
            if self._a_halves is None:
                self._a_halves = split_halves(self.m.levels[level].a, LEVEL_WIDTHS[level])
        else:
            self.m  # noqa: B018 - derives the material now

    def _level_message(self, j: int) -> torch.Tensor:
        width, lvl = LEVEL_WIDTHS[j], self.m.levels[j]
        self._g_hi, g_lo = split_halves(self.G, width)
        return torch.cat([to_bytes(self.P ^ lvl.a, width), to_bytes(g_lo ^ lvl.b, width // 2)])

    def receive(self, messages: Sequence[torch.Tensor]) -> torch.Tensor | None:
        self._check_messages(messages)
        stage, self._stage = self._stage, self._stage + 1
        if stage == 0:
            opened = open_sum(messages)
            self.c, self.eps = opened[: self.n], opened[self.n :]
            self._first_level()
            return self._level_message(0)
        if stage <= len(LEVEL_WIDTHS):
            self._and_level(stage - 1, open_xor(messages))
            if stage - 1 < _LAST:
                return self._level_message(stage)
            return to_bytes(self._result_bit() ^ self.m.t_bit, 1)
        if stage == len(LEVEL_WIDTHS) + 1:
            self._finish(from_bytes(open_xor(messages), 1, self.n).to(torch.bool))
            return None
        raise RuntimeError("comparison already finished")

    # ---------------------------------------------------------------- local steps
    def _first_level(self) -> None:
        """Level 64 -> 32, local: pairs (2k+1, 2k) sit at (k+32, k) after permute_bits."""
        public = permute_bits(self.c) & INT64_MAX  # bit 63 cleared: neutral (g=0, p=1)
        n_hi, n_lo = split_halves(~public, 64)
        r_hi, r_lo = split_halves(self.m.r_bits & INT64_MAX, 64)
        nr = n_hi & r_lo
        q = self.m.r_pairs  # shares of R_hi & R_lo
        # G = g_hi ^ p_hi g_lo with g = ~c r, p = ~c ^ r:  p_hi g_lo = n_lo (n_hi r_lo ^ r_hi r_lo)
        self.G = (n_hi & r_hi) ^ (n_lo & (nr ^ q))
        # P = p_hi p_lo = n_hi n_lo ^ n_hi r_lo ^ r_hi n_lo ^ r_hi r_lo
        self.P = nr ^ (n_lo & r_hi) ^ q
        if self.is_first:
            self.P ^= n_hi & n_lo

    def _and_level(self, j: int, opened: torch.Tensor) -> None:
        """Boolean Beaver ANDs ``P_hi & G_lo`` and ``P_hi & P_lo`` from the opened masks."""
        width, lvl = LEVEL_WIDTHS[j], self.m.levels[j]
        split = packed_nbytes(self.n, width)
        d = from_bytes(opened[:split], width, self.n)  # P ^ a
        f = from_bytes(opened[split:], width // 2, self.n)  # G_lo ^ b
        d_hi, d_lo = split_halves(d, width)
        a_hi, a_lo = self._a_halves or split_halves(lvl.a, width)
        g_hi, self._a_halves, self._g_hi = self._g_hi, None, None
        assert g_hi is not None  # set by the level's message
        pg = (d_hi & lvl.b) ^ (f & a_hi) ^ lvl.c_pg
        if self.is_first:
            pg ^= d_hi & f
        self.G = g_hi ^ pg
        if lvl.c_pp is not None:
            pp = (d_hi & a_lo) ^ (d_lo & a_hi) ^ lvl.c_pp
            if self.is_first:
                pp ^= d_hi & d_lo
            self.P = pp
        if j == _LAST:
            self._d_last = (d_hi, d_lo)

    def _result_bit(self) -> torch.Tensor:
        """XOR share of the predicate bit (uint8 0/1 per element)."""
        r63 = top_bit(self.m.r_bits).to(torch.uint8)
        c63 = top_bit(self.c).to(torch.uint8)
        first = 1 if self.is_first else 0
        msb = self.G ^ r63 ^ (c63 if self.is_first else 0)
        pred = self.spec.predicate
        if pred == "ltz":
            return msb
        if pred == "gez":
            return msb ^ first
        # [v == 0] = [low 63 bits equal] & (~c63 ^ r63); the product with the dealt r63
        # uses the last level's openings: (d_hi^a_hi)(d_lo^a_lo) r63.
        assert self.m.zero is not None
        z1, z2, z3 = self.m.zero
        d_hi, d_lo = self._d_last
        eq_r63 = (d_hi & d_lo & r63) ^ (d_hi & z1) ^ (d_lo & z2) ^ z3
        zero = ((c63 ^ 1) & self.P) ^ eq_r63
        if pred == "eqz":
            return zero
        if pred == "gtz":
            return msb ^ zero ^ first
        return msb ^ zero  # lez

    def _finish(self, e: torch.Tensor) -> None:
        """Bit-to-arithmetic conversion (and product) from the opened ``e = s ^ t``.

        ``s = e + (1 - 2e) t``, so ``[s] = [t]`` where ``e = 0`` and ``1 - [t]`` (party 0;
        ``-[t]`` for the others) where ``e = 1``; likewise ``[y s] = [y t]`` or
        ``[y] - [y t]``.
        """
        m = self.m
        bit = None
        if self.spec.multiply == "none" or self.spec.keeps_mask:
            flipped = (1 - m.t) if self.is_first else -m.t
            bit = torch.where(e, flipped, m.t)
        if self.spec.multiply == "none":
            out = bit
        else:
            assert m.product is not None
            if self.spec.multiply == "input":
                yt = self.c * m.t  # v t = (c - r) t
                yt -= m.product
                y = self.v
            else:
                assert self.y is not None
                yt = self.eps * m.t  # y t = (eps + m) t
                yt += m.product
                y = self.y
            out = torch.where(e, y - yt, yt)
        self._output = out.reshape(self.shape)
        if self.spec.keeps_mask:
            self._mask = bit.reshape(self.shape)

    def outputs(self) -> list[torch.Tensor]:
        """The result share and, for ``keeps_mask`` specs, the share of the 0/1 mask."""
        if self._mask is not None:
            return [self.output(), self._mask]
        return [self.output()]


def comparison_message_bytes(name: str, numel: int) -> list[int]:
    """Bytes each party sends to each other party in every round, for ``numel`` elements."""
    spec = comparison_spec(name)
    first = 8 * numel * (2 if spec.multiply == "other" else 1)
    levels = [packed_nbytes(numel, w) + packed_nbytes(numel, w // 2) for w in LEVEL_WIDTHS]
    return [first, *levels, packed_nbytes(numel, 1)]


def run_local_comparison(
    name: str,
    inputs: Sequence[Sequence[torch.Tensor]],
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    transcript: Transcript | None = None,
) -> list[torch.Tensor]:
    """Provider and all parties in this process; ``inputs[k][i]``: party i's share of input k."""
    prgs = as_prgs(prgs)
    n = len(prgs)
    if any(len(shares) != n for shares in inputs):
        raise ValueError("need one share of every input per party")
    shape = inputs[0][0].shape
    correction = deal_comparison(prgs, op_id, name, shape)
    parties = []
    for i in range(n):
        corr = correction if i == n - 1 else None
        material = party_comparison(prgs[i], op_id, i, n, name, shape, corr)
        parties.append(ComparisonParty(name, i, n, [s[i] for s in inputs], material))
    return run_local(parties, transcript)


Shares = Sequence[torch.Tensor]


def run_local_ltz(
    x_shares: Shares, prgs: Sequence[Prg | bytes], op_id: OpId, transcript: Transcript | None = None
) -> list[torch.Tensor]:
    """Shares of ``[x < 0]`` (the sign bit)."""
    return run_local_comparison("ltz", [x_shares], prgs, op_id, transcript)


def run_local_lt(
    x_shares: Shares,
    y_shares: Shares,
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    transcript: Transcript | None = None,
) -> list[torch.Tensor]:
    """Shares of ``[x < y]`` (exact when ``x - y`` does not overflow int64)."""
    return run_local_comparison("lt", [x_shares, y_shares], prgs, op_id, transcript)


def run_local_gt(
    x_shares: Shares,
    y_shares: Shares,
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    transcript: Transcript | None = None,
) -> list[torch.Tensor]:
    """Shares of ``[x > y]`` (exact when ``x - y`` does not overflow int64)."""
    return run_local_comparison("gt", [x_shares, y_shares], prgs, op_id, transcript)


def run_local_relu(
    x_shares: Shares, prgs: Sequence[Prg | bytes], op_id: OpId, transcript: Transcript | None = None
) -> list[torch.Tensor]:
    """Shares of ``relu(x) = x * [x >= 0]``."""
    return run_local_comparison("relu", [x_shares], prgs, op_id, transcript)


def run_local_relu_backward(
    grad_shares: Shares,
    x_shares: Shares,
    prgs: Sequence[Prg | bytes],
    op_id: OpId,
    transcript: Transcript | None = None,
) -> list[torch.Tensor]:
    """Shares of ``grad * [x > 0]`` (``threshold_backward`` semantics: 0 where x <= 0)."""
    return run_local_comparison("relu_backward", [grad_shares, x_shares], prgs, op_id, transcript)
