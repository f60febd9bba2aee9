"""The binary borrow tree of secure comparison (:mod:`.borrow_tree`), for large tensors.

Bit-sliced in one machine word per element: in the bit-reversal layout of
:func:`~.bitops.permute_bits` each level combines the high half of a word with its low half,
halving the width (64 -> 32 -> ... -> 1), so one level's ANDs run on every bit of every
element at once.  Five rounds where the radix-4 tree of :mod:`.lookahead` needs two, but
about half its work and material per element.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .bitops import from_bytes, packed_nbytes, permute_bits, split_halves, to_bytes
from .borrow_tree import BorrowTree
from .provider import DealerStreams, PartyStreams
from .ring import INT64_MAX, top_bit

__all__ = ["LEVEL_WIDTHS", "BinaryMaterial", "BinaryTree"]

LEVEL_WIDTHS = (32, 16, 8, 4, 2)
"""Word widths entering the binary tree's AND levels (the 64 -> 32 level is local)."""


@dataclass(frozen=True)
class BinaryMaterial:
    """A party's shares: ``R = permute_bits(r)`` (the bit-reversal layout of
    :mod:`.bitops`), ``R_hi & R_lo`` (bit 63 cleared), per AND level the masks ``a`` (W
    bits) and ``b`` (W/2) and the products ``a_hi & b`` and ``a_hi & a_lo`` (None where not
    needed), and for the zero test ``a_lo & r63``, ``a_hi & r63``, ``a_hi & a_lo & r63`` of
    the last level."""

    r_bits: torch.Tensor
    r_pairs: torch.Tensor
    levels: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], ...]
    zero: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


