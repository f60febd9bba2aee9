"""Views, indexing, joining, copies and constants of `SharedTensor`, share by share.

Moving elements around commutes with adding shares, so each party applies the op to its own
share (a pipelined pointer op). Plain tensors among the arguments must be indices or masks
(integer or bool): a public *value* would have to be added by party 0 only, which the
arithmetic ops do. `view` runs as `reshape` on each share, so a share whose strides differ
from party 0's (after a broadcast) is copied rather than failing at its worker. Public
constants (`ones_like`, `new_full`, a public source of `copy_`) go to party 0 encoded while
the other parties hold zeros.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.tensors._torch_compat import restride_wrapper
from zsyft.tensors.ops import (
    SHARED_OPS,
    UnsupportedOpError,
    is_plain,
    op_name,
    written_into_public,
)
from zsyft.tensors.ops.shared_linear import group, public_encoding
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.remote_ops import call_remote
from zsyft.tensors.shared import SharedTensor

aten = torch.ops.aten

PER_SHARE = (
    aten.t.default, aten.transpose.int, aten.permute.default, aten.expand.default,
    aten.unsqueeze.default, aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims,
    aten.select.int, aten.slice.Tensor, aten.index.Tensor, aten.index_select.default,
    aten.clone.default, aten.flip.default, aten.roll.default, aten.repeat.default,
    aten.unbind.int, aten.split.Tensor, aten.split_with_sizes.default, aten.diagonal.default,
    aten.tril.default, aten.triu.default, aten.gather.default, aten.index_put.default,
    aten.index_put_.default, aten.unfold.default, aten.cumsum.default,
    aten.unsafe_split.Tensor, aten.unsafe_split_with_sizes.default, aten.embedding.default,
    aten.embedding_dense_backward.default,
)
_INDEX_ARGUMENT = {
    aten.index.Tensor: 1, aten.index_select.default: 2, aten.gather.default: 2,
    aten.index_put.default: 1, aten.index_put_.default: 1, aten.embedding.default: 1,
    aten.embedding_dense_backward.default: 1,
}


def _party_args(func: Any, value: Any, i: int) -> Any:
    """`value` as party i sees it: shared operands become its share."""
    if isinstance(value, SharedTensor):
        return value.shares[i]
    if isinstance(value, list | tuple):
        return [_party_args(func, item, i) for item in value]
    if isinstance(value, torch.Tensor) and (
        not is_plain(value) or value.is_floating_point() or value.is_complex()
    ):
        raise UnsupportedOpError(
            f"{op_name(func)} got a public value tensor next to a shared one; share it too "
            "(only indices and masks may be public here)",
            op=op_name(func),
        )
    return value


def _results(g: Any, per_party: list[Any]) -> Any:
    """Assemble party outputs (a pointer each, or a sequence of them) into SharedTensors."""
    first = per_party[0]
    if isinstance(first, PointerTensor):
        return g.result(per_party)
    return [g.result(list(parts)) for parts in zip(*per_party, strict=True)]


def _run(func: Any, args: tuple, kwargs: dict) -> tuple[Any, list[Any]]:
    """The operands' group, and the op's output at each party."""
    g = group(func, args)
    outs = [
        call_remote(func, *_party_args(func, args, i), **_party_args(func, kwargs, i))
        for i in range(len(g.parties))
    ]
    return g, outs


def _refuse_shared_index(func: Any, args: tuple) -> None:
    position = _INDEX_ARGUMENT.get(func)
    index = args[position] if position is not None and len(args) > position else None
    if isinstance(index, SharedTensor) or (
        isinstance(index, list | tuple) and any(isinstance(i, SharedTensor) for i in index)
    ):
        raise UnsupportedOpError(
            f"{op_name(func)} with a shared index or mask would show every party which "
            "elements it selects; use torch.where(mask, x, other), x.masked_fill(mask, v) or "
            "x * mask instead (or .get() the mask first)",
            op=op_name(func),
        )


KEEP_PUBLIC_VALUE = frozenset({
    aten.t.default, aten.transpose.int, aten.permute.default, aten.expand.default,
    aten.unsqueeze.default, aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims,
    aten.select.int, aten.slice.Tensor, aten.clone.default,
})
"""Ops that move a shared constant's elements only: the result's public value is the op
applied to the constant's (`SharedTensor.public_value`)."""


