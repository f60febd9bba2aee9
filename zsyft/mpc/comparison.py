"""Secure comparison, ReLU and ReLU backward on additively shared int64 values.

Protocol: dealer-assisted *masked comparison* with a *borrow-lookahead circuit* on XOR
shares.  The input is opened under a uniform mask as in Rabbit (Makri, Rotaru,
Vercauteren, Wouters, "Rabbit: Efficient Comparison for Secure Multi-Party Computation",
FC 2021); the remaining comparison between the public masked value and the XOR-shared
mask is a parallel-prefix borrow computation (the generate/propagate operator of
Kogge-Stone / carry-lookahead adders) evaluated with dealt masks and mask products, the
boolean Beaver triples of ABY (Demmler, Schneider, Zohner, NDSS 2015) and CrypTen (Knott
et al., NeurIPS 2021) generalised to four groups per round for small tensors
(:mod:`.borrow_tree`).  Results are exact for every 64-bit input: there is no statistical
slack and no failure probability.

Sign of ``v`` in Z/2^64 (``v = x``, or ``v = x - y`` for binary comparisons): with
``c = v + r`` public, ``v = c - r`` and

    msb(v) = c_63 XOR r_63 XOR [c mod 2^63 < r mod 2^63]

(the bracket is the borrow into bit 63 of ``c - r``, the borrow tree's output).  The tree
also yields ``[c mod 2^63 == r mod 2^63]`` and its product with ``r_63``, hence
``[v == 0]`` exactly and ``[v > 0] = NOT msb(v) XOR [v == 0]`` - correct even for
``v = INT64_MIN``, where the usual ``msb(-v)`` is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .bitops import from_bytes, packed_nbytes, to_bytes
from .borrow_tree import BorrowTree
from .comparison_material import (
    ComparisonMaterial,
    PartyComparisonMaterial,
    comparison_spec,
    deal_comparison,
    party_comparison,
    tree_for,
)
from .prg import OpId, Prg
from .protocol import PartyProtocol, Transcript, open_sum, open_xor, run_local
from .provider import as_prgs
from .ring import check_int64, top_bit

__all__ = [
    "ComparisonParty",
    "comparison_message_bytes",
    "comparison_rounds",
    "run_local_comparison",
    "run_local_gt",
    "run_local_lt",
    "run_local_ltz",
    "run_local_relu",
    "run_local_relu_backward",
]


def comparison_rounds(numel: int) -> int:
    """Rounds of a comparison on ``numel`` elements: the opening of ``c``, the borrow
    tree's (2 up to `~.comparison_material.RADIX_FOUR_MAX` elements, else 5), the final
    opening."""
    return 2 + tree_for(numel).rounds


class ComparisonParty(PartyProtocol):
    """Party ``i`` of comparison ``name`` (see ``comparison_material.COMPARISONS``).

    ``inputs``: ``(x_i,)`` for ``ltz gez gtz lez eqz relu``; ``(x_i, y_i)`` for
    ``lt ge gt le eq`` (comparing ``x - y`` with 0); ``(grad_i, x_i)`` for
    ``relu_backward``.  The output is an int64 share: of the 0/1 predicate, of
    ``relu(x) = x * [x >= 0]``, or of ``grad * [x > 0]``; ``relu_with_mask`` outputs
    shares of ``relu(x) = x * [x > 0]`` and of the mask ``[x > 0]`` (:meth:`outputs`).

    Steps (every message is broadcast to the other ``n - 1`` parties):

    1. Open ``c = v + r`` (int64; for ``relu_backward`` also ``eps = grad - m``):
       8 (16) bytes per element; the borrow tree's first level is local.
    2. The borrow tree's interactive levels, one round each: two radix-4 levels of 4 and
       1 bytes per element up to 4096 elements, else five AND levels of 6, 3, 1.5, 0.75
       and 0.375 bytes (:mod:`.borrow_tree`).
    3. With the XOR-shared result bit ``s``, open ``e = s XOR t`` for the dealt random bit
       ``t`` (1 bit per element).  Then ``[s] = e + (1 - 2e) [t]`` arithmetically, and
       a product with a shared ``y`` is ``e [y] + (1 - 2e) [y t]`` where ``[y t]`` comes
       from the round-1 opening: ``c [t] - [r t]`` for ReLU (``y = v``: the comparison
       mask doubles as Beaver mask), ``eps [t] + [m t]`` otherwise.

    Cost: 4 rounds and 13.125 bytes per element and per other party (``ltz``, ``lt``,
    ``relu`` ...; 21.125 for ``relu_backward``, which also opens ``eps``) up to 4096
    elements, else 7 rounds and 19.75 (27.75) bytes.  ReLU needs no separate Beaver
    round.  Provider: :func:`zsyft.mpc.costs.comparison_correction_bytes`.

    Security (semi-honest parties, non-colluding provider): every opened value is a secret
    XORed or added with a fresh uniform mask that no party knows (``r``, the tree's level
    masks, ``t``, ``m``), so each party's view is uniform and independent of the inputs;
    all other operations are local.
    """

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
        self.rounds = comparison_rounds(self.n)
        self._first = material  # r and mask, for the first message
        self._m = material if isinstance(material, ComparisonMaterial) else None
        self._tree: BorrowTree | None = None
        self._stage = 0
        self._mask: torch.Tensor | None = None

    @property
    def m(self) -> ComparisonMaterial:
        """All of the material (derived from a `PartyComparisonMaterial` on first use)."""
        if self._m is None:
            assert isinstance(self._first, PartyComparisonMaterial)
            self._m = self._first.complete()
        return self._m

    @property
    def tree(self) -> BorrowTree:
        """This party's borrow tree (built with the rest of the material)."""
        if self._tree is None:
            self._tree = tree_for(self.n)(self.m.tree, self.n, self.is_first,
                                          self.spec.zero_test)
        return self._tree

    # ---------------------------------------------------------------- messages
    def first_message(self) -> torch.Tensor:
        c_i = self.v + self._first.r
        if self.y is None:
            return c_i
        assert self._first.mask is not None
        return torch.cat([c_i, self.y - self._first.mask])

    def prepare(self) -> None:
        """The rest of the material once the first message is out, and the borrow tree's
        work for its coming level (none of it depends on the coming messages)."""
        if self._stage <= self.tree.rounds:
            self.tree.prepare()

    def receive(self, messages: Sequence[torch.Tensor]) -> torch.Tensor | None:
        self._check_messages(messages)
        stage, self._stage = self._stage, self._stage + 1
        if stage == 0:
            opened = open_sum(messages)
            self.c, self.eps = opened[: self.n], opened[self.n :]
            return self.tree.start(self.c)
        if stage <= self.tree.rounds:
            message = self.tree.step(open_xor(messages))
            if message is not None:
                return message
            return to_bytes(self._result_bit() ^ self.m.t_bit, 1)
        if stage == self.tree.rounds + 1:
            self._finish(from_bytes(open_xor(messages), 1, self.n).to(torch.bool))
            return None
        raise RuntimeError("comparison already finished")

    # ---------------------------------------------------------------- local steps
    def _result_bit(self) -> torch.Tensor:
        """XOR share of the predicate bit (uint8 0/1 per element)."""
        tree = self.tree
        r63 = tree.r63
        c63 = top_bit(self.c).to(torch.uint8)
        first = 1 if self.is_first else 0
        msb = tree.generate ^ r63 ^ (c63 if self.is_first else 0)
        pred = self.spec.predicate
        if pred == "ltz":
            return msb
        if pred == "gez":
            return msb ^ first
        # [v == 0] = [low 63 bits equal] & (~c63 ^ r63) = P ~c63 ^ P r63
        assert tree.propagate is not None and tree.zero_product is not None
        zero = ((c63 ^ 1) & tree.propagate) ^ tree.zero_product
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
    return [first, *tree_for(numel).message_bytes(numel), packed_nbytes(numel, 1)]


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
