"""`max`, `min`, `argmax`, `argmin`, `maximum`, `minimum`, `max_pool2d` of `SharedTensor`s,
by comparisons.

Nothing is revealed: which element wins stays secret, and so does its index.

- Elementwise `maximum(x, y)` is `y + relu(x - y)` (`minimum` likewise): one ReLU protocol.
- Reductions along a dimension run a tournament, as SecureNN's maximum does (Wagh et al.,
  "SecureNN: 3-Party Secure Computation for Neural Network Training", PETS 2019): the
  candidates are paired, each pair's winner is selected with the shared bit
  `[a >= b]` (the sign test of `a - b`, then one Beaver product of the bit with `a - b` and
  with the difference of the pair's indices, exact), and the winners go on to the next level.
  A dimension of n elements costs ceil(log2 n) levels of 8 rounds. On equal values the
  earlier element wins, so `argmax` names the first maximum, as torch's does.
- `max_pool2d` cuts each share into its windows (`unfold`, no message beyond the pointer op)
  and runs the tournament over each window's elements; its index is the winner's position in
  the input's plane, as torch's is, carried through the tournament as public positions.
- The index is a shared value in the tensor's own encoding (like every value under
  `fix_precision()`), so `pred.eq(target)` against shared labels works as in PySyft; `.get()`
  then `.float_precision()` gives it as a float.

Their backward passes are not supported: use them for evaluation (`torch.no_grad()`); with
autograd on, they refuse at once rather than fail inside `backward()`.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.tensors.ops import SHARED_OPS, UnsupportedOpError, op_name
from zsyft.tensors.ops import shared_linear as linear
from zsyft.tensors.protocol_client import run_protocol
from zsyft.tensors.shared import SharedTensor

aten = torch.ops.aten


def _tournament(x: SharedTensor, dim: int, want_index: bool,
                positions: torch.Tensor | None = None) -> tuple[Any, Any]:
    """Maximum of `x` along `dim` (dimension removed), and its index (or None): the position
    along `dim`, or the entry of the public `positions` (broadcast to `x` with `dim` last)."""
    g = linear.group(aten.max.dim, [x])
    order = [d for d in range(x.dim()) if d != dim] + [dim]
    values = x.permute(order) if dim != x.dim() - 1 else x
    indices = None
    if want_index:
        if positions is None:
            positions = torch.arange(values.shape[-1])
        indices = torch.add(torch.zeros_like(values), positions.to(values.dtype))
    while values.shape[-1] > 1:
        pairs = values.shape[-1] // 2
        a, b = values[..., 0:2 * pairs:2], values[..., 1:2 * pairs:2]
        difference = torch.sub(a, b)
        shape = list(difference.shape)
        bit = run_protocol("gez", [difference.shares], g.crypto_provider, {"shape": shape},
                           shape)
        chosen = [difference]
        if indices is not None:
            chosen.append(torch.sub(indices[..., 0:2 * pairs:2], indices[..., 1:2 * pairs:2]))
        stacked = torch.stack(chosen)
        mask = [torch.stack([piece] * len(chosen)) for piece in bit]
        both = list(stacked.shape)
        picked = g.result(run_protocol("mul", [stacked.shares, mask], g.crypto_provider,
                                       {"x_shape": both, "y_shape": both}, both))
        odd = values.shape[-1] % 2  # the odd one out goes on to the next level as it is
        values = _winners(b, picked[0], values if odd else None)
        if indices is not None:
            indices = _winners(indices[..., 1:2 * pairs:2], picked[1], indices if odd else None)
    return values.squeeze(-1), (indices.squeeze(-1) if indices is not None else None)


def _winners(b: Any, picked: Any, odd_from: Any) -> Any:
    """`b + [a >= b] (a - b)` per pair, then the unpaired last element of `odd_from`."""
    won = torch.add(b, picked)
    return won if odd_from is None else torch.cat([won, odd_from[..., -1:]], -1)


def _no_backward(func: Any, args: tuple) -> None:
    """Refuse at once when autograd would need the backward pass, which is not supported
    (torch would fail later, in the middle of `backward()`, naming an op the user never
    called)."""
    if torch.is_grad_enabled() and any(
        isinstance(a, SharedTensor) and a.requires_grad for a in args
    ):
        raise UnsupportedOpError(
            f"{op_name(func)} of shared tensors has no backward pass in zsyft: call it under "
            "torch.no_grad() (to evaluate a model, e.g. its accuracy), or use F.relu, whose "
            "backward is supported",
            op=op_name(func),
        )


def _dim_args(func: Any, args: tuple, kwargs: dict) -> tuple[SharedTensor, Any, bool]:
    x = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if not isinstance(x, SharedTensor):
        raise UnsupportedOpError(f"{op_name(func)} of a tensor that is not shared",
                                 op=op_name(func))
    if x.numel() == 0:
        raise UnsupportedOpError(f"{op_name(func)} of an empty tensor", op=op_name(func))
    return x, dim, keepdim


def _reduce(x: SharedTensor, dim: Any, keepdim: bool, want_index: bool,
            smallest: bool) -> tuple[Any, Any]:
    source = torch.neg(x) if smallest else x
    if dim is None:
        values, indices = _tournament(source.view(-1), 0, want_index)
        if keepdim:
            values = values.view([1] * x.dim())
            indices = indices.view([1] * x.dim()) if indices is not None else None
    else:
        dim = dim % max(x.dim(), 1)
        values, indices = _tournament(source if x.dim() else source.view(1), dim,
                                      want_index)
        if keepdim:
            values = values.unsqueeze(dim)
            indices = indices.unsqueeze(dim) if indices is not None else None
    return (torch.neg(values) if smallest else values), indices


@SHARED_OPS.register(aten.max.default, aten.min.default, aten.amax.default, aten.amin.default)
def extreme(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.max()`, `x.min()`, `torch.amax(x, dim)`, `torch.amin(x, dim)`: the values only."""
    _no_backward(func, args)
    x, dim, keepdim = _dim_args(func, args, kwargs)
    if isinstance(dim, list | tuple):
        if len(dim) > 1:
            raise UnsupportedOpError(f"{op_name(func)} over several dimensions",
                                     op=op_name(func))
        dim = dim[0] if dim else None
    smallest = func.overloadpacket in (aten.min, aten.amin)
    return _reduce(x, dim, keepdim, False, smallest)[0]


