"""Provider material for secure comparison, and the table of comparison operations.

For an input ``x`` (n elements) the provider deals, using the seed mechanism of
:mod:`zsyft.mpc.provider` (one flat uint8 correction tensor for the last party):

* ``r``: a uniform mask in Z/2^64, additively shared (purely seeded, free);
* a random bit ``t``, XOR-shared (seeded) and additively shared (corrected), for the final
  bit-to-arithmetic conversion, plus ``r * t`` (ReLU) or a mask ``m`` and ``m * t`` (when
  the bit multiplies another shared tensor);
* the material of the borrow tree that compares the opened ``c = x + r`` with ``r``
  (:mod:`.borrow_tree`; which tree follows from the number of elements: `tree_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .binary_tree import BinaryMaterial, BinaryTree
from .borrow_tree import BorrowTree
from .lookahead import RadixFourMaterial, RadixFourTree
from .prg import OpId, Prg
from .provider import Correction, DealerStreams, PartyStreams, shape_numel

__all__ = [
    "COMPARISONS",
    "RADIX_FOUR_MAX",
    "ComparisonMaterial",
    "ComparisonSpec",
    "PartyComparisonMaterial",
    "comparison_spec",
    "deal_comparison",
    "deal_comparisons",
    "party_comparison",
    "tree_for",
]

RADIX_FOUR_MAX = 4096
"""Comparisons on up to this many elements use the radix-4 borrow tree (4 rounds instead of
7); larger ones the binary tree, whose work and material per element are about half."""


def tree_for(numel: int) -> type[BorrowTree]:
    """The borrow tree of a comparison on ``numel`` elements (the provider and every party
    derive it from the public shape)."""
    return RadixFourTree if numel <= RADIX_FOUR_MAX else BinaryTree


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
class ComparisonMaterial:
    """One party's shares of the comparison material described above (``tree``: the
    material of its borrow tree)."""

    r: torch.Tensor
    tree: RadixFourMaterial | BinaryMaterial
    t_bit: torch.Tensor
    t: torch.Tensor
    mask: torch.Tensor | None
    product: torch.Tensor | None


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
    n = shape_numel(shape)
    d = DealerStreams(prgs, op_ids)
    r = d.random_arith("cmp.r", (n,))
    t = d.random_xor("cmp.t_bit", (n,), 1).to(torch.int64)
    d.arith("cmp.t", t)
    if spec.multiply == "input":
        d.arith("cmp.product", r * t)
    elif spec.multiply == "other":
        d.arith("cmp.product", d.random_arith("cmp.mask", (n,)) * t)
    tree_for(n).deal(d, r, spec.zero_test)
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
        self.n = shape_numel(shape)
        self._src = PartyStreams(prg, op_id, party_index, n_parties, correction)
        self.r = self._src.random_arith("cmp.r", (self.n,))
        self.mask = (self._src.random_arith("cmp.mask", (self.n,))
                     if self.spec.multiply == "other" else None)
        self._complete: ComparisonMaterial | None = None

    def complete(self) -> ComparisonMaterial:
        """All of the material (derived on the first call)."""
        if self._complete is None:
            self._complete = self._derive_rest()
        return self._complete

    def _derive_rest(self) -> ComparisonMaterial:
        src, spec, n = self._src, self.spec, self.n
        t_bit = src.random_xor("cmp.t_bit", (n,), 1)
        t = src.arith("cmp.t", (n,))
        product = src.arith("cmp.product", (n,)) if spec.multiply != "none" else None
        tree = tree_for(n).take(src, n, spec.zero_test)
        src.finish()
        return ComparisonMaterial(self.r, tree, t_bit, t, self.mask, product)


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
