"""`max`, `min`, `argmax`, `argmin`, `maximum`, `minimum` of `SharedTensor`s, by comparisons
(and the tournament `max_pool2d` runs, see `shared_pooling`).

Nothing is revealed: which element wins stays secret, and so does its index.

- Elementwise `maximum(x, y)` is `y + relu(x - y)` (`minimum` likewise): one ReLU protocol.
- Reductions along a dimension run a tournament, as SecureNN's maximum does (Wagh et al.,
  "SecureNN: 3-Party Secure Computation for Neural Network Training", PETS 2019): the
  candidates are paired, each pair's winner is selected with the shared bit
  `[a >= b]` (the sign test of `a - b`, then one Beaver product of the bit with `a - b` and
  with the difference of the pair's indices, exact), and the winners go on to the next level.
  A dimension of n elements costs ceil(log2 n) levels of 5 rounds (8 while a level compares
  more than 4096 pairs). On equal values the earlier element wins, so `argmax` names the
  first maximum, as torch's does.
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


def tournament(x: SharedTensor, dim: int, want_index: bool,
                positions: torch.Tensor | None = None,
                want_choice: bool = False) -> tuple[Any, Any, Any]:
    """Maximum of `x` along `dim` (dimension removed), and its index (or None): the position
    along `dim`, or the entry of the public `positions` (broadcast to `x` with `dim` last).
    With `want_choice`, also each party's share of the one-hot choice (0/1, unscaled; the
    dimension moved last), kept by `max_pool2d` for its backward pass; else None."""
    g = linear.group(aten.max.dim, [x])
    order = [d for d in range(x.dim()) if d != dim] + [dim]
    values = x.permute(order) if dim != x.dim() - 1 else x
    indices = None
    if want_index:
        if positions is None:
            positions = torch.arange(values.shape[-1])
        indices = torch.add(torch.zeros_like(values), positions.to(values.dtype))
    choice = _identity_choice(values) if want_choice else None
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
        if choice is None:
            picked = g.result(run_protocol("mul", [stacked.shares, mask], g.crypto_provider,
                                           {"x_shape": both, "y_shape": both}, both))
        else:
            picked, choice = _pick_with_choice(g, stacked, mask, bit, choice, pairs)
        odd = values.shape[-1] % 2  # the odd one out goes on to the next level as it is
        values = _winners(b, picked[0], values if odd else None)
        if indices is not None:
            indices = _winners(indices[..., 1:2 * pairs:2], picked[1], indices if odd else None)
    if choice is not None:
        choice = [c.squeeze(-2) for c in choice]
    return (values.squeeze(-1), indices.squeeze(-1) if indices is not None else None, choice)


def _identity_choice(values: SharedTensor) -> list[Any]:
    """Shares of each candidate's one-hot position: the identity at party 0, zeros elsewhere."""
    k = values.shape[-1]
    shape = [*values.shape, k]
    shares = [piece.new_zeros(shape) for piece in values.shares]
    shares[0] = torch.add(shares[0], torch.eye(k, dtype=torch.int64))
    return shares


def _pick_with_choice(g: Any, stacked: Any, mask: list[Any], bit: list[Any],
                      choice: list[Any], pairs: int) -> tuple[Any, list[Any]]:
    """One level's products with the shared bit, the one-hot choices' differences included
    in the same protocol op (flattened together), and the choices that won."""
    k = choice[0].shape[-1]
    a_choice = [c[..., 0:2 * pairs:2, :] for c in choice]
    b_choice = [c[..., 1:2 * pairs:2, :] for c in choice]
    step = [torch.sub(a_c, b_c) for a_c, b_c in zip(a_choice, b_choice, strict=True)]
    main = stacked.numel()
    xs = [torch.cat([s.reshape(-1), d.reshape(-1)]) for s, d in zip(stacked.shares, step,
                                                                    strict=True)]
    ms = [torch.cat([m.reshape(-1), piece.unsqueeze(-1).expand(*piece.shape, k).reshape(-1)])
          for m, piece in zip(mask, bit, strict=True)]
    total = [xs[0].numel()]
    flat = run_protocol("mul", [xs, ms], g.crypto_provider,
                        {"x_shape": total, "y_shape": total}, total)
    picked = g.result([f[:main].view(stacked.shape) for f in flat])
    won = [torch.add(b_c, f[main:].view(b_c.shape)) for b_c, f in zip(b_choice, flat,
                                                                      strict=True)]
    if choice[0].shape[-2] % 2:
        won = [torch.cat([w, c[..., -1:, :]], -2) for w, c in zip(won, choice, strict=True)]
    return picked, won


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
        values, indices, _ = tournament(source.view(-1), 0, want_index)
        if keepdim:
            values = values.view([1] * x.dim())
            indices = indices.view([1] * x.dim()) if indices is not None else None
    else:
        dim = dim % max(x.dim(), 1)
        values, indices, _ = tournament(source if x.dim() else source.view(1), dim,
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
