"""The radix-4 borrow tree of secure comparison (:mod:`.borrow_tree`), for small tensors.

:class:`RadixFourTree` evaluates the first level locally on four-bit chunks, then two
lookahead levels of four groups per round; this module's first part is one such level.

A comparison of two 63-bit numbers ``C`` (public) and ``R`` (secret) reduces to a tree over
digit groups: each group has a *generate* bit ``G = [C_group < R_group]`` and a *propagate*
bit ``P = [C_group == R_group]``, and four adjacent groups (member 3 the most significant)
combine into

    G' = G3 ^ P3 G2 ^ P3 P2 G1 ^ P3 P2 P1 G0        P' = P3 P2 P1 P0

(``G`` and ``P`` of a group are never both 1, so the OR of the terms is their XOR).  Two
such levels take 16 groups to one in two rounds, where a binary tree needs four.

Each level opens its inputs under fresh dealt XOR masks, ``P ^ a`` and ``G ^ b``.  A
product of masked bits then expands over the subsets ``S`` of its factors,

    prod_j (u_j ^ m_j) = XOR_S  (prod_{j not in S} u_j) & m_S

with ``u`` public and ``m_S = prod_{j in S} m_j``: the empty product is public (party 0
adds it), a single mask is the party's own share, and the provider deals XOR shares of
every larger product of masks.  ``G3`` enters linearly (its own share, not the opened
value).  A factor with no public part (the dealt top bit ``r63`` of the comparison mask,
for the zero test) keeps only the subsets that contain it.

Words, not bits: a group's four ``P`` bits are one nibble, its ``G`` bits another, and the
opened byte ``(P ^ a) | (G ^ b) << 4`` is the whole public side of the group.  A party's
shares of everything a term can use (the constant, its masks, the dealt products) are the
bits of one int64 *share word*, so each output of a level is the parity of ``share word &
C[opened byte]``, with ``C`` a 256-row table of :class:`LevelPlan`: a few whole-tensor ops
per level, whatever the number of elements and terms.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from functools import cache

import torch

from .bitops import dtype_for_width, packed_nbytes
from .borrow_tree import BorrowTree
from .provider import DealerStreams, PartyStreams
from .ring import INT64_MAX, top_bit

__all__ = [
    "LevelPlan", "RadixFourMaterial", "RadixFourTree", "chunks", "combine", "level_plan",
    "masks_word", "share_word",
]

R63 = 8
"""Variable of the mask's top bit; variables 0..3 are ``P0..P3``, 4..7 ``G0..G3``."""
PRODUCTS_AT = 10
"""Share word layout: bit 0 the constant, bit ``1 + v`` the mask of variable ``v``, then
the dealt products from this bit on."""

_GENERATE = ((3, 6), (3, 2, 5), (3, 2, 1, 4))  # P3 G2, P3 P2 G1, P3 P2 P1 G0
_PROPAGATE = ((3, 2, 1, 0),)
_TOP_EQUAL = ((3, 2, 1, 0, R63),)  # P' r63: the zero test's product with the mask's top bit


def _parity16() -> torch.Tensor:
    table = torch.zeros(1, dtype=torch.uint8)
    for _ in range(16):
        table = torch.cat([table, table ^ 1])
    return table


_PARITY16 = _parity16()
"""Entry w: the parity of the 16-bit word w."""


def _parity_(words: torch.Tensor) -> torch.Tensor:
    """The parity of each int64 word's bits, as uint8 0/1 (``words`` is overwritten)."""
    words ^= words >> 32
    words ^= words >> 16
    words &= 0xFFFF
    return _PARITY16.index_select(0, words.reshape(-1)).view(words.shape)


@dataclass(frozen=True)
class LevelPlan:
    """The terms of one level, as lookup tables."""

    outputs: tuple[str, ...]
    """``G`` and ``P``, or ``G`` alone (a last level without zero test), plus ``Z`` (the
    top ``P`` times ``r63``) for the zero test."""
    coefficients: torch.Tensor
    """(256, outputs) int64: for an opened byte, the share word bits each output XORs."""
    products: tuple[tuple[int, ...], ...]
    """The dealt mask products (sets of two or more variables), bit k of the product word."""
    product_table: torch.Tensor
    """(512,) int64: the product word for each pattern of the nine mask bits."""
    zero_test: bool

    @property
    def product_width(self) -> int:
        """Bits of the word the products are dealt in (8, 16, 32 or 64)."""
        return next(w for w in (8, 16, 32, 64) if len(self.products) <= w)


