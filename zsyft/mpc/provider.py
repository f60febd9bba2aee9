"""Correlated randomness from the crypto provider (dealer), and its party-side derivation.

The provider is a non-colluding helper that knows every party's PRG seed but never sees
data: each ``deal_*`` function takes only seeds, an op id and public metadata (op kind,
shapes, divisor), so its output cannot depend on any secret.  Both sides expand the seeds
with :class:`~zsyft.mpc.prg.Prg` under the same ``(op_id, purpose)`` labels:

* *random* values (Beaver masks ``a``, ``b``, the truncation mask ``r`` ...) are defined as
  the sum (or XOR) of what every party derives from its own seed - no communication;
* *correlated* values (``c = a * b``, ``floor(r / D)``, XOR bits of ``r`` ...) are derived
  from the seeds by parties ``0 .. n-2``; the provider computes the last party's share so
  that the shares add up, and sends it as the operation's single **correction** tensor.

Party ``i`` therefore learns only its own pseudo-random shares plus, for the last party,
a correction that is uniformly distributed given its view (it is masked by the other
parties' seeded shares).  Op ids must never be reused: two operations with the same op id
would share masks, which breaks secrecy.

This module holds the generic machinery and the material for Beaver triples; the truncation
and comparison material live in :mod:`zsyft.mpc.truncation_material` and
:mod:`zsyft.mpc.comparison_material`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .bitops import dtype_for_width, from_byte_rows, from_bytes, packed_nbytes, to_byte_rows
from .convolution import Convolution
from .prg import OpId, Prg

__all__ = [
    "BILINEAR_KINDS",
    "BeaverTriple",
    "BilinearKind",
    "DealerStreams",
    "PartyStreams",
    "as_prgs",
    "batched_bilinear",
    "bilinear_op",
    "bilinear_output_shape",
    "deal_triple",
    "deal_triples",
    "draw_triple",
    "party_triple",
    "shape_numel",
    "take_triple",
]

Shape = Sequence[int]
Correction = torch.Tensor | Callable[[], torch.Tensor]
"""The provider's correction, or a function returning it when first needed (a party can
start on the seeded parts of an op before the correction has arrived)."""


def shape_numel(shape: Shape) -> int:
    """The number of elements of a tensor of ``shape``."""
    numel = 1
    for d in shape:
        numel *= int(d)
    return numel


def _words(
    prg: Prg, op_ids: Sequence[OpId], purpose: str, numel: int, width: int
) -> torch.Tensor:
    """Uniform ``width``-bit words (dtype per width) from a party's streams of ``op_ids``:
    ``numel`` of them per op, one op after another, flat. Narrow words are drawn packed
    (8 // width per byte, each op's stream whole bytes), then unpacked."""
    nbytes = packed_nbytes(numel, width)
    if len(op_ids) == 1:  # a party's own draw: its stream as it comes
        data = bytearray(prg.random_bytes(op_ids[0], purpose, nbytes))
    else:
        data = bytearray().join([prg.random_bytes(op, purpose, nbytes) for op in op_ids])
    if not data:
        return torch.empty(0, dtype=dtype_for_width(width))
    if width >= 8:  # whole words: the ops' streams, one after another, are the words
        return torch.frombuffer(data, dtype=dtype_for_width(width))
    raw = torch.frombuffer(data, dtype=torch.uint8)
    if len(op_ids) == 1:
        return from_bytes(raw, width, numel)
    return from_byte_rows(raw.view(len(op_ids), nbytes), width, numel).reshape(-1)


def _bits(prg: Prg, op_id: OpId, purpose: str, shape: Shape, width: int) -> torch.Tensor:
    """Uniform ``width``-bit words of ``shape`` from a party's stream of one op."""
    words = _words(prg, (op_id,), purpose, shape_numel(shape), width)
    return words if len(shape) == 1 else words.reshape(tuple(int(d) for d in shape))


def as_prgs(prgs: Sequence[Prg | bytes]) -> list[Prg]:
    """Accept seeds or :class:`Prg` objects; require at least two parties."""
    out = [p if isinstance(p, Prg) else Prg(p) for p in prgs]
    if len(out) < 2:
        raise ValueError(f"the provider needs the seeds of n >= 2 parties, got {len(out)}")
    return out


def prgs_for_pairs(
    prgs: Sequence[Prg | bytes], x_shares: Sequence[Any], y_shares: Sequence[Any]
) -> list[Prg]:
    """`as_prgs` for a local run of a two-input protocol: one x and one y share per party."""
    out = as_prgs(prgs)
    if len(x_shares) != len(out) or len(y_shares) != len(out):
        raise ValueError("need one x share and one y share per party")
    return out


class DealerStreams:
    """Provider side: re-derive all parties' streams and collect the last party's shares.

    One dealer serves a batch of ops with the same protocol and shapes (``op_ids``; one op is
    a batch of one). Every value it draws or is given holds the ops' values one op after
    another, flat: the dealing arithmetic runs once per batch, not once per op, and
    :meth:`corrections` cuts the result back into one correction per op, each the same bytes
    as a batch of one would give.
    """

    def __init__(self, prgs: Sequence[Prg | bytes], op_ids: Sequence[OpId]) -> None:
        if not op_ids:
            raise ValueError("a dealer needs at least one op id")
        self.prgs = as_prgs(prgs)
        self.op_ids = list(op_ids)
        self.ops = len(self.op_ids)  # the number of ops dealt for together
        self._parts: list[torch.Tensor] = []  # (ops, bytes) each

    def _draw(self, prg: Prg, purpose: str, shape: Shape, width: int) -> torch.Tensor:
        """One party's seeded ``width``-bit words of every op, op after op (flat)."""
        return _words(prg, self.op_ids, purpose, shape_numel(shape), width)

    def random_arith(self, purpose: str, shape: Shape) -> torch.Tensor:
        """The value defined by the parties' seeded additive shares."""
        total = self._draw(self.prgs[0], purpose, shape, 64)
        for p in self.prgs[1:]:
            total += self._draw(p, purpose, shape, 64)
        return total

    def random_xor(self, purpose: str, shape: Shape, width: int) -> torch.Tensor:
        """The value defined by the parties' seeded XOR shares."""
        total = self._draw(self.prgs[0], purpose, shape, width)
        for p in self.prgs[1:]:
            total ^= self._draw(p, purpose, shape, width)
        return total

    def arith(self, purpose: str, value: torch.Tensor) -> None:
        """Additively share ``value`` (flat, as drawn): the correction is the last party's
        share."""
        corr = value.clone()
        per_op = (corr.numel() // self.ops,)
        for p in self.prgs[:-1]:
            corr -= self._draw(p, purpose, per_op, 64)
        self._parts.append(to_byte_rows(corr.view(self.ops, per_op[0]), 64))

    def xor(self, purpose: str, value: torch.Tensor, width: int) -> None:
        """XOR-share ``width``-bit words ``value`` (flat, as drawn); the correction is the
        last party's share."""
        corr = value.clone()
        per_op = (corr.numel() // self.ops,)
        for p in self.prgs[:-1]:
            corr ^= self._draw(p, purpose, per_op, width)
        self._parts.append(to_byte_rows(corr.view(self.ops, per_op[0]), width))

    def corrections(self) -> list[torch.Tensor]:
        """Each op's corrections, concatenated as one flat uint8 tensor (for the last party)."""
        joined = torch.cat(self._parts, dim=1) if self._parts else None
        if joined is None or not joined.shape[1]:  # an empty op: nothing to correct
            return [torch.empty(0, dtype=torch.uint8) for _ in self.op_ids]
        return list(joined.unbind(0))  # int64 corrections: rows of whole int64s, aligned


class PartyStreams:
    """Party side: its seeded shares, or (last party) the matching pieces of the correction."""

    def __init__(
        self,
        prg: Prg,
        op_id: OpId,
        party_index: int,
        n_parties: int,
        correction: Correction | None,
    ) -> None:
        if n_parties < 2 or not 0 <= party_index < n_parties:
            raise ValueError(f"invalid party_index {party_index} for {n_parties} parties")
        self.prg = prg
        self.op_id = op_id
        self.is_last = party_index == n_parties - 1
        if self.is_last and correction is None:
            raise ValueError("the last party needs the provider's correction")
        if not self.is_last and correction is not None:
            raise ValueError("only the last party receives a correction")
        self._correction = correction
        self._buf: torch.Tensor | None = None
        self._pos = 0

    def _take(self, shape: Shape, width: int) -> torch.Tensor:
        if self._buf is None:  # first use: a deferred correction is awaited only now
            given = self._correction() if callable(self._correction) else self._correction
            assert given is not None
            self._buf = given.contiguous().view(torch.uint8).reshape(-1)
        numel = shape_numel(shape)
        end = self._pos + packed_nbytes(numel, width)
        if end > self._buf.numel():
            raise ValueError("correction is shorter than the operation requires")
        words = from_bytes(self._buf[self._pos : end], width, numel)
        self._pos = end
        return words if len(shape) == 1 else words.reshape(tuple(shape))  # words are flat

    def random_arith(self, purpose: str, shape: Shape) -> torch.Tensor:
        return self.prg.int64(self.op_id, purpose, shape)

    def random_xor(self, purpose: str, shape: Shape, width: int) -> torch.Tensor:
        return _bits(self.prg, self.op_id, purpose, shape, width)

    def arith(self, purpose: str, shape: Shape) -> torch.Tensor:
        if self.is_last:
            return self._take(shape, 64)
        return self.prg.int64(self.op_id, purpose, shape)

    def xor(self, purpose: str, shape: Shape, width: int) -> torch.Tensor:
        if self.is_last:
            return self._take(shape, width)
        return _bits(self.prg, self.op_id, purpose, shape, width)

    def finish(self) -> None:
        """Check that the correction had exactly the expected length."""
        if self._buf is not None and self._pos != self._buf.numel():
            raise ValueError("correction is longer than the operation requires")


# ----------------------------------------------------------------------------- triples

BILINEAR_KINDS = {"mul": torch.mul, "matmul": torch.matmul}
"""Bilinear operations with Beaver triples by name: elementwise (broadcasting) and matmul.
A :class:`~zsyft.mpc.convolution.Convolution` object is a triple kind too."""

BilinearKind = str | Convolution


def bilinear_op(kind: BilinearKind) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The torch function of a triple kind."""
    if isinstance(kind, Convolution):
        return kind
    try:
        return BILINEAR_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown triple kind {kind!r}; expected one of {sorted(BILINEAR_KINDS)} or a "
            "Convolution"
        ) from None


def bilinear_output_shape(kind: BilinearKind, x_shape: Shape, y_shape: Shape) -> torch.Size:
    """Shape of ``op(x, y)`` for the triple kind (torch broadcasting/matmul rules)."""
    if isinstance(kind, Convolution):
        return kind.output_shape(x_shape, y_shape)
    bilinear_op(kind)
    xs, ys = tuple(int(d) for d in x_shape), tuple(int(d) for d in y_shape)
    if kind == "mul":
        return torch.Size(xs) if xs == ys else torch.broadcast_shapes(xs, ys)
    if not xs or not ys:
        raise ValueError("matmul operands must have at least one dimension")
    if xs[-1] != (ys[0] if len(ys) == 1 else ys[-2]):
        raise ValueError(f"matmul shapes {xs} and {ys} do not match")
    if len(xs) == 1 and len(ys) == 1:
        return torch.Size(())
    if len(ys) == 1:
        return torch.Size(xs[:-1])
    if len(xs) == 1:
        return torch.Size((*ys[:-2], ys[-1]))
    batch = xs[:-2] if xs[:-2] == ys[:-2] else torch.broadcast_shapes(xs[:-2], ys[:-2])
    return torch.Size((*batch, xs[-2], ys[-1]))


class BeaverTriple:
    """One party's shares of ``(a, b, c = op(a, b))`` in Z/2^64.

    ``c`` may be given as a function, called on first use: the last party masks its inputs
    with ``a`` and ``b`` (seeded) while the provider's correction for ``c`` is on its way.
    ``c`` is ``None`` when the parties hold no shares of it: the Beaver output is then off by
    ``op(a, b)``, which a following step must absorb (the fused product of
    :mod:`.fixed_product` folds it into its truncation mask).
    """

    __slots__ = ("_c", "a", "b")

    def __init__(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        c: torch.Tensor | Callable[[], torch.Tensor] | None,
    ) -> None:
        self.a, self.b, self._c = a, b, c

    @property
    def c(self) -> torch.Tensor | None:
        if callable(self._c):
            self._c = self._c()
        return self._c


def batched_bilinear(
    kind: BilinearKind, a: torch.Tensor, b: torch.Tensor, ops: int, x_shape: Shape,
    y_shape: Shape,
) -> torch.Tensor:
    """``op(a_i, b_i)`` for each op i of a dealer's batch, flat and op after op (``a`` and
    ``b`` are flat too): one broadcast product or batched matmul, else one op at a time."""
    op = bilinear_op(kind)
    xs, ys = tuple(int(d) for d in x_shape), tuple(int(d) for d in y_shape)
    if kind == "mul" or (kind == "matmul" and len(xs) >= 2 and len(ys) >= 2):
        rank = max(len(xs), len(ys))  # the ops' own dims align to the right, after the batch
        a = a.view(ops, *(1,) * (rank - len(xs)), *xs)
        b = b.view(ops, *(1,) * (rank - len(ys)), *ys)
        return op(a, b).reshape(-1)
    a_rows, b_rows = a.view(ops, a.numel() // ops), b.view(ops, b.numel() // ops)
    return torch.cat([
        op(a_i.view(xs), b_i.view(ys)).reshape(-1)
        for a_i, b_i in zip(a_rows, b_rows, strict=True)
    ])


def draw_triple(
    dealer: DealerStreams, kind: BilinearKind, x_shape: Shape, y_shape: Shape
) -> None:
    """Provider: add a triple's correction (the last party's share of ``c``) to ``dealer``."""
    a = dealer.random_arith("triple.a", x_shape)
    b = dealer.random_arith("triple.b", y_shape)
    dealer.arith("triple.c", batched_bilinear(kind, a, b, dealer.ops, x_shape, y_shape))


def deal_triples(
    prgs: Sequence[Prg | bytes], op_ids: Sequence[OpId], kind: BilinearKind, x_shape: Shape,
    y_shape: Shape,
) -> list[torch.Tensor]:
    """Provider: the last party's share of ``c = op(a, b)`` for each op (int64, shape of
    ``op(x, y)``), dealt together.

    ``a`` (shape of x) and ``b`` (shape of y) are the sums of the parties' seeded shares.
    """
    out_shape = bilinear_output_shape(kind, x_shape, y_shape)
    dealer = DealerStreams(prgs, op_ids)
    draw_triple(dealer, kind, x_shape, y_shape)
    return [c.view(torch.int64).reshape(out_shape) for c in dealer.corrections()]


def deal_triple(
    prgs: Sequence[Prg | bytes], op_id: OpId, kind: BilinearKind, x_shape: Shape, y_shape: Shape
) -> torch.Tensor:
    """`deal_triples` for one op."""
    return deal_triples(prgs, [op_id], kind, x_shape, y_shape)[0]


def take_triple(
    src: PartyStreams, kind: BilinearKind, x_shape: Shape, y_shape: Shape
) -> BeaverTriple:
    """Party: its triple shares from ``src``; ``c`` is taken from the streams when first used
    (the last party's ``c`` is the first thing it needs of the provider's correction)."""
    out_shape = bilinear_output_shape(kind, x_shape, y_shape)
    a = src.random_arith("triple.a", x_shape)
    b = src.random_arith("triple.b", y_shape)
    return BeaverTriple(a, b, lambda: src.arith("triple.c", out_shape))


def party_triple(
    prg: Prg,
    op_id: OpId,
    party_index: int,
    n_parties: int,
    kind: BilinearKind,
    x_shape: Shape,
    y_shape: Shape,
    correction: Correction | None = None,
) -> BeaverTriple:
    """Party ``party_index``'s triple shares; the last party passes the provider's correction
    (or a function returning it: then ``c`` is derived when first used)."""
    src = PartyStreams(prg, op_id, party_index, n_parties, correction)
    triple = take_triple(src, kind, x_shape, y_shape)

    def c() -> torch.Tensor:
        share = triple.c
        src.finish()
        return share

    return BeaverTriple(triple.a, triple.b, c if callable(correction) else c())
