"""Arithmetic of `SharedTensor`: the linear ops each party runs on its own share.

If `x = x_0 + ... + x_{n-1}` (mod 2^64), then for public integers `a`, `b` and a public
value `c` (encoded as `C`):

- `a*x + b*y` has shares `a*x_i + b*y_i` (share-wise `add`/`sub`/`rsub`/`neg`/`mul`/`sum`);
- `x + c` has shares `x_0 + C, x_1, ..., x_{n-1}`: only party 0 adds the public value, and
  the others broadcast their share to the result's shape.

Each share-wise step is an ordinary pointer op, pipelined to that party; nothing returns to
the client. Results keep the (promoted) float dtype of the shared operands; public operands
are encoded with the shared tensor's encoder and do not change the dtype.

Everything non-linear in the shares (a product of shared values, a fraction, a division, a
comparison) needs the crypto provider's protocols and raises `ProtocolUnavailableError`
here; revealing ops raise `PointerUsageError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zsyft.errors import PointerUsageError
from zsyft.mpc.encoding import FixedPointEncoder
from zsyft.tensors.fixed_precision import FixedPrecisionTensor
from zsyft.tensors.ops import (
    SHARED_OPS,
    ProtocolUnavailableError,
    UnsupportedOpError,
    integral_value,
    is_plain,
    mixed_encodings,
    op_name,
    written_into_public,
)
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.remote_ops import call_remote
from zsyft.tensors.shared import REVEAL_FIXED, REVEAL_PLAIN, SharedTensor

aten = torch.ops.aten


# -- the operands of one op ------------------------------------------------------------------
@dataclass
class Group:
    """What the SharedTensor operands of one op have in common."""

    parties: list[Any]
    encoder: FixedPointEncoder
    dtype: torch.dtype
    crypto_provider: Any
    reveal: str

    def result(self, shares: list[PointerTensor], dtype: torch.dtype | None = None) -> Any:
        return SharedTensor(shares, self.encoder, self.crypto_provider, dtype or self.dtype,
                            self.reveal)


def shared_args(args: Any) -> list[SharedTensor]:
    found: list[SharedTensor] = []
    for arg in args:
        if isinstance(arg, SharedTensor):
            found.append(arg)
        elif isinstance(arg, list | tuple):
            found.extend(shared_args(arg))
    return found


def group(func: Any, args: Any) -> Group:
    """Check the shared operands are held by the same parties with the same encoding."""
    shared = shared_args(args)
    first = shared[0]
    g = Group(first.locations, first.encoder, first.dtype, first.crypto_provider, first.reveal)
    for other in shared[1:]:
        where = other.locations
        same = len(where) == len(g.parties) and all(
            a is b for a, b in zip(where, g.parties, strict=True)
        )
        if not same:
            raise PointerUsageError(
                f"{op_name(func)} combines shared tensors held by "
                f"({', '.join(w.id for w in g.parties)}) and ({', '.join(w.id for w in where)}); "
                "share both among the same workers"
            )
        if other.encoder != g.encoder:
            raise mixed_encodings(func, g.encoder, other.encoder)
        g.dtype = torch.promote_types(g.dtype, other.dtype)
        if g.crypto_provider is None:
            g.crypto_provider = other.crypto_provider
        if other.reveal == REVEAL_FIXED:
            g.reveal = REVEAL_FIXED
    return g


def public_encoding(value: Any, g: Group, func: Any) -> Any:
    """The encoding of a public operand: an int for a number, an int64 tensor otherwise."""
    if isinstance(value, FixedPrecisionTensor):
        if value.encoder != g.encoder:
            raise mixed_encodings(func, g.encoder, value.encoder)
        return value.encoded
    if not (is_plain(value) or isinstance(value, bool | int | float)):
        raise UnsupportedOpError(
            f"{op_name(func)} cannot combine a shared tensor with {type(value).__name__}",
            op=op_name(func),
        )
    if not g.dtype.is_floating_point and integral_value(value) is None:
        raise UnsupportedOpError(
            f"{op_name(func)} of an integer shared tensor with a non-integer value; share a "
            "fixed-precision tensor (x.fix_precision().share(...)) for fractions",
            op=op_name(func),
        )
    encoded = g.encoder.encode(value)
    return int(encoded) if isinstance(value, bool | int | float) else encoded


def scalar_factor(func: Any, value: Any, what: str) -> int:
    """A public integer factor (`alpha`, a multiplier), or the protocol error for fractions."""
    k = integral_value(value)
    if not isinstance(k, int):
        raise ProtocolUnavailableError(
            f"{op_name(func)} with {what}={value!r} multiplies a shared value by a non-integer, "
            "which needs the crypto-provider protocols (truncation), not available yet",
            op=op_name(func),
        )
    return k


def _scaled(share: PointerTensor, c: int, shape: torch.Size) -> PointerTensor:
    """A fresh `c * share` broadcast to `shape` (a party's part of `c*x + public`)."""
    if share.shape != shape:
        share = call_remote(aten.expand.default, share, list(shape))
    if c == 1:
        return call_remote(aten.clone.default, share)
    if c == -1:
        return call_remote(aten.neg.default, share)
    return call_remote(aten.mul.Tensor, share, c)


# -- linear ops ------------------------------------------------------------------------------
@SHARED_OPS.register(aten.add, aten.add_, aten.sub, aten.sub_, aten.rsub)
def add_sub(func: Any, args: tuple, kwargs: dict) -> Any:
    g = group(func, args)
    a, b = args[0], args[1]
    alpha = scalar_factor(func, kwargs.get("alpha", args[2] if len(args) > 2 else 1), "alpha")
    extra = {"alpha": alpha} if alpha != 1 else {}
    packet = func.overloadpacket
    in_place = packet in (aten.add_, aten.sub_)
    if in_place and not isinstance(a, SharedTensor):
        raise written_into_public(op_name(func))
    if isinstance(a, SharedTensor) and isinstance(b, SharedTensor):
        outs = [call_remote(func, x, y, **extra) for x, y in zip(a.shares, b.shares, strict=True)]
        return a if in_place else g.result(outs)
    a_shared = isinstance(a, SharedTensor)
    shared = a if a_shared else b
    public = public_encoding(b if a_shared else a, g, func)
    first = call_remote(func, shared.shares[0], public, **extra) if a_shared else call_remote(
        func, public, shared.shares[0], **extra)
    if in_place:  # only party 0 changes: x_0 += C
        return a
    if packet is aten.rsub:
        c = -alpha if a_shared else 1
    elif packet is aten.sub:
        c = 1 if a_shared else -alpha
    else:
        c = 1 if a_shared else alpha
    rest = [_scaled(piece, c, first.shape) for piece in shared.shares[1:]]
    return g.result([first, *rest])


@SHARED_OPS.register(aten.neg, aten.neg_)
def neg(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    outs = [call_remote(func, piece) for piece in x.shares]
    return x if func.overloadpacket is aten.neg_ else group(func, args).result(outs)


@SHARED_OPS.register(aten.mul, aten.mul_)
def mul(func: Any, args: tuple, kwargs: dict) -> Any:
    """Multiplication by a public integer (share-wise); anything else needs the protocols."""
    g = group(func, args)
    a, b = args[0], args[1]
    if isinstance(a, SharedTensor) and isinstance(b, SharedTensor):
        raise ProtocolUnavailableError(
            "mul of two shared values needs the crypto-provider protocols (Beaver "
            "multiplication and truncation), which are not available yet",
            op="mul",
        )
    a_shared = isinstance(a, SharedTensor)
    shared, public = (a, b) if a_shared else (b, a)
    if isinstance(public, FixedPrecisionTensor) or integral_value(public) is None:
        raise ProtocolUnavailableError(
            "mul of a shared value by a non-integer public value needs the crypto-provider "
            "protocols (truncation), which are not available yet; only public integer "
            "factors work share by share",
            op="mul",
        )
    if func.overloadpacket is aten.mul_ and not a_shared:
        raise written_into_public("mul_")
    k = integral_value(public)
    outs = [
        call_remote(func, piece, k) if a_shared else call_remote(func, k, piece)
        for piece in shared.shares
    ]
    return a if func.overloadpacket is aten.mul_ else g.result(outs)


@SHARED_OPS.register(aten.sum.default, aten.sum.dim_IntList)
def sum_(func: Any, args: tuple, kwargs: dict) -> Any:
    g = group(func, args)
    dtype = kwargs.get("dtype")
    if dtype is not None and dtype != g.dtype and not (
        dtype.is_floating_point and g.dtype.is_floating_point
    ):
        raise UnsupportedOpError(f"sum to {dtype} is not supported on shared tensors", op="sum")
    rest = {k: v for k, v in kwargs.items() if k != "dtype"}
    outs = [call_remote(func, piece, *args[1:], **rest) for piece in args[0].shares]
    return g.result(outs, dtype if dtype is not None else None)


# -- what needs the crypto provider, or would reveal the value -------------------------------
# The forms of these ops that zsyft computes (a public exponent or divisor, ...) are taken
# over by `shared_protocols`, `shared_composites` and `shared_selection`; what is left of
# them ends here: a shared exponent or divisor, `exp`, `log`, `reciprocal`, ...
_NEEDS_A_PROTOCOL = (
    aten.mm, aten.bmm, aten.matmul, aten.mv, aten.dot, aten.addmm, aten.addmv, aten.baddbmm,
    aten.addbmm, aten.pow, aten.square, aten.outer,
    aten.div, aten.div_, aten.mean, aten.true_divide, aten.reciprocal,
    aten.relu, aten.relu_, aten.threshold_backward, aten.gt, aten.lt, aten.ge, aten.le,
    aten.eq, aten.ne, aten.max, aten.min, aten.maximum, aten.minimum, aten.abs, aten.sign,
    aten.argmax, aten.argmin, aten.sigmoid, aten.tanh, aten.exp, aten.log,
)


_SUPPORTED = (
    "+, -, *, @ (mm, bmm, mv, dot, addmm, addmv, baddbmm, addbmm), convolutions, average "
    "pooling, sum, "
    "cumsum, mean, F.pad, "
    "division by a public number, pow with a small integer exponent, relu, abs, sign, "
    "sigmoid and tanh (approximated), clamp, hardtanh, relu6, leaky_relu, >, <, >=, <=, ==, "
    "!=, torch.where and masked_fill by a mask, F.mse_loss, F.l1_loss, and for evaluation "
    "max, min, argmax, argmin, maximum, minimum, max_pool2d"
)


@SHARED_OPS.register(*_NEEDS_A_PROTOCOL)
def needs_protocol(func: Any, args: tuple, kwargs: dict) -> Any:
    """The forms of these ops that no zsyft protocol computes end here, with an error naming
    the op and what shared values support."""
    raise ProtocolUnavailableError(
        f"{op_name(func)} on a SharedTensor, in this form, has no secure protocol in zsyft "
        f"(for instance a shared exponent or divisor, exp, log or reciprocal). Shared values "
        f"support {_SUPPORTED}; otherwise call .get() and compute it in plaintext",
        op=op_name(func),
    )


@SHARED_OPS.register(aten._local_scalar_dense, aten.is_nonzero, aten.equal)
def revealing(func: Any, args: tuple, kwargs: dict) -> Any:
    what = "torch.equal" if func.overloadpacket is aten.equal else "bool(), item() or `if x:`"
    raise PointerUsageError(
        f"{what} on a SharedTensor would need the secret value; call .get() first to "
        "reconstruct it here"
    )


__all__ = ["REVEAL_PLAIN", "Group", "group", "public_encoding", "shared_args"]