@cache
def level_plan(propagate: bool, zero_test: bool) -> LevelPlan:
    """The plan of a level computing ``G`` (and ``P`` if ``propagate``; ``Z`` if
    ``zero_test``, which needs ``P`` as well)."""
    groups = [("G", _GENERATE)]
    if propagate or zero_test:
        groups.append(("P", _PROPAGATE))
    if zero_test:
        groups.append(("Z", _TOP_EQUAL))
    products: list[tuple[int, ...]] = []
    coefficients = torch.zeros(256, len(groups), dtype=torch.int64)
    for out, (_, monomials) in enumerate(groups):
        for factors in monomials:
            for size in range(len(factors) + 1):
                for subset in itertools.combinations(sorted(factors), size):
                    rest = [f for f in factors if f not in subset]
                    if R63 in rest:  # its public part is 0: the term vanishes
                        continue
                    if len(subset) <= 1:
                        bit = 0 if not subset else 1 + subset[0]
                    else:
                        if subset not in products:
                            products.append(subset)
                        bit = PRODUCTS_AT + products.index(subset)
                    needed = sum(1 << f for f in rest)
                    for byte in range(256):  # the term counts where its public part is 1
                        if byte & needed == needed:
                            coefficients[byte, out] ^= 1 << bit
    table = torch.tensor([
        sum(1 << k for k, p in enumerate(products) if all(m >> v & 1 for v in p))
        for m in range(512)
    ], dtype=torch.int64)
    return LevelPlan(tuple(name for name, _ in groups), coefficients, tuple(products), table,
                     zero_test)


def masks_word(a: torch.Tensor, b: torch.Tensor, r63: torch.Tensor | None) -> torch.Tensor:
    """The nine mask bits of each group as one int64 (``a`` and ``b`` nibbles, ``r63``)."""
    word = a.to(torch.int64) | (b.to(torch.int64) << 4)
    return word if r63 is None else word | (r63.to(torch.int64) << R63)


def share_word(constant: int, masks: torch.Tensor, products: torch.Tensor) -> torch.Tensor:
    """A party's share word: the constant (1 at party 0), its mask shares (`masks_word`) and
    its shares of the dealt products."""
    word = (masks << 1) | (products.to(torch.int64) << PRODUCTS_AT)
    return word | constant if constant else word


def combine(
    plan: LevelPlan, opened: torch.Tensor, shares: torch.Tensor
) -> dict[str, torch.Tensor]:
    """A party's XOR shares (uint8 0/1, the shape of ``opened``) of the plan's outputs, from
    the opened bytes and its share words (``G`` still lacks the party's share of ``G3``)."""
    rows = plan.coefficients.index_select(0, opened.reshape(-1).to(torch.int32))
    terms = rows.view(*opened.shape, len(plan.outputs))
    terms &= shares.unsqueeze(-1)
    bits = _parity_(terms)
    return {name: bits[..., k] for k, name in enumerate(plan.outputs)}


# ----------------------------------------------------------------------------- the tree

CHUNKS = 16
"""Four-bit chunks of a 63-bit value (the top one holds bits 60..62)."""
LEVEL_GROUPS = (4, 1)
"""Groups of four coming out of each interactive lookahead level: 16 chunks -> 4 -> 1."""
_BIG_ENDIAN = sys.byteorder == "big"


def chunks(low: torch.Tensor) -> torch.Tensor:
    """The 16 four-bit chunks (uint8, least significant first) of each int64 of flat
    ``low``: ``(n, 16)``."""
    octets = low.contiguous().view(torch.uint8).view(-1, 8)
    if _BIG_ENDIAN:
        octets = octets.flip(-1)
    return torch.stack([octets & 15, octets >> 4], dim=-1).view(-1, CHUNKS)


def level_plans(zero_test: bool) -> tuple[LevelPlan, ...]:
    """The lookahead plan of each interactive level: the last one computes the propagate
    bit (and its product with ``r63``) only for the zero test."""
    last = len(LEVEL_GROUPS) - 1
    return tuple(
        level_plan(propagate=j < last, zero_test=zero_test and j == last)
        for j in range(len(LEVEL_GROUPS))
    )


def _nibbles(bits: torch.Tensor, groups: int) -> torch.Tensor:
    """0/1 bits ``(..., 4 * groups)`` as one nibble per group of four: ``(..., groups)``
    (uint8; bitwise ops on strided views, as a sum over a short last axis is slow)."""
    b = bits.to(torch.uint8).unflatten(-1, (groups, 4))
    return b[..., 0] | (b[..., 1] << 1) | (b[..., 2] << 2) | (b[..., 3] << 3)


@dataclass(frozen=True)
class RadixFourMaterial:
    """A party's shares: ``below`` (n, 16) int16 thermometer words ``(1 << r_j) - 1`` of
    the chunks ``r_j`` (bit k is ``[k < r_j]``), ``r63``, and per level the nibble masks
    ``a`` (of the ``P`` bits) and ``b`` (of the ``G`` bits) and the words of dealt mask
    products (bit k: ``plan.products[k]``), each ``(n, groups)``."""

    below: torch.Tensor
    r63: torch.Tensor
    levels: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...]


