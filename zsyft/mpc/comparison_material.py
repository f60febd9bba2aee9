"""Provider material for secure comparison, and the table of comparison operations.

For an input ``x`` (n elements) the provider deals, using the seed mechanism of
:mod:`zsyft.mpc.provider` (one flat uint8 correction tensor for the last party):

* ``r``: a uniform mask in Z/2^64, additively shared (purely seeded, free);
* XOR shares of ``R = permute_bits(r)`` (the bit-reversal layout of :mod:`bitops`), and of
  ``R_hi & R_lo`` (halves of ``R`` with bit 63 cleared) so that the first carry-lookahead
  level is evaluated without interaction;
* for each of the five interactive AND levels (word widths 32, 16, 8, 4, 2): seeded masks
  ``a`` (for the propagate word) and ``b`` (for the low half of the generate word) and
  shares of the boolean Beaver products ``a_hi & b`` and ``a_hi & a_lo``;
* for predicates that need ``[x == 0]``: shares of ``a_lo & r63``, ``a_hi & r63`` and
  ``a_hi & a_lo & r63`` at the last level (products with a dealt bit need no opening);
* a random bit ``t``, XOR-shared (seeded) and additively shared (corrected), for the final
  bit-to-arithmetic conversion, plus ``r * t`` (ReLU) or a mask ``m`` and ``m * t`` (when
  the bit multiplies another shared tensor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .bitops import permute_bits, split_halves
from .prg import OpId, Prg
from .provider import Correction, DealerStreams, PartyStreams
from .ring import INT64_MAX, top_bit

__all__ = [
    "COMPARISONS",
    "LEVEL_WIDTHS",
    "ComparisonMaterial",
    "ComparisonSpec",
    "LevelMaterial",
    "PartyComparisonMaterial",
    "comparison_spec",
    "deal_comparison",
    "deal_comparisons",
    "party_comparison",
]

LEVEL_WIDTHS = (32, 16, 8, 4, 2)
"""Word widths entering the interactive AND levels (the 64 -> 32 level is local)."""


@dataclass(frozen=True)
class ComparisonSpec:
    """What a comparison computes.

    ``predicate`` is evaluated on the compared value ``v`` (``x`` or ``x - y``): one of
    ``ltz`` (v < 0), ``gez`` (v >= 0), ``gtz`` (v > 0), ``lez`` (v <= 0), ``eqz`` (v == 0).
    ``multiply`` says what the 0/1 result multiplies: ``none`` (returned as is), ``input``
    (the compared value itself, as in ReLU) or ``other`` (a further shared tensor, as the
    gradient in ReLU's backward).  ``arity`` is the number of input tensors.  With
    ``keeps_mask`` the parties also output their arithmetic shares of the 0/1 result (ReLU
    in training keeps ``[x > 0]``, so its backward pass is one Beaver product instead of a
    second comparison).
    """

    name: str
    predicate: str
    multiply: str
    arity: int
    keeps_mask: bool = False

    @property
    def outputs(self) -> int:
        """Output tensors per party: the result, and the 0/1 mask when it is kept."""
        return 2 if self.keeps_mask else 1

    @property
    def zero_test(self) -> bool:
        """Whether the predicate needs ``[v == 0]`` besides the sign."""
        return self.predicate in ("gtz", "lez", "eqz")


COMPARISONS: dict[str, ComparisonSpec] = {
    s.name: s
    for s in (
        ComparisonSpec("ltz", "ltz", "none", 1),
        ComparisonSpec("gez", "gez", "none", 1),
        ComparisonSpec("gtz", "gtz", "none", 1),
        ComparisonSpec("lez", "lez", "none", 1),
        ComparisonSpec("eqz", "eqz", "none", 1),
        ComparisonSpec("lt", "ltz", "none", 2),
        ComparisonSpec("ge", "gez", "none", 2),
        ComparisonSpec("gt", "gtz", "none", 2),
        ComparisonSpec("le", "lez", "none", 2),
        ComparisonSpec("eq", "eqz", "none", 2),
        ComparisonSpec("relu", "gez", "input", 1),
        ComparisonSpec("relu_with_mask", "gtz", "input", 1, keeps_mask=True),
        ComparisonSpec("relu_backward", "gtz", "other", 2),
    )
}
"""Supported comparison operations by name (binary ones compare ``x - y`` with 0;
``relu_backward`` takes ``(grad, x)`` and computes ``grad * [x > 0]``; ``relu_with_mask``
is ReLU that also outputs shares of ``[x > 0]``, the mask its backward pass multiplies by)."""


def comparison_spec(name: str) -> ComparisonSpec:
    """Look up a comparison operation by name."""
    try:
        return COMPARISONS[name]
    except KeyError:
        raise ValueError(
            f"unknown comparison {name!r}; expected one of {sorted(COMPARISONS)}"
        ) from None


@dataclass(frozen=True)
class LevelMaterial:
    """One AND level: masks ``a`` (width W), ``b`` (W/2) and shares of the products."""

    a: torch.Tensor
    b: torch.Tensor
    c_pg: torch.Tensor
    c_pp: torch.Tensor | None


@dataclass(frozen=True)
class ComparisonMaterial:
    """One party's flat (1-D) shares of the comparison material described above."""

    r: torch.Tensor
    r_bits: torch.Tensor
    r_pairs: torch.Tensor
    levels: tuple[LevelMaterial, ...]
    zero: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    t_bit: torch.Tensor
    t: torch.Tensor
    mask: torch.Tensor | None
    product: torch.Tensor | None


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def deal_comparison(
    prgs: Sequence[Prg | bytes], op_id: OpId, name: str, shape: Sequence[int]
) -> torch.Tensor:
    """Provider: the flat uint8 correction of comparison ``name`` on a tensor of ``shape``."""
    return deal_comparisons(prgs, [op_id], name, shape)[0]


def deal_comparisons(
    prgs: Sequence[Prg | bytes], op_ids: Sequence[OpId], name: str, shape: Sequence[int]
) -> list[torch.Tensor]:
    """`deal_comparison` for several ops of the same shape, dealt together (all the material
    is elementwise: the batch is dealt as one long tensor)."""
    spec = comparison_spec(name)
    flat = (_numel(shape),)
    d = DealerStreams(prgs, op_ids)
    r = d.random_arith("cmp.r", flat)
    t = d.random_xor("cmp.t_bit", flat, 1).to(torch.int64)
    d.arith("cmp.t", t)
    if spec.multiply == "input":
        d.arith("cmp.product", r * t)
    elif spec.multiply == "other":
        d.arith("cmp.product", d.random_arith("cmp.mask", flat) * t)
    bits = permute_bits(r)
    d.xor("cmp.r_bits", bits, 64)
    hi, lo = split_halves(bits & INT64_MAX, 64)
    d.xor("cmp.r_pairs", hi & lo, 32)
    a_hi = a_lo = None
    for j, width in enumerate(LEVEL_WIDTHS):
        a = d.random_xor(f"cmp.l{j}.a", flat, width)
        b = d.random_xor(f"cmp.l{j}.b", flat, width // 2)
        a_hi, a_lo = split_halves(a, width)
        d.xor(f"cmp.l{j}.c_pg", a_hi & b, width // 2)
        if j < len(LEVEL_WIDTHS) - 1 or spec.zero_test:
            d.xor(f"cmp.l{j}.c_pp", a_hi & a_lo, width // 2)
    if spec.zero_test:
        assert a_hi is not None and a_lo is not None
        r63 = top_bit(bits).to(torch.uint8)  # bit 63 is a fixed point of permute_bits
        d.xor("cmp.z1", a_lo & r63, 1)
        d.xor("cmp.z2", a_hi & r63, 1)
        d.xor("cmp.z3", a_hi & a_lo & r63, 1)
    return d.corrections()


class PartyComparisonMaterial:
    """A party's comparison material, derived in two steps: at once the masks its first
    message needs (``r``, and ``mask`` when the result multiplies another tensor), and the
    rest on :meth:`complete`, which a party calls while the first messages travel (the last
    party first needs the provider's correction there, so it may be a function that waits
    for it)."""

    def __init__(
        self,
        prg: Prg,
        op_id: OpId,
        party_index: int,
        n_parties: int,
        name: str,
        shape: Sequence[int],
        correction: Correction | None = None,
    ) -> None:
        self.spec = comparison_spec(name)
        self.flat = (_numel(shape),)
        self._src = PartyStreams(prg, op_id, party_index, n_parties, correction)
        self.r = self._src.random_arith("cmp.r", self.flat)
        self.mask = (self._src.random_arith("cmp.mask", self.flat)
                     if self.spec.multiply == "other" else None)
        self._complete: ComparisonMaterial | None = None

    def complete(self) -> ComparisonMaterial:
        """All of the material (derived on the first call)."""
        if self._complete is None:
            self._complete = self._derive_rest()
        return self._complete

    def _derive_rest(self) -> ComparisonMaterial:
        src, spec, flat = self._src, self.spec, self.flat
        t_bit = src.random_xor("cmp.t_bit", flat, 1)
        t = src.arith("cmp.t", flat)
        product = src.arith("cmp.product", flat) if spec.multiply != "none" else None
        r_bits = src.xor("cmp.r_bits", flat, 64)
        r_pairs = src.xor("cmp.r_pairs", flat, 32)
        levels = []
        for j, width in enumerate(LEVEL_WIDTHS):
            a = src.random_xor(f"cmp.l{j}.a", flat, width)
            b = src.random_xor(f"cmp.l{j}.b", flat, width // 2)
            c_pg = src.xor(f"cmp.l{j}.c_pg", flat, width // 2)
            c_pp = None
            if j < len(LEVEL_WIDTHS) - 1 or spec.zero_test:
                c_pp = src.xor(f"cmp.l{j}.c_pp", flat, width // 2)
            levels.append(LevelMaterial(a, b, c_pg, c_pp))
        zero = None
        if spec.zero_test:
            zero = (src.xor("cmp.z1", flat, 1), src.xor("cmp.z2", flat, 1),
                    src.xor("cmp.z3", flat, 1))
        src.finish()
        return ComparisonMaterial(self.r, r_bits, r_pairs, tuple(levels), zero, t_bit, t,
                                  self.mask, product)


def party_comparison(
    prg: Prg,
    op_id: OpId,
    party_index: int,
    n_parties: int,
    name: str,
    shape: Sequence[int],
    correction: torch.Tensor | None = None,
) -> ComparisonMaterial:
    """Party ``party_index``'s comparison material; the last party passes the correction."""
    return PartyComparisonMaterial(
        prg, op_id, party_index, n_parties, name, shape, correction).complete()
