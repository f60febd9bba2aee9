"""Ops of `SharedTensor` built from its other ops: losses and in-place variants.

torch hands some common training ops to `__torch_dispatch__` whole, as aten ops of their own
(`F.mse_loss` is `aten.mse_loss`, `nn.ReLU(inplace=True)` is `aten.relu_`). Here each is
written with the shared ops that `shared_linear` and `shared_protocols` implement, so it
costs exactly their rounds and bytes:

- `mse_loss` (`F.mse_loss`, `nn.MSELoss`): the difference, one fixed-point product of it
  with itself (2 rounds), then the reduction (`mean` adds a truncation round).
- `mse_loss_backward`: `2 (input - target) * grad` (2 rounds), divided by numel for `mean`
  (one truncation round, by the integer itself).
- `relu_`: ReLU's protocol, the shares replaced in place; in training, the tensor keeps
  ReLU's shared bit `[x > 0]` for the backward pass, as the out-of-place `relu` does.
- `abs` (`F.l1_loss`): `2 relu(x) - x`, one ReLU protocol. Its backward, `grad * sgn(x)`,
  uses `sgn`/`sign`: `[x > 0] - [x < 0]`, both sign tests in one comparison op (on `x`
  and `-x` stacked), so `sgn(0) = 0` as in torch.

Registered after `shared_protocols`, whose handlers they call.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.tensors.ops import SHARED_OPS, UnsupportedOpError, op_name
from zsyft.tensors.ops import shared_linear as linear
from zsyft.tensors.ops import shared_protocols as protocols
from zsyft.tensors.protocol_client import run_protocol
from zsyft.tensors.shared import SharedTensor

aten = torch.ops.aten

# at::Reduction, as aten's loss ops take it
_NONE, _MEAN, _SUM = 0, 1, 2


def _reduction(func: Any, args: tuple, kwargs: dict, position: int) -> int:
    reduction = args[position] if len(args) > position else kwargs.get("reduction", _MEAN)
    if reduction not in (_NONE, _MEAN, _SUM):
        raise UnsupportedOpError(f"{op_name(func)} with reduction {reduction!r}",
                                 op=op_name(func))
    return reduction


@SHARED_OPS.register(aten.mse_loss.default)
def mse_loss(func: Any, args: tuple, kwargs: dict) -> Any:
    """`F.mse_loss(input, target, reduction=...)` on shared (or one public) operands."""
    reduction = _reduction(func, args, kwargs, 2)
    difference = torch.sub(args[0], args[1])
    squared = torch.mul(difference, difference)
    if reduction == _MEAN:
        return torch.mean(squared)
    return torch.sum(squared) if reduction == _SUM else squared


@SHARED_OPS.register(aten.mse_loss_backward.default)
def mse_loss_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    """d mse_loss / d input = `2 (input - target) grad`, divided by numel for `mean`."""
    grad, x, target = args[0], args[1], args[2]
    reduction = _reduction(func, args, kwargs, 3)
    gradient = torch.mul(torch.mul(torch.sub(x, target), 2), grad)
    return torch.div(gradient, x.numel()) if reduction == _MEAN else gradient


@SHARED_OPS.register(aten.relu_.default)
def relu_(func: Any, args: tuple, kwargs: dict) -> Any:
    """`nn.ReLU(inplace=True)`, `F.relu(x, inplace=True)`, `x.relu_()`."""
    x = args[0]
    if not isinstance(x, SharedTensor):
        raise UnsupportedOpError("relu_ into a tensor that is not shared", op="relu_")
    result = protocols.relu(aten.relu.default, (x,), {})
    protocols.in_place(x, result)
    x.positive_mask = result.positive_mask  # the values are relu(x)'s now, so is the mask
    return x


@SHARED_OPS.register(aten.abs.default)
def absolute(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.abs()` = `2 relu(x) - x` (the plain ReLU protocol: no mask is kept for it)."""
    x = args[0]
    g = linear.group(func, args)
    shape = list(x.shape)
    positive = g.result(run_protocol("relu", [x.shares], g.crypto_provider, {"shape": shape},
                                     shape))
    return torch.sub(torch.mul(positive, 2), x)


@SHARED_OPS.register(aten.sgn.default, aten.sign.default)
def sign(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.sign()`: `[x > 0] - [x < 0]` in the tensor's encoding, from one comparison op."""
    x = args[0]
    g = linear.group(func, args)
    both = torch.stack([x, torch.neg(x)])
    shape = list(both.shape)
    bits = run_protocol("gtz", [both.shares], g.crypto_provider, {"shape": shape}, shape)
    return g.result([torch.mul(torch.sub(b[0], b[1]), g.encoder.scale) for b in bits])