class BinaryTree(BorrowTree):
    """Bit-sliced binary tree: in the bit-reversal layout each level combines the high half
    of a word with its low half, halving the width (64 -> 32 -> ... -> 1).

    The first level is local thanks to dealt shares of ``R_hi & R_lo``; each AND level
    broadcasts ``P ^ a`` (W bits) and ``G_lo ^ b`` (W/2 bits), and both ANDs of the level
    (``P_hi & G_lo``, ``P_hi & P_lo``) reuse these openings: 6, 3, 1.5, 0.75 and 0.375 bytes
    per element.  The zero test's product with ``r63`` uses the last level's openings.
    """

    rounds = len(LEVEL_WIDTHS)

    @staticmethod
    def deal(d: DealerStreams, r: torch.Tensor, zero_test: bool) -> None:
        per_op = (r.numel() // d.ops,)
        bits = permute_bits(r)
        d.xor("cmp.r_bits", bits, 64)
        hi, lo = split_halves(bits & INT64_MAX, 64)
        d.xor("cmp.r_pairs", hi & lo, 32)
        a_hi = a_lo = None
        for j, width in enumerate(LEVEL_WIDTHS):
            a = d.random_xor(f"cmp.l{j}.a", per_op, width)
            b = d.random_xor(f"cmp.l{j}.b", per_op, width // 2)
            a_hi, a_lo = split_halves(a, width)
            d.xor(f"cmp.l{j}.c_pg", a_hi & b, width // 2)
            if j < len(LEVEL_WIDTHS) - 1 or zero_test:
                d.xor(f"cmp.l{j}.c_pp", a_hi & a_lo, width // 2)
        if zero_test:
            assert a_hi is not None and a_lo is not None
            r63 = top_bit(bits).to(torch.uint8)  # bit 63 is a fixed point of permute_bits
            d.xor("cmp.z1", a_lo & r63, 1)
            d.xor("cmp.z2", a_hi & r63, 1)
            d.xor("cmp.z3", a_hi & a_lo & r63, 1)

    @staticmethod
    def take(src: PartyStreams, n: int, zero_test: bool) -> BinaryMaterial:
        flat = (n,)
        r_bits = src.xor("cmp.r_bits", flat, 64)
        r_pairs = src.xor("cmp.r_pairs", flat, 32)
        levels = []
        for j, width in enumerate(LEVEL_WIDTHS):
            a = src.random_xor(f"cmp.l{j}.a", flat, width)
            b = src.random_xor(f"cmp.l{j}.b", flat, width // 2)
            c_pg = src.xor(f"cmp.l{j}.c_pg", flat, width // 2)
            c_pp = None
            if j < len(LEVEL_WIDTHS) - 1 or zero_test:
                c_pp = src.xor(f"cmp.l{j}.c_pp", flat, width // 2)
            levels.append((a, b, c_pg, c_pp))
        zero = None
        if zero_test:
            zero = (src.xor("cmp.z1", flat, 1), src.xor("cmp.z2", flat, 1),
                    src.xor("cmp.z3", flat, 1))
        return BinaryMaterial(r_bits, r_pairs, tuple(levels), zero)

    @staticmethod
    def message_bytes(n: int) -> list[int]:
        return [packed_nbytes(n, w) + packed_nbytes(n, w // 2) for w in LEVEL_WIDTHS]

    @staticmethod
    def correction_bytes(n: int, zero_test: bool) -> int:
        total = 8 * n + 4 * n  # R and its half products
        for j, width in enumerate(LEVEL_WIDTHS):
            products = 2 if j < len(LEVEL_WIDTHS) - 1 or zero_test else 1
            total += products * packed_nbytes(n, width // 2)
        return total + (3 * packed_nbytes(n, 1) if zero_test else 0)

    def __init__(self, material: BinaryMaterial, n: int, is_first: bool,
                 zero_test: bool) -> None:
        super().__init__(n, is_first, zero_test)
        self.m = material
        self._level = 0
        self._a_halves: tuple[torch.Tensor, torch.Tensor] | None = None  # the level's mask
        self._g_hi: torch.Tensor | None = None  # high half of G, split for the message

    @property
    def r63(self) -> torch.Tensor:
        return top_bit(self.m.r_bits).to(torch.uint8)

    def prepare(self) -> None:
        if self._level < len(LEVEL_WIDTHS) and self._a_halves is None:
            self._a_halves = split_halves(self.m.levels[self._level][0],
                                          LEVEL_WIDTHS[self._level])

    def _message(self) -> torch.Tensor:
        width, (a, b, _, _) = LEVEL_WIDTHS[self._level], self.m.levels[self._level]
        self._g_hi, g_lo = split_halves(self.G, width)
        return torch.cat([to_bytes(self.P ^ a, width), to_bytes(g_lo ^ b, width // 2)])

    def start(self, c: torch.Tensor) -> torch.Tensor:
        """Level 64 -> 32, local: pairs (2k+1, 2k) sit at (k+32, k) after permute_bits."""
        public = permute_bits(c) & INT64_MAX  # bit 63 cleared: neutral (g=0, p=1)
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
        return self._message()

    def step(self, opened: torch.Tensor) -> torch.Tensor | None:
        """Boolean Beaver ANDs ``P_hi & G_lo`` and ``P_hi & P_lo`` from the opened masks."""
        j = self._level
        width, (a, b, c_pg, c_pp) = LEVEL_WIDTHS[j], self.m.levels[j]
        split = packed_nbytes(self.n, width)
        d = from_bytes(opened[:split], width, self.n)  # P ^ a
        f = from_bytes(opened[split:], width // 2, self.n)  # G_lo ^ b
        d_hi, d_lo = split_halves(d, width)
        a_hi, a_lo = self._a_halves or split_halves(a, width)
        g_hi, self._a_halves, self._g_hi = self._g_hi, None, None
        assert g_hi is not None  # set by the level's message
        pg = (d_hi & b) ^ (f & a_hi) ^ c_pg
        if self.is_first:
            pg ^= d_hi & f
        self.G = g_hi ^ pg
        if c_pp is not None:
            pp = (d_hi & a_lo) ^ (d_lo & a_hi) ^ c_pp
            if self.is_first:
                pp ^= d_hi & d_lo
            self.P = pp
        self._level = j + 1
        if self._level < len(LEVEL_WIDTHS):
            return self._message()
        self.generate = self.G
        if self.zero_test:
            assert self.m.zero is not None
            z1, z2, z3 = self.m.zero
            r63 = self.r63
            # (P_hi & P_lo) r63 from the last openings: (d_hi ^ a_hi)(d_lo ^ a_lo) r63
            self.propagate = self.P
            self.zero_product = (d_hi & d_lo & r63) ^ (d_hi & z1) ^ (d_lo & z2) ^ z3
        return None
