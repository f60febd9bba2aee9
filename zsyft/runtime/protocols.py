"""The secure protocols a worker can run, by name: how the provider deals for each, and how a
party builds its side. The arithmetic lives in `zsyft.mpc`; this table only binds it to the
parameters that arrive on the wire, after checking them (they come from a client).

Every protocol follows the mpc layer's broadcast-round interface (`PartyProtocol`), so one
generic loop in `mpc_runtime` runs any of them across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zsyft.mpc.beaver import BeaverParty
from zsyft.mpc.comparison import ComparisonParty
from zsyft.mpc.comparison_material import (
    COMPARISONS,
    PartyComparisonMaterial,
    deal_comparisons,
)
from zsyft.mpc.convolution import Convolution
from zsyft.mpc.fixed_product import deal_fixed_products, fixed_product_party
from zsyft.mpc.prg import Prg
from zsyft.mpc.protocol import PartyProtocol
from zsyft.mpc.provider import (
    BilinearKind,
    deal_triples,
    party_triple,
)
from zsyft.mpc.truncation import TruncationParty
from zsyft.mpc.truncation_material import (
    deal_truncations,
    party_truncation,
)

MAX_NUMEL = 1 << 28  # refuse protocol material larger than this many elements


def shape_param(params: Any, name: str) -> list[int]:
    """A shape from the wire, checked: a list of non-negative ints of bounded size."""
    shape = params.get(name) if isinstance(params, dict) else None
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise TypeError(f"protocol parameter {name!r} must be a shape (list of ints)")
    numel = 1
    for n in shape:
        numel *= n
    if numel > MAX_NUMEL or len(shape) > 8:
        raise ValueError(f"protocol parameter {name!r} = {shape} is too large")
    return shape


def int_param(params: Any, name: str) -> int:
    value = params.get(name) if isinstance(params, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f"protocol parameter {name!r} must be a positive int")
    return value


# The dealer's step for a batch of ops with the same parameters: one correction per op id.
Deal = Callable[[list[Prg], list[bytes], Any], list[torch.Tensor]]
# A party's side; the last party's `correction` is a function that waits for the provider's
# material, so a protocol can start on its seeded parts before the material has arrived.
MakeParty = Callable[[Prg, bytes, int, int, Sequence[torch.Tensor], Any, Any], PartyProtocol]


@dataclass(frozen=True)
class Protocol:
    """One protocol: its number of secret inputs, the dealer's step, a party's side, and
    its number of outputs (stored under the ids the client chose, in order)."""

    arity: int
    deal: Deal
    party: MakeParty
    outputs: int = 1


KindOf = Callable[[Any], BilinearKind]
"""A bilinear protocol's triple kind, from its parameters (fixed for `mul` and `matmul`; a
convolution's hyperparameters travel in the parameters)."""


def _named(kind: str) -> KindOf:
    return lambda params: kind


def _convolution(params: Any) -> BilinearKind:
    """The convolution in a client's parameters, checked (its output's size too)."""
    kind = Convolution.from_wire(params.get("conv") if isinstance(params, dict) else None)
    shape = kind.output_shape(shape_param(params, "x_shape"), shape_param(params, "y_shape"))
    if shape.numel() > MAX_NUMEL:
        raise ValueError(f"convolution output {list(shape)} is too large")
    return kind


def _bilinear(kind_of: KindOf) -> Protocol:
    def deal(prgs: list[Prg], op_ids: list[bytes], p: Any) -> list[torch.Tensor]:
        return deal_triples(prgs, op_ids, kind_of(p), shape_param(p, "x_shape"),
                            shape_param(p, "y_shape"))

    def party(prg, op_id, i, n, inputs, p, correction):  # type: ignore[no-untyped-def]
        kind = kind_of(p)
        triple = party_triple(prg, op_id, i, n, kind, shape_param(p, "x_shape"),
                              shape_param(p, "y_shape"), correction)
        return BeaverParty(kind, i, n, inputs[0], inputs[1], triple)

    return Protocol(2, deal, party)


def _fixed_product(kind_of: KindOf) -> Protocol:
    """A Beaver product and its truncation as one op (one control message per party)."""

    def deal(prgs: list[Prg], op_ids: list[bytes], p: Any) -> list[torch.Tensor]:
        return deal_fixed_products(prgs, op_ids, kind_of(p), shape_param(p, "x_shape"),
                                   shape_param(p, "y_shape"), int_param(p, "divisor"))

    def party(prg, op_id, i, n, inputs, p, correction):  # type: ignore[no-untyped-def]
        dealt = [shape_param(p, "x_shape"), shape_param(p, "y_shape")]
        if [list(inputs[0].shape), list(inputs[1].shape)] != dealt:
            raise ValueError(f"input shapes {[list(t.shape) for t in inputs]} do not match "
                             f"the shapes the provider dealt for, {dealt}")
        return fixed_product_party(prg, op_id, i, n, kind_of(p), inputs[0], inputs[1],
                                   int_param(p, "divisor"), correction)

    return Protocol(2, deal, party)


def _truncation() -> Protocol:
    def deal(prgs: list[Prg], op_ids: list[bytes], p: Any) -> list[torch.Tensor]:
        return deal_truncations(prgs, op_ids, shape_param(p, "shape"), int_param(p, "divisor"))

    def party(prg, op_id, i, n, inputs, p, correction):  # type: ignore[no-untyped-def]
        divisor = int_param(p, "divisor")
        material = party_truncation(prg, op_id, i, n, shape_param(p, "shape"), divisor,
                                    correction)  # awaited once the masked value is opened
        return TruncationParty(i, n, inputs[0], material, divisor)

    return Protocol(1, deal, party)


def _comparison(name: str) -> Protocol:
    def deal(prgs: list[Prg], op_ids: list[bytes], p: Any) -> list[torch.Tensor]:
        return deal_comparisons(prgs, op_ids, name, shape_param(p, "shape"))

    def party(prg, op_id, i, n, inputs, p, correction):  # type: ignore[no-untyped-def]
        material = PartyComparisonMaterial(prg, op_id, i, n, name, shape_param(p, "shape"),
                                           correction)  # the rest, once the first message is out
        return ComparisonParty(name, i, n, list(inputs), material)

    spec = COMPARISONS[name]
    return Protocol(spec.arity, deal, party, spec.outputs)


PROTOCOLS: dict[str, Protocol] = {
    "mul": _bilinear(_named("mul")),
    "matmul": _bilinear(_named("matmul")),
    "conv": _bilinear(_convolution),
    "fixed_mul": _fixed_product(_named("mul")),
    "fixed_matmul": _fixed_product(_named("matmul")),
    "fixed_conv": _fixed_product(_convolution),
    "truncate": _truncation(),
    **{name: _comparison(name) for name in COMPARISONS},
}


def protocol(name: Any) -> Protocol:
    """The protocol called `name`; a clear error for anything else."""
    found = PROTOCOLS.get(name) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return found
