"""Views, indexing, joining and factories of `FixedPrecisionTensor`.

These ops move encoded values around without combining them, so they run on the int64
encoding unchanged: views of the wrapper are real views of its encoding (an in-place op on
a view updates the base, as torch expects). Plain tensors among the arguments are indices or
masks and pass through; where an argument is a *value* (a `cat` input, a `fill_` value, the
source of `copy_`), a public one is encoded first. Factories (`zeros_like`, `ones_like`,
`new_zeros`, ...) build encoded constants, and ignore the float dtype torch asks for except
as the public dtype of the result.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.tensors._torch_compat import restride_wrapper
from zsyft.tensors.fixed_precision import FixedPrecisionTensor
from zsyft.tensors.ops import FIXED_OPS, UnsupportedOpError, op_name
from zsyft.tensors.ops.fixed_arith import common, encode_operand, in_place, wrap
from zsyft.tensors.ops.fixed_float import as_condition

aten = torch.ops.aten

STRUCTURAL = (
    aten.view.default, aten._unsafe_view.default, aten.t.default, aten.transpose.int,
    aten.permute.default, aten.expand.default, aten.unsqueeze.default, aten.squeeze.default,
    aten.squeeze.dim, aten.squeeze.dims, aten.select.int, aten.slice.Tensor, aten.index.Tensor,
    aten.index_select.default, aten.clone.default, aten.detach.default, aten.alias.default,
    aten.flip.default, aten.roll.default, aten.repeat.default, aten.unbind.int,
    aten.split.Tensor, aten.split_with_sizes.default, aten.diagonal.default,
    aten.as_strided.default, aten.unfold.default, aten.tril.default, aten.triu.default,
    aten.gather.default, aten.select_backward.default, aten.slice_backward.default,
    aten.constant_pad_nd.default, aten.unsafe_split.Tensor,
    aten.unsafe_split_with_sizes.default, aten.embedding.default,
)


def _unwrap(value: Any) -> Any:
    if isinstance(value, FixedPrecisionTensor):
        return value.encoded
    if isinstance(value, list | tuple):
        return [_unwrap(item) for item in value]
    return value


def _wrap_outputs(out: Any, encoder: Any, dtype: torch.dtype) -> Any:
    if isinstance(out, torch.Tensor):
        return wrap(out, encoder, dtype)
    if isinstance(out, list | tuple):
        wrapped = [_wrap_outputs(item, encoder, dtype) for item in out]
        return tuple(wrapped) if isinstance(out, tuple) else wrapped
    return out


@FIXED_OPS.register(*STRUCTURAL)
def structural(func: Any, args: tuple, kwargs: dict) -> Any:
    """Run the op on the encodings; plain tensor arguments are indices and pass through."""
    encoder, dtype = common(func, args)
    if any(isinstance(v, FixedPrecisionTensor) for v in kwargs.values()):
        raise UnsupportedOpError(f"{op_name(func)} with a fixed-precision keyword argument "
                                 "is not supported", op=op_name(func))
    if func is aten.constant_pad_nd.default and len(args) > 2:
        args = (*args[:2], int(encoder.encode(args[2])), *args[3:])
    return _wrap_outputs(func(*_unwrap(args), **kwargs), encoder, dtype)


@FIXED_OPS.register(
    aten.t_.default, aten.transpose_.default, aten.unsqueeze_.default, aten.squeeze_.default,
    aten.squeeze_.dim, aten.squeeze_.dims,
)
def in_place_view(func: Any, args: tuple, kwargs: dict) -> Any:
    """`t_`, `unsqueeze_`, `squeeze_`: the encoding changes its shape in place, then the
    wrapper takes the new shape."""
    x = args[0]
    common(func, args)
    func(x.encoded, *args[1:], **kwargs)
    restride_wrapper(x, x.encoded.shape, x.encoded.stride(), x.encoded.storage_offset())
    return x


@FIXED_OPS.register(aten.cat.default, aten.stack.default)
def join(func: Any, args: tuple, kwargs: dict) -> Any:
    tensors, rest = args[0], args[1:]
    encoder, dtype = common(func, tensors)
    encoded = [encode_operand(t, encoder, func) for t in tensors]
    return wrap(func(encoded, *rest, **kwargs), encoder, dtype)


@FIXED_OPS.register(aten.where.self)
def where(func: Any, args: tuple, kwargs: dict) -> Any:
    condition, a, b = args
    condition = as_condition(condition)  # a fixed-precision 0/1 mask from a comparison
    if not any(isinstance(v, FixedPrecisionTensor) for v in (a, b)):
        return torch.where(condition, a, b)
    encoder, dtype = common(func, args[1:])
    out = torch.where(condition, encode_operand(a, encoder, func), encode_operand(b, encoder, func))
    return wrap(out, encoder, dtype)


@FIXED_OPS.register(aten.masked_fill.Scalar, aten.masked_fill_.Scalar)
def masked_fill(func: Any, args: tuple, kwargs: dict) -> Any:
    x, mask, value = args
    out = x.encoded.masked_fill(as_condition(mask), int(x.encoder.encode(value)))
    if func is aten.masked_fill_.Scalar:
        return in_place(func, x, out)
    return wrap(out, x.encoder, x.dtype)


@FIXED_OPS.register(aten.index_put.default, aten.index_put_.default)
def index_put(func: Any, args: tuple, kwargs: dict) -> Any:
    x, indices, values = args[:3]
    encoder, dtype = common(func, args)
    accumulate = args[3] if len(args) > 3 else kwargs.get("accumulate", False)
    out = torch.index_put(x.encoded, indices, encode_operand(values, encoder, func), accumulate)
    if func is aten.index_put_.default:
        return in_place(func, x, out)
    return wrap(out, encoder, dtype)


# -- factories and writes --------------------------------------------------------------------
def _target_dtype(func: Any, x: FixedPrecisionTensor, kwargs: dict) -> torch.dtype:
    dtype = kwargs.get("dtype")
    if dtype is None:
        return x.dtype
    if not dtype.is_floating_point:
        raise UnsupportedOpError(
            f"{op_name(func)} to {dtype} is not supported on fixed-precision tensors; use "
            "float_precision() first",
            op=op_name(func),
        )
    return dtype


def _layout_kwargs(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k == "memory_format"}


@FIXED_OPS.register(aten.zeros_like.default, aten.ones_like.default, aten.empty_like.default,
                    aten.full_like.default)
def like(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    dtype = _target_dtype(func, x, kwargs)
    if func is aten.full_like.default:
        fill = int(x.encoder.encode(args[1]))
    else:
        fill = x.encoder.scale if func is aten.ones_like.default else 0
    out = torch.full_like(x.encoded, fill, **_layout_kwargs(kwargs))
    return wrap(out, x.encoder, dtype)


@FIXED_OPS.register(aten.new_zeros.default, aten.new_ones.default, aten.new_empty.default,
                    aten.new_full.default, aten.new_empty_strided.default)
def new(func: Any, args: tuple, kwargs: dict) -> Any:
    x, size = args[0], args[1]
    dtype = _target_dtype(func, x, kwargs)
    fill = 0
    if func is aten.new_ones.default:
        fill = x.encoder.scale
    elif func is aten.new_full.default:
        fill = int(x.encoder.encode(args[2]))
    if func is aten.new_empty_strided.default:
        out = torch.empty_strided(size, args[2], dtype=torch.int64).zero_()
    else:
        out = torch.full(size, fill, dtype=torch.int64)
    return wrap(out, x.encoder, dtype)


@FIXED_OPS.register(aten.copy_.default)
def copy_(func: Any, args: tuple, kwargs: dict) -> Any:
    target, source = args[0], args[1]
    encoder, _ = common(func, args)
    encoded = encode_operand(source, encoder, func)
    if not isinstance(target, FixedPrecisionTensor):
        return in_place(func, target, encoded)  # raises: a plain tensor cannot hold it
    target.encoded.copy_(encoded)
    return target


@FIXED_OPS.register(aten.zero_.default, aten.fill_.Scalar, aten.fill_.Tensor)
def fill_(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.zero_()`, `x.fill_(v)` and `x[i] = v` (a fill of a view): `v` is encoded."""
    x = args[0]
    if not isinstance(x, FixedPrecisionTensor):
        return in_place(func, x, x)  # raises: a plain tensor cannot hold a fixed value
    encoder, _ = common(func, args)
    value = 0 if func is aten.zero_.default else encode_operand(args[1], encoder, func)
    x.encoded.fill_(value)
    return x


@FIXED_OPS.register(aten._to_copy.default)
def to_copy(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x.to(float64)` and friends: a copy with another public float dtype."""
    x = args[0]
    device = kwargs.get("device")
    if device is not None and torch.device(device).type != "cpu":
        raise UnsupportedOpError("fixed-precision tensors live on the CPU", op="_to_copy")
    out = x.encoded.clone(**_layout_kwargs(kwargs))
    return wrap(out, x.encoder, _target_dtype(func, x, kwargs))
