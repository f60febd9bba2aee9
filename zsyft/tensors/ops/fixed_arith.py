"""Arithmetic of `FixedPrecisionTensor`: exact integer operations on the encodings.

With scale `s = base**precision_fractional`, a value `x` is stored as `X = round(x * s)`:

- `x ± y` is `X ± Y`; a public operand (Python number, plain tensor) is encoded first.
- `x * y` is `X * Y` rescaled by a rounding integer division by `s`; a public *integer*
  factor multiplies `X` directly (no rescaling, exact); a public fraction is encoded first.
- `x / k` for a public integer `k` is a rounding integer division; for a public fraction the
  quotient is rounded in float64 (relative error about 2^-53).
- `mean` is `sum` followed by a rounding division by the element count.
- `mm`/`matmul`/`addmm`/`bmm` are integer matrix products, rescaled like `*`.

Every result must stay within the encoder's range (|X| < 2^62), and so must every product
before rescaling (|X * Y| < 2^62, the same limit the secret-shared multiplication has, so a
computation that runs locally also fits when shared). Bounds are checked in float64 *before*
the integer operation, so an overflow raises `EncodingOverflowError` instead of wrapping.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.mpc.encoding import EncodingOverflowError, FixedPointEncoder
from zsyft.tensors.fixed_precision import FixedPrecisionTensor
from zsyft.tensors.ops import (
    FIXED_OPS,
    UnsupportedOpError,
    integral_value,
    is_plain,
    mixed_encodings,
    op_name,
)

aten = torch.ops.aten
LIMIT = 1 << 62
MAX_POWER = 8  # pow(x, n) for integer 0 <= n <= MAX_POWER: repeated multiplication


# -- operands --------------------------------------------------------------------------------
def fixed_args(args: Any) -> list[FixedPrecisionTensor]:
    """Every FixedPrecisionTensor among `args` (lists included)."""
    found: list[FixedPrecisionTensor] = []
    for arg in args:
        if isinstance(arg, FixedPrecisionTensor):
            found.append(arg)
        elif isinstance(arg, list | tuple):
            found.extend(a for a in arg if isinstance(a, FixedPrecisionTensor))
    return found


def common(func: Any, args: Any) -> tuple[FixedPointEncoder, torch.dtype]:
    """The encoder shared by the fixed-precision operands, and their promoted float dtype."""
    fixed = fixed_args(args)
    encoder, dtype = fixed[0].encoder, fixed[0].dtype
    for other in fixed[1:]:
        if other.encoder != encoder:
            raise mixed_encodings(func, encoder, other.encoder)
        dtype = torch.promote_types(dtype, other.dtype)
    return encoder, dtype


def encode_operand(value: Any, encoder: FixedPointEncoder, func: Any) -> torch.Tensor:
    """The int64 encoding of a fixed-precision or public operand."""
    if isinstance(value, FixedPrecisionTensor):
        return value.encoded
    if is_plain(value) or isinstance(value, bool | int | float):
        return encoder.encode(value)
    raise UnsupportedOpError(
        f"{op_name(func)} got an operand of type {type(value).__name__}, which cannot be "
        "combined with a fixed-precision tensor",
        op=op_name(func),
    )


def wrap(encoded: torch.Tensor, encoder: FixedPointEncoder, dtype: torch.dtype) -> Any:
    return FixedPrecisionTensor(encoded, encoder, dtype)


def overflow(encoder: FixedPointEncoder, func: Any, what: str) -> EncodingOverflowError:
    return EncodingOverflowError(
        f"{op_name(func)}: {what} leaves the fixed-point range |x| < "
        f"{encoder.max_magnitude:.6g} (base={encoder.base}, "
        f"precision_fractional={encoder.precision_fractional}; 2^62 / scale, and products "
        "before rescaling must stay below 2^62 too); use a smaller precision_fractional or "
        "rescale the data"
    )


def check_bound(bound: torch.Tensor, encoder: FixedPointEncoder, func: Any, what: str) -> None:
    """Raise if any element of a float64 magnitude bound reaches 2^62."""
    if bound.numel() and not bool((bound < LIMIT).all()):
        raise overflow(encoder, func, what)


def checked(encoded: torch.Tensor, encoder: FixedPointEncoder, func: Any) -> torch.Tensor:
    """`encoded`, after checking it is in range (for sums of two in-range values)."""
    if encoded.numel() and not bool(((encoded < LIMIT) & (encoded > -LIMIT)).all()):
        raise overflow(encoder, func, "the result")
    return encoded


def magnitude(x: torch.Tensor) -> torch.Tensor:
    return x.abs().to(torch.float64)


def div_round(x: torch.Tensor, divisor: int | torch.Tensor) -> torch.Tensor:
    """`round(x / divisor)` exactly for int64 `x` and positive integer `divisor` (ties up)."""
    return torch.div(x + divisor // 2, divisor, rounding_mode="floor")


def div_round_signed(x: torch.Tensor, divisor: int | torch.Tensor) -> torch.Tensor:
    """Rounding integer division by a nonzero integer (scalar or int64 tensor) of any sign."""
    if isinstance(divisor, int):
        return div_round(x, divisor) if divisor > 0 else div_round(-x, -divisor)
    negative = divisor < 0
    return div_round(torch.where(negative, -x, x), divisor.abs())


def times_integer(x: torch.Tensor, k: Any, encoder: FixedPointEncoder, func: Any) -> torch.Tensor:
    """`x * k` for a public integer `k` (int or int64 tensor): exact, no rescaling."""
    factor = abs(float(k)) if isinstance(k, int) else magnitude(k)
    check_bound(magnitude(x) * factor, encoder, func, "a product by a public integer")
    return x * k


def times_fixed(x: torch.Tensor, y: torch.Tensor, encoder: FixedPointEncoder, func: Any) -> Any:
    """The encoding of the product of two encoded values: `round(X * Y / scale)`."""
    check_bound(magnitude(x) * magnitude(y), encoder, func, "a product before rescaling")
    return div_round(x * y, encoder.scale)


def times_public(x: torch.Tensor, value: Any, encoder: FixedPointEncoder, func: Any) -> Any:
    """`x * value` for a public value: exact for integers, encode-multiply-rescale otherwise."""
    k = integral_value(value)
    if k is not None:
        return times_integer(x, k, encoder, func)
    if is_plain(value) and value.dim() == 0 and value.is_floating_point():
        value = value.item()
    if isinstance(value, float):  # keeps FACTOR_BITS significant bits, as shared tensors do
        factor, divisor = encoder.encode_factor(value)
        check_bound(magnitude(x) * abs(factor), encoder, func, "a product before rescaling")
        return div_round(x * factor, divisor)
    return times_fixed(x, encode_operand(value, encoder, func), encoder, func)


# -- handlers --------------------------------------------------------------------------------
def in_place(func: Any, target: Any, encoded: torch.Tensor) -> Any:
    """Write a result into the fixed-precision tensor an in-place op targets."""
    if not isinstance(target, FixedPrecisionTensor):
        raise UnsupportedOpError(
            f"{op_name(func)} would write a fixed-precision result into a plain tensor; "
            "use float_precision() on the result instead",
            op=op_name(func),
        )
    if encoded.shape != target.shape:
        raise RuntimeError(
            f"{func.__name__}: output with shape {tuple(target.shape)} doesn't match the "
            f"broadcast shape {tuple(encoded.shape)}"
        )
    target.encoded.copy_(encoded)
    return target


@FIXED_OPS.register(aten.add, aten.add_, aten.sub, aten.sub_, aten.rsub)
def add_sub(func: Any, args: tuple, kwargs: dict) -> Any:
    encoder, dtype = common(func, args)
    a, b = args[0], args[1]
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    ea, eb = encode_operand(a, encoder, func), encode_operand(b, encoder, func)
    packet = func.overloadpacket
    if packet in (aten.rsub,):
        out = eb - (ea if alpha == 1 else times_public(ea, alpha, encoder, func))
    else:
        scaled = eb if alpha == 1 else times_public(eb, alpha, encoder, func)
        out = ea + scaled if packet in (aten.add, aten.add_) else ea - scaled
    out = checked(out, encoder, func)
    if packet in (aten.add_, aten.sub_):
        return in_place(func, a, out)
    return wrap(out, encoder, dtype)


@FIXED_OPS.register(aten.neg, aten.neg_)
def neg(func: Any, args: tuple, kwargs: dict) -> Any:
    (x,) = args
    if func.overloadpacket is aten.neg_:
        return in_place(func, x, -x.encoded)
    return wrap(-x.encoded, x.encoder, x.dtype)


@FIXED_OPS.register(aten.mul, aten.mul_)
def mul(func: Any, args: tuple, kwargs: dict) -> Any:
    encoder, dtype = common(func, args)
    a, b = args[0], args[1]
    if isinstance(a, FixedPrecisionTensor) and isinstance(b, FixedPrecisionTensor):
        out = times_fixed(a.encoded, b.encoded, encoder, func)
    elif isinstance(a, FixedPrecisionTensor):
        out = times_public(a.encoded, b, encoder, func)
    else:
        out = times_public(b.encoded, a, encoder, func)
    if func.overloadpacket is aten.mul_:
        return in_place(func, a, out)
    return wrap(out, encoder, dtype)


@FIXED_OPS.register(aten.div, aten.div_)
def div(func: Any, args: tuple, kwargs: dict) -> Any:
    a, b = args[0], args[1]
    if isinstance(b, FixedPrecisionTensor) and func.overloadpacket is aten.div:
        from zsyft.tensors.ops.fixed_float import in_float

        return in_float(func, args, kwargs)  # a fixed-precision divisor: a quotient in float64
    if not isinstance(a, FixedPrecisionTensor) or isinstance(b, FixedPrecisionTensor):
        raise UnsupportedOpError(
            "div_ of fixed-precision tensors is supported only by a public divisor "
            "(a number or a plain tensor)",
            op="div",
        )
    if kwargs.get("rounding_mode") is not None:
        raise UnsupportedOpError("div with rounding_mode is not supported", op="div")
    k = integral_value(b)
    zero = (k == 0) if isinstance(k, int) else (k is not None and bool((k == 0).any()))
    if zero:
        raise ZeroDivisionError("division of a fixed-precision tensor by zero")
    if k is not None:
        out = div_round_signed(a.encoded, k)
    else:  # a public fraction: round the float64 quotient
        divisor = torch.as_tensor(b, dtype=torch.float64)
        quotient = torch.round(a.encoded.to(torch.float64) / divisor)
        check_bound(quotient.abs(), a.encoder, func, "the quotient")
        out = quotient.to(torch.int64)
    if func.overloadpacket is aten.div_:
        return in_place(func, a, out)
    return wrap(out, a.encoder, a.dtype)


def _reduce_dims(x: torch.Tensor, dim: Any) -> list[int]:
    if dim is None or (isinstance(dim, list | tuple) and len(dim) == 0):
        return list(range(x.dim()))
    return [dim] if isinstance(dim, int) else list(dim)


def _public_dtype(func: Any, x: FixedPrecisionTensor, dtype: Any) -> torch.dtype:
    if dtype is None:
        return x.dtype
    if not dtype.is_floating_point:
        raise UnsupportedOpError(f"{op_name(func)} to {dtype} is not supported", op=op_name(func))
    return dtype


@FIXED_OPS.register(aten.sum.default, aten.sum.dim_IntList, aten.mean.default, aten.mean.dim)
def sum_mean(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    dtype = _public_dtype(func, x, kwargs.get("dtype"))
    dims = _reduce_dims(x.encoded, dim) if x.dim() else []
    enc = x.encoded
    bound = magnitude(enc).sum(dims, keepdim=keepdim) if dims else magnitude(enc)
    check_bound(bound, x.encoder, func, "the sum")
    out = enc.sum(dims, keepdim=keepdim) if dims else enc.clone()
    if func.overloadpacket is aten.mean:
        count = max(enc.numel() // max(out.numel(), 1), 1)
        out = div_round(out, count)
    return wrap(out, x.encoder, dtype)


_BILINEAR = {
    aten.mm.default: torch.mm,
    aten.bmm.default: torch.bmm,
    aten.mv.default: torch.mv,
    aten.dot.default: torch.dot,
    aten.matmul.default: torch.matmul,
}


def _product(func: Any, plain: Any, a: Any, b: Any, encoder: FixedPointEncoder) -> torch.Tensor:
    """The encoded bilinear product of two operands, at least one fixed-precision."""
    ka = None if isinstance(a, FixedPrecisionTensor) else integral_value(a)
    kb = None if isinstance(b, FixedPrecisionTensor) else integral_value(b)
    ea = ka if ka is not None else encode_operand(a, encoder, func)
    eb = kb if kb is not None else encode_operand(b, encoder, func)
    check_bound(plain(magnitude(ea), magnitude(eb)), encoder, func, "a product before rescaling")
    product = plain(ea, eb)
    if ka is not None or kb is not None:  # one factor is a public integer matrix: exact
        return product
    return div_round(product, encoder.scale)


@FIXED_OPS.register(*_BILINEAR)
def bilinear(func: Any, args: tuple, kwargs: dict) -> Any:
    encoder, dtype = common(func, args)
    return wrap(_product(func, _BILINEAR[func], args[0], args[1], encoder), encoder, dtype)


@FIXED_OPS.register(aten.addmm.default, aten.addmv.default, aten.baddbmm.default)
def add_bilinear(func: Any, args: tuple, kwargs: dict) -> Any:
    encoder, dtype = common(func, args)
    bias, a, b = args[:3]
    plain = {aten.addmm.default: torch.mm, aten.addmv.default: torch.mv}.get(func, torch.bmm)
    product = _product(func, plain, a, b, encoder)
    beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
    if alpha != 1:
        product = times_public(product, alpha, encoder, func)
    eb = encode_operand(bias, encoder, func)
    if beta != 1:
        eb = times_public(eb, beta, encoder, func)
    return wrap(checked(eb + product, encoder, func), encoder, dtype)


@FIXED_OPS.register(aten.pow.Tensor_Scalar)
def power(func: Any, args: tuple, kwargs: dict) -> Any:
    x, exponent = args
    n = integral_value(exponent)
    if not isinstance(n, int) or not 0 <= n <= MAX_POWER:
        raise UnsupportedOpError(
            f"pow of a fixed-precision tensor supports integer exponents 0..{MAX_POWER}, "
            f"got {exponent!r}",
            op="pow",
        )
    if n == 0:
        return wrap(torch.full_like(x.encoded, x.encoder.scale), x.encoder, x.dtype)
    out = x.encoded.clone()
    for _ in range(n - 1):
        out = times_fixed(out, x.encoded, x.encoder, func)
    return wrap(out, x.encoder, x.dtype)


@FIXED_OPS.register(aten.relu.default, aten.relu_.default)
def relu(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    out = x.encoded.clamp_min(0)
    if func is aten.relu_.default:
        return in_place(func, x, out)
    return wrap(out, x.encoder, x.dtype)


@FIXED_OPS.register(aten.threshold_backward.default)
def threshold_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    grad, x, threshold = args
    encoder, dtype = common(func, args)
    level = encoder.encode(threshold)
    keep = encode_operand(x, encoder, func) > level
    out = torch.where(keep, encode_operand(grad, encoder, func), 0)
    return wrap(out, encoder, dtype)


@FIXED_OPS.register(aten._local_scalar_dense.default)
def item(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    return x.encoder.decode(x.encoded, torch.float64).item()


@FIXED_OPS.register(aten.is_nonzero.default)
def is_nonzero(func: Any, args: tuple, kwargs: dict) -> bool:
    return bool(args[0].encoded)


@FIXED_OPS.register(aten.equal.default)
def equal(func: Any, args: tuple, kwargs: dict) -> bool:
    a, b = args
    if not (isinstance(a, FixedPrecisionTensor) and isinstance(b, FixedPrecisionTensor)):
        return False
    return a.encoder == b.encoder and torch.equal(a.encoded, b.encoded)