class RadixFourTree(BorrowTree):
    """First level local on four-bit chunks, then two radix-4 lookahead levels.

    Chunk ``j``'s borrow bits are linear in the shares of the thermometer word
    ``T = (1 << r_j) - 1`` since ``c_j`` is public: ``G_j`` is bit ``c_j`` of ``T`` and
    ``P_j`` bit ``c_j`` of the one-hot word ``T ^ (T << 1) ^ 1``.  Each level then
    broadcasts one byte per group of four, ``(P ^ a) | (G ^ b) << 4`` (4 and 1 bytes per
    element).
    """

    rounds = len(LEVEL_GROUPS)

    @staticmethod
    def deal(d: DealerStreams, r: torch.Tensor, zero_test: bool) -> None:
        total = r.numel()
        below = torch.bitwise_left_shift(1, chunks(r & INT64_MAX).to(torch.int32)) - 1
        d.xor("cmp.below", below.to(torch.int16).reshape(-1), 16)
        r63 = top_bit(r).to(torch.uint8)
        d.xor("cmp.r63", r63, 1)
        per_op = total // d.ops
        for j, (groups, plan) in enumerate(zip(LEVEL_GROUPS, level_plans(zero_test),
                                               strict=True)):
            a = d.random_xor(f"cmp.l{j}.a", (per_op * groups,), 4).view(total, groups)
            b = d.random_xor(f"cmp.l{j}.b", (per_op * groups,), 4).view(total, groups)
            top = r63.view(total, 1) if plan.zero_test else None
            products = plan.product_table[masks_word(a, b, top)]
            width = plan.product_width
            d.xor(f"cmp.l{j}.products", products.to(dtype_for_width(width)).reshape(-1), width)

    @staticmethod
    def take(src: PartyStreams, n: int, zero_test: bool) -> RadixFourMaterial:
        below = src.xor("cmp.below", (n * CHUNKS,), 16).view(n, CHUNKS)
        r63 = src.xor("cmp.r63", (n,), 1)
        levels = []
        for j, (groups, plan) in enumerate(zip(LEVEL_GROUPS, level_plans(zero_test),
                                               strict=True)):
            a = src.random_xor(f"cmp.l{j}.a", (n * groups,), 4).view(n, groups)
            b = src.random_xor(f"cmp.l{j}.b", (n * groups,), 4).view(n, groups)
            products = src.xor(f"cmp.l{j}.products", (n * groups,), plan.product_width)
            levels.append((a, b, products.view(n, groups)))
        return RadixFourMaterial(below, r63, tuple(levels))

    @staticmethod
    def message_bytes(n: int) -> list[int]:
        return [n * groups for groups in LEVEL_GROUPS]  # a byte per group of four

    @staticmethod
    def correction_bytes(n: int, zero_test: bool) -> int:
        total = 2 * CHUNKS * n + packed_nbytes(n, 1)  # thermometer words, r63
        for groups, plan in zip(LEVEL_GROUPS, level_plans(zero_test), strict=True):
            total += n * groups * plan.product_width // 8  # a word of products per group
        return total

    def __init__(self, material: RadixFourMaterial, n: int, is_first: bool,
                 zero_test: bool) -> None:
        super().__init__(n, is_first, zero_test)
        self.m = material
        self._plans = level_plans(zero_test)
        self._level = 0
        self._shares: torch.Tensor | None = None  # the coming level's share words

    @property
    def r63(self) -> torch.Tensor:
        return self.m.r63

    def prepare(self) -> None:
        if self._level < len(LEVEL_GROUPS) and self._shares is None:
            self._shares = self._share_words(self._level)

    def _share_words(self, j: int) -> torch.Tensor:
        a, b, products = self.m.levels[j]
        top = self.m.r63.view(self.n, 1) if self._plans[j].zero_test else None
        return share_word(int(self.is_first), masks_word(a, b, top), products)

    def _message(self) -> torch.Tensor:
        a, b, _ = self.m.levels[self._level]
        return ((self.P ^ a) | ((self.G ^ b) << 4)).reshape(-1)

    def start(self, c: torch.Tensor) -> torch.Tensor:
        public = chunks(c & INT64_MAX).to(torch.int16)  # bit 63 is left out
        below = self.m.below
        one_hot = below << 1
        one_hot ^= below
        if self.is_first:
            one_hot ^= 1
        generate, propagate = below >> public, one_hot.bitwise_right_shift_(public)
        self.G = _nibbles(generate.bitwise_and_(1), LEVEL_GROUPS[0])
        self.P = _nibbles(propagate.bitwise_and_(1), LEVEL_GROUPS[0])
        return self._message()

    def step(self, opened: torch.Tensor) -> torch.Tensor | None:
        j = self._level
        shares = self._shares if self._shares is not None else self._share_words(j)
        self._shares, self._level = None, j + 1
        out = combine(self._plans[j], opened.view(self.n, LEVEL_GROUPS[j]), shares)
        g = out["G"] ^ (self.G >> 3)  # and the party's own share of G3
        p = out.get("P")
        if self._level < len(LEVEL_GROUPS):  # the next level's nibbles
            assert p is not None
            nibbles = _nibbles(torch.stack([g, p], dim=1), LEVEL_GROUPS[self._level])
            self.G, self.P = nibbles.unbind(1)
            return self._message()
        self.generate = g.view(self.n)
        if self.zero_test:
            assert p is not None
            self.propagate, self.zero_product = p.view(self.n), out["Z"].view(self.n)
        return None