@SHARED_OPS.register(aten.max.dim, aten.min.dim)
def extreme_along(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.max(dim)`, `x.min(dim)`: values and (shared) indices."""
    _no_backward(func, args)
    x, dim, keepdim = _dim_args(func, args, kwargs)
    values, indices = _reduce(x, dim, keepdim, True, func.overloadpacket is aten.min)
    return values, indices


@SHARED_OPS.register(aten.argmax.default, aten.argmin.default)
def arg_extreme(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.argmax(dim)`, `x.argmin(dim)` (all elements when `dim` is None): shared indices."""
    x, dim, keepdim = _dim_args(func, args, kwargs)
    return _reduce(x, dim, keepdim, True, func.overloadpacket is aten.argmin)[1]


@SHARED_OPS.register(aten.maximum.default, aten.minimum.default, aten.max.other,
                     aten.min.other)
def pairwise(func: Any, args: tuple, kwargs: dict) -> Any:
    """`torch.maximum(x, y)` = `y + relu(x - y)`; `torch.minimum(x, y)` = `x - relu(x - y)`."""
    _no_backward(func, args)
    x, y = args[0], args[1]
    excess = torch.relu(torch.sub(x, y))
    if func.overloadpacket in (aten.maximum, aten.max):
        return torch.add(y, excess)
    return torch.sub(x, excess)


@SHARED_OPS.register(aten.max_pool2d_with_indices.default)
def max_pool2d(func: Any, args: tuple, kwargs: dict) -> Any:
    """`F.max_pool2d` (`nn.MaxPool2d`): a tournament over each window's elements, with the
    (shared) index of each maximum in the input's plane, as torch gives it. Windows are cut
    share by share (`unfold`); padding is not supported (it pads with -inf)."""
    _no_backward(func, args)
    x = args[0]

    def pair(position: int, default: Any) -> list[int]:
        value = args[position] if len(args) > position and args[position] else default
        return list(value) * 2 if len(value) == 1 else list(value)

    kernel = pair(1, None)
    stride, padding, dilation = pair(2, kernel), pair(3, [0]), pair(4, [1])
    ceil_mode = len(args) > 5 and args[5]
    height, width = x.shape[-2:]
    sizes = [(n - d * (k - 1) - 1) // s + 1
             for n, k, s, d in zip((height, width), kernel, stride, dilation, strict=True)]
    if any(padding) or (ceil_mode and any(
        (n - d * (k - 1) - 1) % s for n, k, s, d in zip((height, width), kernel, stride,
                                                        dilation, strict=True)
    )):
        raise UnsupportedOpError(
            "max_pool2d on shared tensors takes no padding and ceil_mode=False (padding "
            "would need -inf); pad the input with F.pad(x, ..., value=<a low number>) first",
            op="max_pool2d",
        )
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    windows = x.unfold(-2, spans[0], stride[0]).unfold(-2, spans[1], stride[1])
    if dilation != [1, 1]:
        windows = windows[..., ::dilation[0], ::dilation[1]]
    windows = windows.reshape(*windows.shape[:-2], kernel[0] * kernel[1])
    rows = torch.arange(sizes[0]).view(-1, 1, 1, 1) * stride[0] + torch.arange(
        0, spans[0], dilation[0]).view(1, 1, -1, 1)
    cols = torch.arange(sizes[1]).view(1, -1, 1, 1) * stride[1] + torch.arange(
        0, spans[1], dilation[1]).view(1, 1, 1, -1)
    positions = (rows * width + cols).reshape(sizes[0], sizes[1], -1)
    return _tournament(windows, windows.dim() - 1, True, positions)