def _follow_public_value(func: Any, args: tuple, kwargs: dict, result: Any) -> Any:
    x = args[0]
    known = x.public_value() if isinstance(x, SharedTensor) else None
    if known is not None and isinstance(result, SharedTensor):
        result.set_public_value(func(known, *args[1:], **kwargs))
    return result


@SHARED_OPS.register(*PER_SHARE)
def per_share(func: Any, args: tuple, kwargs: dict) -> Any:
    _refuse_shared_index(func, args)
    if func is aten.embedding_dense_backward.default and (args[4:5] or [False])[0]:
        raise UnsupportedOpError(
            "nn.Embedding(scale_grad_by_freq=True) divides gradients by how often each index "
            "occurs, which shares cannot do exactly; leave scale_grad_by_freq off",
            op=op_name(func),
        )
    g, outs = _run(func, args, kwargs)
    if func is aten.index_put_.default:
        return args[0]
    result = _results(g, outs)
    if func in KEEP_PUBLIC_VALUE:
        _follow_public_value(func, args, kwargs, result)
    return result


@SHARED_OPS.register(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def view(func: Any, args: tuple, kwargs: dict) -> Any:
    x, size = args
    result = group(func, args).result([piece.reshape(size) for piece in x.shares])
    return _follow_public_value(aten.reshape.default, args, kwargs, result)


IN_PLACE_VIEWS = (
    aten.t_.default, aten.transpose_.default, aten.unsqueeze_.default, aten.squeeze_.default,
    aten.squeeze_.dim, aten.squeeze_.dims,
)


@SHARED_OPS.register(*IN_PLACE_VIEWS)
def in_place_view(func: Any, args: tuple, kwargs: dict) -> Any:
    """`t_`, `unsqueeze_`, `squeeze_` (torch's matmul of a vector uses it): every share
    changes its shape in place at its party, then the wrapper takes the new shape."""
    x = args[0]
    group(func, args)
    for piece in x.shares:
        func(piece, *args[1:], **kwargs)
    first = x.shares[0]
    restride_wrapper(x, first.shape, first.stride(), first.storage_offset())
    return x


@SHARED_OPS.register(aten.detach.default, aten.alias.default)
def alias(func: Any, args: tuple, kwargs: dict) -> Any:
    """A new wrapper around the same shares (no message: nothing changes at the parties).

    Autograd saves ReLU's output through `detach`, so the alias keeps its `positive_mask`
    (and max pooling's indices their `window_choice`).
    """
    x = args[0]
    alias = SharedTensor(x.shares, x.encoder, x.crypto_provider, x.dtype, x.reveal)
    alias.positive_mask, alias.window_choice = x.positive_mask, x.window_choice
    return _follow_public_value(func, args, kwargs, alias)


@SHARED_OPS.register(aten.cat.default, aten.stack.default)
def join(func: Any, args: tuple, kwargs: dict) -> Any:
    if not all(isinstance(t, SharedTensor) for t in args[0]):
        raise UnsupportedOpError(
            f"{op_name(func)} of shared and public tensors: share every tensor first",
            op=op_name(func),
        )
    return _results(*_run(func, args, kwargs))


@SHARED_OPS.register(aten.select_backward.default, aten.slice_backward.default)
def scatter_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    """Gradient of select/slice: each share scattered into zeros of the input's shape."""
    grad, sizes, dim, *where = args
    outs = []
    for piece in grad.shares:
        zeros = piece.new_zeros(sizes)
        if func is aten.select_backward.default:
            outs.append(torch.select_scatter(zeros, piece, dim, *where))
        else:
            outs.append(torch.slice_scatter(zeros, piece, dim, *where))
    return group(func, args).result(outs)


# -- constants -------------------------------------------------------------------------------
def _dtype(func: Any, x: SharedTensor, kwargs: dict) -> torch.dtype:
    dtype = kwargs.get("dtype")
    if dtype is None or dtype == x.dtype:
        return x.dtype
    if dtype.is_floating_point and x.dtype.is_floating_point:
        return dtype
    raise UnsupportedOpError(
        f"{op_name(func)} to {dtype} is not supported on shared tensors", op=op_name(func)
    )


def _constant(x: SharedTensor, value: Any, func: Any, make: Any) -> list[PointerTensor]:
    """Shares of a public constant: party 0 holds its encoding, the others zeros."""
    zero = isinstance(value, bool | int | float) and value == 0
    encoded = 0 if zero else public_encoding(value, group(func, (x,)), func)
    return [make(piece, encoded if i == 0 else 0) for i, piece in enumerate(x.shares)]


@SHARED_OPS.register(aten.zeros_like.default, aten.ones_like.default, aten.empty_like.default,
                     aten.full_like.default)
def like(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    value = {aten.ones_like.default: 1, aten.full_like.default: args[-1]}.get(func, 0)
    layout = {k: v for k, v in kwargs.items() if k == "memory_format"}
    outs = _constant(x, value, func, lambda piece, v: torch.full_like(piece, v, **layout))
    return _known_constant(group(func, args).result(outs, _dtype(func, x, kwargs)), value)


def _known_constant(result: SharedTensor, value: Any) -> SharedTensor:
    """`result`, a shared constant, with its public value recorded (a number's only)."""
    if isinstance(value, bool | int | float):
        result.set_public_value(torch.full(tuple(result.shape), value, dtype=result.dtype))
    return result


@SHARED_OPS.register(aten.constant_pad_nd.default)
def constant_pad(func: Any, args: tuple, kwargs: dict) -> Any:
    """`F.pad(x, pad, value=v)`: every share padded, with v's encoding at party 0 and zeros
    at the others, so the padding adds up to v."""
    x, pad = args[0], args[1]
    value = args[2] if len(args) > 2 else kwargs.get("value", 0)
    outs = _constant(x, value, func, lambda piece, v: call_remote(func, piece, pad, v))
    return group(func, args).result(outs)


@SHARED_OPS.register(aten.new_zeros.default, aten.new_ones.default, aten.new_empty.default,
                     aten.new_full.default)
def new(func: Any, args: tuple, kwargs: dict) -> Any:
    x, size = args[0], args[1]
    value = {aten.new_ones.default: 1, aten.new_full.default: args[-1]}.get(func, 0)
    outs = _constant(x, value, func, lambda piece, v: piece.new_full(size, v))
    return _known_constant(group(func, args).result(outs, _dtype(func, x, kwargs)), value)


@SHARED_OPS.register(aten.new_empty_strided.default)
def new_empty_strided(func: Any, args: tuple, kwargs: dict) -> Any:
    """Zeroed, so a party's uninitialized memory can never be revealed by a later get()."""
    x, size, stride = args
    outs = [piece.new_empty_strided(size, stride).zero_() for piece in x.shares]
    return group(func, args).result(outs, _dtype(func, x, kwargs))


@SHARED_OPS.register(aten.copy_.default)
def copy_(func: Any, args: tuple, kwargs: dict) -> Any:
    target, source = args[0], args[1]
    if not isinstance(target, SharedTensor):
        raise written_into_public("copy_")
    if isinstance(source, SharedTensor):
        group(func, args)
        for mine, theirs in zip(target.shares, source.shares, strict=True):
            mine.copy_(theirs)
        return target
    encoded = public_encoding(source, group(func, args), func)
    for i, piece in enumerate(target.shares):
        if i == 0:
            piece.copy_(torch.as_tensor(encoded))
        else:
            piece.zero_()
    return target


@SHARED_OPS.register(aten.zero_.default, aten.fill_.Scalar, aten.fill_.Tensor)
def fill_(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.zero_()`, `x.fill_(v)`, `x[i] = v`: a shared `v` fills share-wise, a public one
    goes to party 0."""
    x = args[0]
    if not isinstance(x, SharedTensor):
        raise UnsupportedOpError("fill_ would write a shared value into a public tensor",
                                 op="fill_")
    value = 0 if func is aten.zero_.default else args[1]
    if isinstance(value, SharedTensor):
        group(func, args)
        for mine, theirs in zip(x.shares, value.shares, strict=True):
            mine.fill_(theirs)
        return x
    _constant(x, value, func, lambda piece, v: piece.fill_(v))
    return x


@SHARED_OPS.register(aten._to_copy.default)
def to_copy(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.to(float64)` and friends: copies of the shares under another public float dtype."""
    x = args[0]
    device = kwargs.get("device")
    if device is not None and torch.device(device).type != "cpu":
        raise UnsupportedOpError("shared tensors are addressed from the CPU", op="_to_copy")
    return group(func, args).result([p.clone() for p in x.shares], _dtype(func, x, kwargs))
