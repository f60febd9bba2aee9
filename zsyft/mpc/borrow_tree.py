"""The borrow circuit of secure comparison: ``[c mod 2^63 < r mod 2^63]`` on XOR shares.

After the comparison opens ``c = v + r`` (:mod:`.comparison`), what is left is to compare
the public ``c`` with the dealt mask ``r``, bit by bit: a parallel-prefix computation of
the borrow into bit 63 with the generate/propagate operator of carry-lookahead adders.  A
group of bits has a *generate* bit ``G = [c_group < r_group]`` and a *propagate* bit
``P = [c_group == r_group]``, and adjacent groups combine as
``(G, P) = (G_hi ^ P_hi G_lo, P_hi P_lo)`` (``G`` and ``P`` of a group are never both 1,
so OR is XOR).  Two trees, which trade rounds against work per element:

* :class:`~.lookahead.RadixFourTree` (small tensors): the first level is local for
  four-bit chunks, thanks to dealt thermometer codes of ``r``'s chunks, and the
  interactive levels combine four groups per round: two rounds.
* :class:`~.binary_tree.BinaryTree` (large tensors): bit-sliced in one machine word per
  element, the first level is local for pairs of bits, then five AND levels (word widths
  32 .. 2), one round each; less material and about half the work per element.

Which one a comparison uses follows from its number of elements
(:func:`~.comparison_material.tree_for`).

Both also give, for the zero test, the top group's ``P`` and its product with ``r``'s top
bit ``r63``, and they hand the comparison XOR shares of ``r63``.  Each is dealt by
``deal(d, r, zero_test)`` on the provider's :class:`~.provider.DealerStreams` and taken by
``take(src, n, zero_test)`` on a party's :class:`~.provider.PartyStreams`, in the same
order; its party object is then driven by :meth:`BorrowTree.start` and
:meth:`BorrowTree.step`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from .provider import DealerStreams, PartyStreams

__all__ = ["BorrowTree"]


class BorrowTree(ABC):
    """One party's evaluation of the borrow circuit on its tree material."""

    rounds: ClassVar[int]
    """Interactive rounds (the comparison adds the opening of ``c`` and the final one)."""

    generate: torch.Tensor
    """After the last step: XOR share of ``[c mod 2^63 < r mod 2^63]`` (uint8 0/1, (n,))."""
    propagate: torch.Tensor | None = None
    """With the zero test: XOR share of ``[c mod 2^63 == r mod 2^63]``."""
    zero_product: torch.Tensor | None = None
    """With the zero test: XOR share of ``propagate & r63``."""

    def __init__(self, n: int, is_first: bool, zero_test: bool) -> None:
        self.n, self.is_first, self.zero_test = n, is_first, zero_test

    @property
    @abstractmethod
    def r63(self) -> torch.Tensor:
        """This party's XOR share of the mask's top bit (uint8 0/1, (n,))."""

    @abstractmethod
    def start(self, c: torch.Tensor) -> torch.Tensor:
        """The local first level from the public ``c``; the first round's message."""

    @abstractmethod
    def step(self, opened: torch.Tensor) -> torch.Tensor | None:
        """One interactive level from the opened round; the next message, or None once
        ``generate`` (and the zero test's bits) are ready."""

    @abstractmethod
    def prepare(self) -> None:
        """Work for the coming round that needs no message (while messages travel)."""

    @staticmethod
    @abstractmethod
    def deal(d: DealerStreams, r: torch.Tensor, zero_test: bool) -> None:
        """Provider: draw the tree's material for the masks ``r`` (the batch's, flat)."""

    @staticmethod
    @abstractmethod
    def take(src: PartyStreams, n: int, zero_test: bool) -> Any:
        """Party: its tree material for ``n`` elements, drawn in :meth:`deal`'s order."""

    @staticmethod
    @abstractmethod
    def message_bytes(n: int) -> list[int]:
        """Bytes each party sends to each other party in each interactive round."""

    @staticmethod
    @abstractmethod
    def correction_bytes(n: int, zero_test: bool) -> int:
        """Bytes of the tree's part of the provider's correction."""
