"""`PartyProtocol.prepare`: the work a party does while the round's messages travel gives the
outputs it would give done later, and the last party's late correction is awaited there."""

from __future__ import annotations

import os

import pytest
import torch

from zsyft.mpc.comparison_material import COMPARISONS, RADIX_FOUR_MAX
from zsyft.mpc.prg import Prg, fresh_seed
from zsyft.runtime.protocols import protocol

CASES = [
    ("fixed_mul", {"x_shape": [3], "y_shape": [3], "divisor": 1000}, 2),
    ("fixed_matmul", {"x_shape": [4, 2], "y_shape": [2, 2], "divisor": 1000}, 2),
    ("mul", {"x_shape": [2, 3], "y_shape": [3]}, 2),
    ("truncate", {"shape": [5], "divisor": 1000}, 1),
    *[(name, {"shape": [6]}, COMPARISONS[name].arity) for name in sorted(COMPARISONS)],
    # large enough for the binary borrow tree
    *[(name, {"shape": [RADIX_FOUR_MAX + 1]}, COMPARISONS[name].arity)
      for name in ("relu_with_mask", "gt")],
]


def _parties(name, params, arity, prgs, op_id, inputs, late):
    spec = protocol(name)
    correction = spec.deal(prgs, [op_id], params)[0]
    n = len(prgs)
    taken = []

    def wait_for_correction():
        taken.append(True)
        return correction

    parties = [
        spec.party(prgs[i], op_id, i, n, [x[i] for x in inputs], params,
                   (wait_for_correction if late else correction) if i == n - 1 else None)
        for i in range(n)
    ]
    return parties, taken


def _without_prepare(parties):
    messages = [p.first_message() for p in parties]
    while messages[0] is not None:
        messages = [p.receive(messages) for p in parties]
    return [p.outputs() for p in parties]


@pytest.mark.parametrize(
    "name, params, arity", CASES, ids=[f"{c[0]}-{c[1].get('shape', '')}" for c in CASES]
)
def test_outputs_do_not_depend_on_whether_a_party_prepared(name, params, arity):
    prgs = [Prg(fresh_seed()) for _ in range(3)]
    op_id = os.urandom(16)
    shapes = ([params["x_shape"], params["y_shape"]] if "x_shape" in params
              else [params["shape"]] * arity)
    inputs = [[torch.randint(-2**40, 2**40, s) for _ in prgs] for s in shapes]
    prepared, taken = _parties(name, params, arity, prgs, op_id, inputs, late=True)
    first = [p.first_message() for p in prepared]
    assert not taken, "the first message never waits for the provider's correction"
    for p in prepared:
        p.prepare()
    messages = first
    while (nxt := [p.receive(messages) for p in prepared])[0] is not None:
        for p in prepared:
            p.prepare()
        messages = nxt
    outputs = [p.outputs() for p in prepared]
    assert taken == [True], "the correction is taken once, by the first prepare that needs it"
    later, _ = _parties(name, params, arity, prgs, op_id, inputs, late=False)
    for got, expected in zip(outputs, _without_prepare(later), strict=True):
        assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
