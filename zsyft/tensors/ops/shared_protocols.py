"""Non-linear arithmetic of `SharedTensor`, run by the parties with the crypto provider's help.

Each op here turns into protocol ops between the parties (`protocol_client.run_protocol`):
the client sends control messages only, the provider deals correlated randomness, and the
parties exchange masked values directly. Fixed-point products are followed by the
provider-assisted truncation (`zsyft.mpc.truncation`: error at most 2 units of the last
place, no catastrophic failures).

- shared * shared (`mul`, `pow` with a small integer exponent): Beaver multiplication, then
  truncation. shared * public fraction (`mul`, `div`, `add_` with a fractional `alpha` as in
  `torch.optim.SGD`): each party scales its share by the encoded public value, then
  truncation. Division by a public integer (`x / 4`, `mean`) is one truncation by that
  integer itself, exact to the last place.
- `mm`/`bmm`/`addmm`: the Beaver matmul protocol (or, with a public matrix, share-wise
  products), then truncation.
- `relu` and `threshold_backward` (ReLU's backward): the dealer-assisted comparison protocols
  (exact; no truncation needed, the output is x or grad times a shared bit). In training,
  ReLU keeps its shared bit `[x > 0]` (`SharedTensor.positive_mask`), and the backward pass
  multiplies the gradient by it in one Beaver round instead of comparing again.
- `>`, `<`, `>=`, `<=`, `==`: a sign test of the shared difference; the result is a shared
  0/1 mask (fixed-point encoded), never a public boolean.

Registered after `shared_linear`, so these handlers take over the ops it refused.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.mpc.provider import BilinearKind, bilinear_op, bilinear_output_shape
from zsyft.tensors.ops import SHARED_OPS, UnsupportedOpError, integral_value, is_plain, op_name
from zsyft.tensors.ops import shared_linear as linear
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.protocol_client import run_protocol, run_protocol_outputs
from zsyft.tensors.shared import SharedTensor

aten = torch.ops.aten
MAX_POWER = 8


def truncate(
    g: linear.Group, shares: list[PointerTensor], divisor: int | None = None
) -> list[PointerTensor]:
    """The shares of `x / divisor` (the encoding's scale by default): one truncation round."""
    divisor = g.encoder.scale if divisor is None else divisor
    if divisor == 1:
        return shares
    shape = list(shares[0].shape)
    return run_protocol("truncate", [shares], g.crypto_provider,
                        {"shape": shape, "divisor": divisor}, shape)


def divide_by_integer(g: linear.Group, x: SharedTensor, k: int) -> SharedTensor:
    """`x / k` for a public integer `k`: the truncation divides by `|k|` itself.

    Exact to the last place, as for a fixed-precision tensor. Multiplying by an encoded
    `1 / k` instead would be off by up to half a unit of `1 / k`'s last place, relative to
    `1 / k`: 0.8% for a mean of 16 values at the default precision.
    """
    if not g.dtype.is_floating_point:
        raise UnsupportedOpError(
            "division of an integer shared tensor has a fractional result; share a "
            "fixed-precision tensor (x.fix_precision().share(...)) for fractions",
            op="div",
        )
    if k == 0:
        raise ZeroDivisionError("division of a shared tensor by zero")
    if k == 1:
        return g.result([s.clone() for s in x.shares])  # a new tensor, as torch returns
    shares = truncate(g, x.shares, abs(k))
    return g.result([torch.neg(s) for s in shares] if k < 0 else shares)


def product(
    g: linear.Group,
    func: Any,
    name: str,
    x: Any,
    y: Any,
    kind: BilinearKind | None = None,
    params: dict[str, Any] | None = None,
) -> list[PointerTensor]:
    """The shares of the bilinear `kind(x, y)` (protocol `name`; `kind` defaults to it, and
    `params` are extra protocol parameters, such as a convolution's).

    Both operands shared: one Beaver product and its truncation, as one protocol op. One of
    them public: each party applies `kind` to its share and the public operand's encoding,
    then one truncation.
    """
    kind = name if kind is None else kind
    if not (isinstance(x, SharedTensor) and isinstance(y, SharedTensor)):
        op = bilinear_op(kind)
        if isinstance(x, SharedTensor):
            encoded = linear.public_encoding(y, g, func)
            shares = [op(s, encoded) for s in x.shares]
        else:
            encoded = linear.public_encoding(x, g, func)
            shares = [op(encoded, s) for s in y.shares]
        return truncate(g, shares)
    try:
        shape = list(bilinear_output_shape(kind, x.shape, y.shape))
    except ValueError as exc:  # operands that do not fit: torch raises RuntimeError
        raise RuntimeError(str(exc)) from None
    params = {"x_shape": list(x.shape), "y_shape": list(y.shape), **(params or {})}
    xs, ys = x.shares, y.shares
    if g.encoder.scale == 1:
        return run_protocol(name, [xs, ys], g.crypto_provider, params, shape)
    params["divisor"] = g.encoder.scale  # the product and its truncation as one op
    return run_protocol(f"fixed_{name}", [xs, ys], g.crypto_provider, params, shape)


def scale_by_public(g: linear.Group, x: SharedTensor, value: Any, func: Any) -> Any:
    """x times a public value (number or plain tensor): share-wise, then truncation."""
    factor = integral_value(value)
    if factor is not None:
        return g.result([torch.mul(s, factor) for s in x.shares])
    encoded, divisor = public_factor(g, value, func)
    return g.result(truncate(g, [torch.mul(s, encoded) for s in x.shares], divisor))


def public_factor(g: linear.Group, value: Any, func: Any) -> tuple[Any, int]:
    """A public fractional factor as (encoding, the divisor of its truncation): a number
    keeps `FACTOR_BITS` significant bits (`FixedPointEncoder.encode_factor`), a tensor of
    them is encoded at the tensor's precision."""
    if is_plain(value) and value.dim() == 0 and value.is_floating_point():
        value = value.item()
    if isinstance(value, float) and g.dtype.is_floating_point:
        return g.encoder.encode_factor(value)
    return linear.public_encoding(value, g, func), g.encoder.scale


def in_place(target: Any, result: SharedTensor) -> Any:
    """Make `target` (a SharedTensor) hold `result`'s shares, for the `op_` variants."""
    if not isinstance(target, SharedTensor):
        raise UnsupportedOpError("in-place result into a non-shared tensor", op="in-place")
    for mine, new in zip(target.shares, result.shares, strict=True):
        mine.copy_(new)
    return target


def _public_operand(value: Any) -> Any:
    """A shared constant's public value (`SharedTensor.public_value`) in its place: a
    product with it is then share-wise, with no protocol round (or one truncation)."""
    known = value.public_value() if isinstance(value, SharedTensor) else None
    return value if known is None else known


@SHARED_OPS.register(aten.mul, aten.mul_)
def mul(func: Any, args: tuple, kwargs: dict) -> Any:
    x, y = args[0], args[1]
    if isinstance(x, SharedTensor) and isinstance(y, SharedTensor):
        y = _public_operand(y)
        if y is args[1] and func.overloadpacket is aten.mul:
            x = _public_operand(x)
        args = (x, y, *args[2:])
    if not (isinstance(x, SharedTensor) and isinstance(y, SharedTensor)):
        shared, public = (x, y) if isinstance(x, SharedTensor) else (y, x)
        if integral_value(public) is not None or isinstance(public, SharedTensor):
            return linear.mul(func, args, kwargs)
        g = linear.group(func, args)
        result = scale_by_public(g, shared, public, func)
    else:
        g = linear.group(func, args)
        result = g.result(product(g, func, "mul", x, y))
    return in_place(x, result) if func.overloadpacket is aten.mul_ else result


@SHARED_OPS.register(aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor, aten.square)
def power(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    if not isinstance(x, SharedTensor):  # a public base with a shared exponent
        return linear.needs_protocol(func, args, kwargs)
    exponent = 2 if func.overloadpacket is aten.square else integral_value(args[1])
    if isinstance(exponent, torch.Tensor) and exponent.dim() == 0:  # x ** torch.tensor(2)
        exponent = int(exponent)
    if not (isinstance(exponent, int) and 0 <= exponent <= MAX_POWER):
        raise UnsupportedOpError(
            f"pow on a SharedTensor needs an integer exponent from 0 to {MAX_POWER}, "
            f"got {args[1]!r}",
            op="pow",
        )
    if exponent == 0:  # x ** 0 is 1 everywhere, as in torch (0 ** 0 too)
        return torch.ones_like(x)
    g = linear.group(func, args)
    result = g.result([s.clone() for s in x.shares])
    for _ in range(exponent - 1):
        result = g.result(product(g, func, "mul", result, x))
    return result


@SHARED_OPS.register(aten.div, aten.div_, aten.true_divide)
def div(func: Any, args: tuple, kwargs: dict) -> Any:
    x, divisor = args[0], args[1]
    if kwargs.get("rounding_mode") is not None or isinstance(divisor, SharedTensor):
        raise UnsupportedOpError(
            "division by a shared value (or with rounding_mode) is not supported on a "
            "SharedTensor; divide by a public number",
            op="div",
        )
    g = linear.group(func, args)
    k = integral_value(divisor)
    if isinstance(k, int):
        result = divide_by_integer(g, x, k)
    else:
        inverse = 1.0 / divisor if not is_plain(divisor) else torch.reciprocal(divisor.double())
        result = scale_by_public(g, x, inverse, func)
    return in_place(x, result) if func.overloadpacket is aten.div_ else result


@SHARED_OPS.register(aten.mean.default, aten.mean.dim)
def mean(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    if func is aten.mean.default:
        total, count = torch.sum(x), x.numel()
    else:
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        dims = list(range(x.dim())) if dims is None else dims
        total = torch.sum(x, dims, keepdim)
        count = 1
        for d in dims:
            count *= x.shape[d]
    if count == 0:
        raise UnsupportedOpError(
            "mean over no elements of a SharedTensor: torch gives NaN, which a fixed-point "
            "encoding cannot hold",
            op="mean",
        )
    return divide_by_integer(linear.group(func, [total]), total, count)


@SHARED_OPS.register(aten.add, aten.add_, aten.sub, aten.sub_)
def add_sub_scaled(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x + alpha * y` with a fractional public alpha (SGD's `p.add_(grad, alpha=-lr)`)."""
    alpha = kwargs.get("alpha", 1)
    if integral_value(alpha) is not None or not isinstance(args[1], SharedTensor):
        return linear.add_sub(func, args, kwargs)
    g = linear.group(func, args)
    scaled = scale_by_public(g, args[1], alpha, func)
    return linear.add_sub(func, (args[0], scaled), {})


@SHARED_OPS.register(aten._foreach_add_.List)
def foreach_add_(func: Any, args: tuple, kwargs: dict) -> Any:
    """SGD's multi-tensor step, `torch._foreach_add_(params, grads, alpha=-lr)`, for all the
    parameters at once: the products `alpha * grad` are truncated as one tensor, in one
    protocol op (one round, one control message per party) instead of one op per parameter.
    `optim.SGD(...).fix_precision()` makes SGD take this path."""
    params, others = args[0], args[1]
    alpha = kwargs.get("alpha", 1)
    pairs = list(zip(params, others, strict=True))
    if integral_value(alpha) is not None or not all(
        isinstance(p, SharedTensor) and isinstance(o, SharedTensor) for p, o in pairs
    ):
        for param, other in pairs:  # nothing to truncate (or nothing shared): one by one
            param.add_(other, alpha=alpha)
        return None
    g = linear.group(func, [params, others])
    encoded, divisor = public_factor(g, alpha, func)
    products = [
        torch.mul(torch.cat([other.shares[i].reshape(-1) for other in others]), encoded)
        for i in range(len(g.parties))
    ]
    sizes = [other.numel() for other in others]
    for i, flat in enumerate(truncate(g, products, divisor)):
        for (param, other), piece in zip(pairs, torch.split(flat, sizes), strict=True):
            param.shares[i].add_(piece if other.dim() == 1 else piece.view(other.shape))
    return None


def _matmul(func: Any, x: Any, y: Any) -> Any:
    g = linear.group(func, [x, y])
    return g.result(product(g, func, "matmul", x, y))


@SHARED_OPS.register(aten.mm.default, aten.bmm.default)
def mm(func: Any, args: tuple, kwargs: dict) -> Any:
    return _matmul(func, args[0], args[1])


@SHARED_OPS.register(aten.mv.default, aten.dot.default)
def matrix_vector(func: Any, args: tuple, kwargs: dict) -> Any:
    """`mv` and `dot` (and so `matrix @ vector`) as a matmul with a column: one triple."""
    x, y = args[0], args[1]
    rows = x if func is aten.mv.default else x.unsqueeze(0)
    product_ = _matmul(func, rows, y.unsqueeze(1))
    return product_.squeeze(1) if func is aten.mv.default else product_.reshape(())


_PRODUCTS = {
    aten.addmm.default: torch.mm, aten.addmv.default: torch.mv, aten.baddbmm.default: torch.bmm,
    aten.addbmm.default: lambda x, y: torch.bmm(x, y).sum(0),
}


@SHARED_OPS.register(*_PRODUCTS)
def add_product(func: Any, args: tuple, kwargs: dict) -> Any:
    """`beta * bias + alpha * (x @ y)` (`nn.Linear` with a bias: both 1): the product, then
    share-wise scaling and addition (a fractional beta or alpha costs one truncation)."""
    bias, x, y = args[0], args[1], args[2]
    beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
    product_ = _matmul(func, x, y) if func is aten.addmm.default else _PRODUCTS[func](x, y)
    if integral_value(alpha) != 1:
        product_ = torch.mul(product_, alpha)
    if integral_value(beta) == 0:  # as in torch: the bias is ignored
        return product_
    return torch.add(product_, bias if integral_value(beta) == 1 else torch.mul(bias, beta))


@SHARED_OPS.register(aten.relu.default)
def relu(func: Any, args: tuple, kwargs: dict) -> Any:
    """ReLU; when autograd will need its backward, the parties also keep `[x > 0]`."""
    x = args[0]
    g = linear.group(func, args)
    shape = list(x.shape)
    params = {"shape": shape}
    if not (torch.is_grad_enabled() and x.requires_grad):
        return g.result(run_protocol("relu", [x.shares], g.crypto_provider, params, shape))
    value, mask = run_protocol_outputs("relu_with_mask", [x.shares], g.crypto_provider,
                                       params, shape, 2)
    result = g.result(value)
    result.positive_mask = mask
    return result


@SHARED_OPS.register(aten.threshold_backward.default)
def threshold_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    """ReLU's backward, `grad * [x > 0]`: one Beaver product with the mask the forward pass
    kept (exact: the mask is an unscaled 0/1), else a comparison protocol of its own."""
    grad, x, threshold = args[0], args[1], args[2]
    if threshold != 0 or not (isinstance(grad, SharedTensor) and isinstance(x, SharedTensor)):
        raise UnsupportedOpError(
            f"{op_name(func)} on shared tensors needs threshold 0 and shared operands",
            op=op_name(func),
        )
    g = linear.group(func, args)
    shape = list(x.shape)
    if list(grad.shape) != shape:
        raise UnsupportedOpError("threshold_backward with a broadcast gradient", op=op_name(func))
    if x.positive_mask is not None:
        return times_mask(g, grad, x.positive_mask)
    return g.result(run_protocol("relu_backward", [grad.shares, x.shares], g.crypto_provider,
                                 {"shape": shape}, shape))


def times_mask(g: linear.Group, grad: SharedTensor, mask: list[PointerTensor]) -> SharedTensor:
    """`grad * m` for the parties' shares of an unscaled 0/1 mask `m` (such as ReLU's kept
    `[x > 0]`): one Beaver product, exact, no truncation."""
    shape = list(grad.shape)
    return g.result(run_protocol("mul", [grad.shares, mask], g.crypto_provider,
                                 {"x_shape": shape, "y_shape": shape}, shape))


_SIGN_TESTS = {aten.gt: "gtz", aten.lt: "ltz", aten.ge: "gez", aten.le: "lez", aten.eq: "eqz"}


@SHARED_OPS.register(*_SIGN_TESTS)
def compare(func: Any, args: tuple, kwargs: dict) -> Any:
    """`x > y` and friends: a sign test of the shared difference (public operands allowed).

    The answer stays secret: a shared 0/1 mask in the same fixed-point encoding (so it can
    multiply other shared values). Branching on it in Python needs `.get()` first.
    """
    x, y = args[0], args[1]
    g = linear.group(func, args)
    difference = torch.sub(x, y) if isinstance(x, SharedTensor) else torch.rsub(y, x)
    shape = list(difference.shape)
    bits = run_protocol(_SIGN_TESTS[func.overloadpacket], [difference.shares],
                        g.crypto_provider, {"shape": shape}, shape)
    return g.result([torch.mul(b, g.encoder.scale) for b in bits])
