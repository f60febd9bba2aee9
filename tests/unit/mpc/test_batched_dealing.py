"""The provider deals a batch of ops at once (material dealt ahead of need): each op gets
the very correction it would get dealt alone, so the parties, which derive their material
op by op, cannot tell the difference."""

from __future__ import annotations

import os

import pytest
import torch

from zsyft.mpc.comparison_material import COMPARISONS
from zsyft.mpc.convolution import Convolution
from zsyft.mpc.prg import Prg, fresh_seed
from zsyft.runtime.protocols import protocol

CONV = Convolution((1, 1), (1, 1), (1, 1), False, (0, 0), 1).to_wire()
CASES = [
    ("mul", {"x_shape": [3], "y_shape": [3]}),
    ("mul", {"x_shape": [2, 1], "y_shape": [3]}),  # broadcasting, operands of other ranks
    ("mul", {"x_shape": [], "y_shape": [2, 2]}),  # a scalar operand
    ("mul", {"x_shape": [0, 3], "y_shape": [0, 3]}),  # empty
    ("matmul", {"x_shape": [2, 3, 4], "y_shape": [4, 5]}),  # batched matmul
    ("matmul", {"x_shape": [4], "y_shape": [4, 2]}),  # a vector operand
    ("fixed_mul", {"x_shape": [4, 1], "y_shape": [4, 1], "divisor": 1000}),
    ("fixed_matmul", {"x_shape": [4, 2], "y_shape": [2, 2], "divisor": 1000}),
    ("fixed_mul", {"x_shape": [0, 2], "y_shape": [0, 2], "divisor": 1000}),  # empty
    ("fixed_matmul", {"x_shape": [3], "y_shape": [3], "divisor": 1 << 16}),  # a 0-d product
    ("fixed_conv", {"x_shape": [1, 2, 5, 5], "y_shape": [3, 2, 3, 3], "divisor": 1000,
                    "conv": CONV}),
    ("conv", {"x_shape": [2, 1, 4, 4], "y_shape": [2, 1, 3, 3], "conv": CONV}),
    ("truncate", {"shape": [2, 3], "divisor": 1000}),
    ("truncate", {"shape": [], "divisor": 3}),
    *[(name, {"shape": [5]}) for name in sorted(COMPARISONS)],
    ("relu_with_mask", {"shape": [4, 3]}),  # 12 elements: 1-bit words end mid-byte
    ("relu", {"shape": [0]}),
]


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize(
    "name, params", CASES, ids=[f"{name}-{i}" for i, (name, _) in enumerate(CASES)]
)
def test_a_batch_gets_the_corrections_its_ops_get_dealt_one_by_one(name, params, parties):
    prgs = [Prg(fresh_seed()) for _ in range(parties)]
    op_ids = [os.urandom(16) for _ in range(5)]
    deal = protocol(name).deal
    together = deal(prgs, op_ids, params)
    alone = [deal(prgs, [op_id], params)[0] for op_id in op_ids]
    assert len(together) == len(op_ids)
    for batched, single in zip(together, alone, strict=True):
        assert (batched.dtype, batched.shape) == (single.dtype, single.shape)
        assert torch.equal(batched, single)
    if together[0].numel():
        assert not torch.equal(together[0], together[1]), "each op has material of its own"
