"""Ops of local `FixedPrecisionTensor`s with no exact integer form, and comparisons.

A fixed-precision tensor that is not shared is held in the clear by its owner, so a
non-linear op (`sigmoid`, `exp`, `softmax`, `max`, a convolution, a pooling, a loss and the
backward ops autograd asks for) need not be approximated the way secret-shared values are:
it runs in float64 on the decoded values, and its floating outputs are encoded again with the
same encoder (rounded to the nearest representable value; a result out of range, NaN or
infinite, raises `EncodingOverflowError`, as encoding always does). Integer outputs (the
indices of `max`, `argmax`, `sort`) stay plain int64 tensors.

Comparisons (`>`, `<`, `>=`, `<=`, `==`, `!=`) compare the encodings exactly and, as in
PySyft, return a fixed-precision tensor of 0s and 1s, like comparisons of secret-shared
values: `(x > y).float_precision()` is a float mask, `(pred == target).sum()` counts.
`torch.where` and `masked_fill` accept such a mask as their condition. Division by a
fixed-precision divisor is in float64 too (`fixed_arith` divides exactly by public ones).
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.tensors.fixed_precision import FixedPrecisionTensor
from zsyft.tensors.ops import FIXED_OPS, UnsupportedOpError, op_name
from zsyft.tensors.ops.fixed_arith import common, encode_operand, wrap

aten = torch.ops.aten

IN_FLOAT = (
    # element-wise non-linear functions and their gradients
    aten.abs, aten.sign, aten.sigmoid, aten.sigmoid_backward, aten.tanh, aten.tanh_backward,
    aten.exp, aten.log, aten.log1p, aten.expm1, aten.sqrt, aten.rsqrt, aten.reciprocal,
    aten.sin, aten.cos, aten.floor, aten.ceil, aten.round, aten.trunc, aten.frac,
    aten.clamp, aten.clamp_min, aten.clamp_max, aten.hardtanh, aten.hardtanh_backward,
    aten.leaky_relu, aten.leaky_relu_backward, aten.elu, aten.elu_backward, aten.gelu,
    aten.gelu_backward, aten.silu, aten.silu_backward, aten.softplus, aten.softplus_backward,
    aten.maximum, aten.minimum,
    # reductions and selections
    aten.max, aten.min, aten.amax, aten.amin, aten.argmax, aten.argmin, aten.sort, aten.topk,
    aten.var, aten.std, aten.linalg_vector_norm, aten.cumsum, aten.prod,
    aten._softmax, aten._log_softmax, aten._softmax_backward_data,
    aten._log_softmax_backward_data,
    # losses
    aten.mse_loss, aten.mse_loss_backward, aten.binary_cross_entropy,
    aten.binary_cross_entropy_backward, aten.nll_loss_forward, aten.nll_loss_backward,
    aten.smooth_l1_loss, aten.smooth_l1_loss_backward,
    # convolution and pooling
    aten.convolution, aten.convolution_backward, aten.max_pool2d_with_indices,
    aten.max_pool2d_with_indices_backward, aten.avg_pool2d, aten.avg_pool2d_backward,
    aten.adaptive_avg_pool2d, aten._adaptive_avg_pool2d, aten._adaptive_avg_pool2d_backward,
)


def _decoded(value: Any) -> Any:
    if isinstance(value, FixedPrecisionTensor):
        return value.encoder.decode(value.encoded, torch.float64)
    if isinstance(value, list | tuple):
        return type(value)(_decoded(item) for item in value)
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(torch.float64)
    return value


def _encoded(out: Any, encoder: Any, dtype: torch.dtype) -> Any:
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        return wrap(encoder.encode(out), encoder, dtype)
    if isinstance(out, list | tuple):
        return type(out)(_encoded(item, encoder, dtype) for item in out)
    return out  # indices, None


@FIXED_OPS.register(*IN_FLOAT)
def in_float(func: Any, args: tuple, kwargs: dict) -> Any:
    """Run the op in float64 on the decoded values; encode its floating outputs again."""
    encoder, dtype = common(func, [*args, *kwargs.values()])
    if "out" in kwargs:
        raise UnsupportedOpError(f"{op_name(func)} with out= is not supported on "
                                 "fixed-precision tensors", op=op_name(func))
    if kwargs.get("dtype") is not None:  # cumsum, prod ...: computed in float64 all the same
        kwargs = {**kwargs, "dtype": torch.float64}
    out = func(*_decoded(args), **{k: _decoded(v) for k, v in kwargs.items()})
    return _encoded(out, encoder, dtype)


_COMPARISONS = (aten.gt, aten.lt, aten.ge, aten.le, aten.eq, aten.ne)


@FIXED_OPS.register(*_COMPARISONS)
def compare(func: Any, args: tuple, kwargs: dict) -> Any:
    """Exact comparison of the encodings, as a fixed-precision 0/1 tensor (PySyft's result)."""
    encoder, dtype = common(func, args)
    plain = getattr(torch, func.overloadpacket.__name__)
    mask = plain(encode_operand(args[0], encoder, func), encode_operand(args[1], encoder, func))
    return wrap(mask.to(torch.int64) * encoder.scale, encoder, dtype)


def as_condition(value: Any) -> Any:
    """A bool condition from a fixed-precision 0/1 mask (nonzero is true); others unchanged."""
    if isinstance(value, FixedPrecisionTensor):
        return value.encoded != 0
    return value
