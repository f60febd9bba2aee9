"""Piecewise-linear activations of `SharedTensor` built from ReLU: clamp, hardtanh, ReLU6,
leaky ReLU, forward and backward.

All are exact (no approximation): with `r(t) = relu(t)`,

- `clamp(x, lo, hi)` = `hardtanh(x, lo, hi)` = `lo + r(x - lo) - r(x - hi)` (both ReLUs as
  one ReLU protocol op on the stacked differences), `clamp(x, min=lo)` = `lo + r(x - lo)`,
  `clamp(x, max=hi)` = `hi - r(hi - x)`. `F.relu6` is `hardtanh(x, 0, 6)`.
- `hardtanh_backward` = `grad * [lo < x < hi]`, and `[lo < x < hi] = [x > lo] + [hi - x > 0]
  - 1` (for lo < hi one of the two always holds): one comparison op on the stacked
  differences, then one exact Beaver product of the gradient with that shared 0/1 mask.
- `leaky_relu(x, s)` = `r(x) + s (x - r(x))`: one ReLU op and one truncation (by the slope's
  encoding). In training the input keeps ReLU's shared bit `[x > 0]`
  (`SharedTensor.positive_mask`), so the backward, `grad * (s + (1 - s)[x > 0])` =
  `m + s (grad - m)` with `m = grad * [x > 0]`, is one exact Beaver product and one
  truncation, without a second comparison.

`clamp` has no backward here (torch's formula for it needs boolean logic on the mask): under
autograd it refuses at once and points to `F.hardtanh`, which is the same function with one.
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


def _stacked(g: linear.Group, name: str, pieces: list[SharedTensor]) -> list[list[Any]]:
    """Protocol `name` (relu, gtz) on the pieces stacked into one op: per piece, the shares
    of its output."""
    stacked = torch.stack(pieces)
    shape = list(stacked.shape)
    out = run_protocol(name, [stacked.shares], g.crypto_provider, {"shape": shape}, shape)
    return [[share[k] for share in out] for k in range(len(pieces))]


def _shared(func: Any, x: Any) -> SharedTensor:
    if not isinstance(x, SharedTensor):
        raise UnsupportedOpError(f"{op_name(func)} of a tensor that is not shared",
                                 op=op_name(func))
    return x


def _bounds(value: Any, func: Any) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    raise UnsupportedOpError(f"{op_name(func)} with tensor bounds on a shared tensor: use "
                             "numbers", op=op_name(func))


def clamp_values(func: Any, x: SharedTensor, lo: float | None, hi: float | None) -> Any:
    """`x` clamped to `[lo, hi]` (either may be None), exactly, with one ReLU op."""
    g = linear.group(func, [x])
    if lo is not None and hi is not None:
        if lo > hi:  # torch's rule: every element becomes hi
            return torch.add(torch.zeros_like(x), hi)
        above_lo, above_hi = (g.result(s) for s in _stacked(g, "relu", [x - lo, x - hi]))
        return torch.add(torch.sub(above_lo, above_hi), lo)
    if lo is not None:
        return torch.add(g.result(_stacked(g, "relu", [x - lo])[0]), lo)
    if hi is not None:
        return torch.rsub(g.result(_stacked(g, "relu", [torch.rsub(x, hi)])[0]), hi)
    raise UnsupportedOpError("clamp needs min or max", op=op_name(func))


_CLAMPS = {
    aten.clamp.default: lambda a: (a[1] if len(a) > 1 else None, a[2] if len(a) > 2 else None),
    aten.clamp_.default: lambda a: (a[1] if len(a) > 1 else None, a[2] if len(a) > 2 else None),
    aten.clamp_min.default: lambda a: (a[1], None),
    aten.clamp_min_.default: lambda a: (a[1], None),
    aten.clamp_max.default: lambda a: (None, a[1]),
    aten.clamp_max_.default: lambda a: (None, a[1]),
}


@SHARED_OPS.register(*_CLAMPS)
def clamp(func: Any, args: tuple, kwargs: dict) -> Any:
    x = _shared(func, args[0])
    if torch.is_grad_enabled() and x.requires_grad:
        raise UnsupportedOpError(
            f"{op_name(func)} of shared tensors has no backward pass in zsyft: use "
            "F.hardtanh(x, min_val, max_val) (the same values, with a backward), or call it "
            "under torch.no_grad()",
            op=op_name(func),
        )
    lo, hi = (_bounds(v, func) for v in _CLAMPS[func](args))
    result = clamp_values(func, x, lo, hi)
    return protocols.in_place(x, result) if func._schema.is_mutable else result


def _hardtanh_bounds(args: tuple, first: int) -> tuple[float, float]:
    lo = args[first] if len(args) > first else -1.0
    hi = args[first + 1] if len(args) > first + 1 else 1.0
    return lo, hi


@SHARED_OPS.register(aten.hardtanh.default, aten.hardtanh_.default)
def hardtanh(func: Any, args: tuple, kwargs: dict) -> Any:
    """`F.hardtanh`, `nn.Hardtanh`, `F.relu6`, `nn.ReLU6` (in place too)."""
    x = _shared(func, args[0])
    lo, hi = _hardtanh_bounds(args, 1)
    result = clamp_values(func, x, _bounds(lo, func), _bounds(hi, func))
    return protocols.in_place(x, result) if func is aten.hardtanh_.default else result


@SHARED_OPS.register(aten.hardtanh_backward.default)
def hardtanh_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    grad, x = _shared(func, args[0]), _shared(func, args[1])
    lo, hi = _hardtanh_bounds(args, 2)
    if list(grad.shape) != list(x.shape):
        raise UnsupportedOpError("hardtanh_backward with a broadcast gradient",
                                 op=op_name(func))
    g = linear.group(func, args[:2])
    if lo > hi:
        return torch.zeros_like(grad)
    above_lo, below_hi = _stacked(g, "gtz", [x - lo, torch.rsub(x, hi)])
    inside = [a + b - (1 if i == 0 else 0)
              for i, (a, b) in enumerate(zip(above_lo, below_hi, strict=True))]
    return protocols.times_mask(g, grad, inside)


def _slope(func: Any, args: tuple, position: int) -> float:
    slope = args[position] if len(args) > position else 0.01
    if not isinstance(slope, int | float):
        raise UnsupportedOpError(f"{op_name(func)} with a tensor slope", op=op_name(func))
    return slope


@SHARED_OPS.register(aten.leaky_relu.default, aten.leaky_relu_.default)
def leaky_relu(func: Any, args: tuple, kwargs: dict) -> Any:
    """`F.leaky_relu`, `nn.LeakyReLU` (in place too)."""
    x = _shared(func, args[0])
    slope = _slope(func, args, 1)
    g = linear.group(func, args)
    kept = protocols.relu(aten.relu.default, (x,), {})  # keeps [x > 0] in training
    result = torch.add(kept, protocols.scale_by_public(g, torch.sub(x, kept), slope, func))
    if func is aten.leaky_relu_.default:
        protocols.in_place(x, result)
        result = x  # holds the output now, whose sign is the input's for a slope >= 0
    if kept.positive_mask is not None and slope >= 0:
        x.positive_mask = kept.positive_mask  # [x > 0], for the backward pass
    return result


@SHARED_OPS.register(aten.leaky_relu_backward.default)
def leaky_relu_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    grad, x = _shared(func, args[0]), _shared(func, args[1])
    slope = _slope(func, args, 2)
    if list(grad.shape) != list(x.shape):
        raise UnsupportedOpError("leaky_relu_backward with a broadcast gradient",
                                 op=op_name(func))
    if slope < 0 and len(args) > 3 and args[3]:
        raise UnsupportedOpError("in-place leaky_relu with a negative slope has no backward",
                                 op=op_name(func))
    g = linear.group(func, args[:2])
    mask = x.positive_mask if x.positive_mask is not None else _stacked(g, "gtz", [x])[0]
    kept = protocols.times_mask(g, grad, mask)
    return torch.add(kept, protocols.scale_by_public(g, torch.sub(grad, kept), slope, func))
