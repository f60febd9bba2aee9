"""Selecting with masks on `SharedTensor`s: `torch.where`, `masked_fill` and `!=`.

A comparison of shared values gives a *shared* 0/1 mask (`ops.shared_protocols.compare`),
so choosing between two values by it cannot be an index operation, which would show each
party which elements were chosen. It is arithmetic instead, one fixed-point product:
`where(m, x, y) = y + m * (x - y)` and `masked_fill(x, m, v) = x + m * (v - x)`.
With a public (bool) mask both stay share by share, as PySyft did: `where` picks each
party's shares, and `masked_fill` writes the encoded value into party 0's share and zeros
into the others'.

Indexing by a shared mask or index (`x[x > 0]`, `gather` with shared positions) is refused
with a pointer to these forms: its result's shape alone would reveal the mask.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.tensors.ops import SHARED_OPS, UnsupportedOpError, op_name
from zsyft.tensors.ops.shared_linear import group, public_encoding
from zsyft.tensors.ops.shared_shape import per_share
from zsyft.tensors.shared import SharedTensor

aten = torch.ops.aten


@SHARED_OPS.register(aten.where.self)
def where(func: Any, args: tuple, kwargs: dict) -> Any:
    """`torch.where(condition, x, y)`: per share for a public condition and two shared
    values, else by arithmetic, `y + condition * (x - y)` (a product with a public 0/1 mask
    is share-wise; with a shared condition it is one multiplication)."""
    condition, x, y = args
    if not isinstance(condition, SharedTensor) and all(isinstance(v, SharedTensor) for v in (x, y)):
        return per_share(func, args, kwargs)
    return torch.add(y, torch.mul(condition, torch.sub(x, y)))


@SHARED_OPS.register(
    aten.masked_fill.Scalar, aten.masked_fill.Tensor, aten.masked_fill_.Scalar,
    aten.masked_fill_.Tensor,
)
def masked_fill(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.masked_fill(mask, value)` for a shared or public mask (see the module text)."""
    x, mask, value = args
    in_place = func._schema.is_mutable
    if isinstance(mask, SharedTensor):
        filled = torch.add(x, torch.mul(mask, torch.rsub(x, value)))
        return x.copy_(filled) if in_place else filled
    if isinstance(value, SharedTensor):
        raise UnsupportedOpError(
            f"{op_name(func)} with a shared fill value and a public mask: use "
            "torch.where(mask, value, x)",
            op=op_name(func),
        )
    g = group(func, [x])
    encoded = public_encoding(value, g, func)
    if isinstance(encoded, torch.Tensor) and encoded.dim() > 0:
        raise UnsupportedOpError(
            f"{op_name(func)} takes a number or a 0-d tensor as the value", op=op_name(func)
        )
    fills = [int(encoded)] + [0] * (len(x.shares) - 1)
    if in_place:
        for piece, fill in zip(x.shares, fills, strict=True):
            piece.masked_fill_(mask, fill)
        return x
    return g.result([piece.masked_fill(mask, fill) for piece, fill in zip(x.shares, fills,
                                                                            strict=True)])


@SHARED_OPS.register(aten.ne.Tensor, aten.ne.Scalar)
def not_equal(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x != y` is `1 - (x == y)`: a shared 0/1 mask, like the other comparisons."""
    return torch.rsub(torch.eq(args[0], args[1]), 1)
