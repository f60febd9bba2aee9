"""Op tables of zsyft's value tensors: which aten op runs how, and the errors for the rest.

A `FixedPrecisionTensor` or `SharedTensor` sees every aten op in `__torch_dispatch__`; it
looks the op up in its `OpTable` and calls the handler registered for it. Handlers live in
one module per op family (`fixed_arith`, `fixed_shape`, `shared_linear`). An op nobody
registered raises `UnsupportedOpError` naming the op, so a missing op is never silently
computed on the raw integer encoding.

Handlers are called as `handler(func, args, kwargs)` with the `OpOverload` and its
arguments exactly as torch dispatched them. A table imports its handler modules on its first
lookup: they import the tensor class they build, so the class module cannot import them.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from typing import Any

import torch

from zsyft.errors import ProtocolUnavailableError, UnsupportedOpError
from zsyft.tensors._torch_compat import (
    OpOverload,
    OpOverloadPacket,
    decomposes,
    out_of_place_of,
)

__all__ = [
    "FIXED_OPS",
    "SHARED_OPS",
    "OpTable",
    "ProtocolUnavailableError",
    "UnsupportedOpError",
    "integral_value",
    "is_plain",
    "mixed_encodings",
    "op_name",
    "written_into_public",
]

Handler = Callable[[OpOverload, tuple, dict], Any]


def op_name(func: Any) -> str:
    """A readable name for an aten overload: `aten.mul.Tensor` -> `mul`."""
    name = getattr(func, "__name__", str(func))
    return name.split(".")[0]


_NO_EXP_LOG = (
    "it needs exp and log of encrypted values, which zsyft does not compute; train with "
    "F.mse_loss against one-hot targets (as tutorial Part 12 trains), take argmax for "
    "predictions, or .get() the values and compute it in plaintext"
)
_NO_DROPOUT = (
    "it draws a random mask; call model.eval() before training, or leave dropout out of an "
    "encrypted model"
)
_OTHER_ACTIVATION = (
    "use F.relu, F.leaky_relu, F.hardtanh, torch.sigmoid or torch.tanh, which encrypted "
    "values support"
)
# What to do instead of an op that fixed-precision and shared tensors cannot run, by the op
# the user's function reached: a user calls F.cross_entropy, not aten._log_softmax.
_INSTEAD = {
    "_softmax": ("softmax", _NO_EXP_LOG),
    "_log_softmax": ("log_softmax (and F.cross_entropy, nn.CrossEntropyLoss)", _NO_EXP_LOG),
    "nll_loss_forward": ("nll_loss (and F.cross_entropy)", _NO_EXP_LOG),
    "nll_loss": ("nll_loss (and F.cross_entropy)", _NO_EXP_LOG),
    "nll_loss2d_forward": ("nll_loss (and F.cross_entropy)", _NO_EXP_LOG),
    "binary_cross_entropy": ("binary_cross_entropy", _NO_EXP_LOG),
    "binary_cross_entropy_with_logits": ("binary_cross_entropy_with_logits", _NO_EXP_LOG),
    "smooth_l1_loss": ("smooth_l1_loss", "use F.mse_loss or F.l1_loss"),
    "huber_loss": ("huber_loss", "use F.mse_loss or F.l1_loss"),
    **{act: (act, _OTHER_ACTIVATION) for act in ("gelu", "elu", "selu", "celu", "silu",
                                                  "mish", "softplus", "log_sigmoid_forward")},
    "bernoulli_": ("dropout", _NO_DROPOUT),
    "bernoulli": ("dropout", _NO_DROPOUT),
    "native_dropout": ("dropout", _NO_DROPOUT),
}


def _unsupported(func: OpOverload, what: str) -> UnsupportedOpError:
    name = op_name(func)
    if name in _INSTEAD:
        user_name, advice = _INSTEAD[name]
        return UnsupportedOpError(
            f"{user_name} is not supported on {what} ({func.__name__}): {advice}", op=name
        )
    return UnsupportedOpError(
        f"{name} ({func.__name__}) is not supported on {what}: write it with the ops they "
        "support (+, -, *, @, sum, mean, division by a public number, comparisons, relu, "
        "...), or call .get() and compute it in plaintext",
        op=name,
    )


def _in_place_of(out_of_place: OpOverload, func: OpOverload, args: tuple, kwargs: dict) -> Any:
    """An in-place op (`abs_`) whose out-of-place form (`abs`) is supported: that, written
    back into the target as torch would (the result must keep the target's shape)."""
    target = args[0]
    result = out_of_place(*args, **kwargs)
    if result.shape != target.shape:
        raise RuntimeError(
            f"{func.__name__}: output with shape {tuple(target.shape)} doesn't match the "
            f"broadcast shape {tuple(result.shape)}"
        )
    return torch.ops.aten.copy_.default(target, result)


def _per_tensor(method: str, in_place: bool, func: OpOverload, args: tuple, kwargs: dict) -> Any:
    """A multi-tensor op (`torch._foreach_mul_(bufs, 0.9)`, as optimizers run them with
    `foreach=True`) as its one-tensor op on each tensor of the list in turn."""
    tensors = args[0]
    results = []
    for i, tensor in enumerate(tensors):
        row = [a[i] if isinstance(a, list | tuple) and len(a) == len(tensors) else a
               for a in args[1:]]
        results.append(getattr(tensor, method)(*row, **kwargs))
    return None if in_place else results


def mixed_encodings(func: Any, first: Any, second: Any) -> UnsupportedOpError:
    """The error for an op on values of two fixed-point encodings (`FixedPointEncoder`s)."""
    if 0 in (first.precision_fractional, second.precision_fractional):
        advice = ("a tensor shared without fix_precision() is encoded with "
                  "precision_fractional=0: share x.fix_precision() to encode it like the other")
    else:
        advice = ("re-encode one like the other: x.float_precision().fix_precision("
                  "base=..., precision_fractional=...)")
    return UnsupportedOpError(
        f"{op_name(func)} mixes fixed-precision encodings {first} and {second}; {advice}",
        op=op_name(func),
    )


def written_into_public(op: str) -> UnsupportedOpError:
    """The error for an in-place op that would store a shared result in a public tensor (an
    optimizer stepping a plain model with gradients from shared data, typically)."""
    return UnsupportedOpError(
        f"{op} would write a shared value into a public tensor; in an optimizer's step this "
        "means the model is plain while its data is shared: share the model too, "
        "model.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)",
        op=op,
    )


def _decomposed(func: OpOverload, args: tuple, kwargs: dict) -> Any:
    """The handler of an op torch decomposes: the ops it is made of, each handled."""
    return func.decompose(*args, **kwargs)


class OpTable:
    """Handlers by aten overload (or whole overload packet) for one tensor type."""

    def __init__(self, what: str, modules: tuple[str, ...] = ()) -> None:
        self.what = what  # "fixed-precision tensors", used in error messages
        self._modules = modules  # imported on first lookup; they register the handlers
        self._by_overload: dict[Any, Handler] = {}
        self._by_packet: dict[Any, Handler] = {}

    def _load(self) -> None:
        modules, self._modules = self._modules, ()
        for name in modules:
            importlib.import_module(name)

    def register(self, *ops: Any) -> Callable[[Handler], Handler]:
        """Decorator: run the handler for these overloads or packets (`aten.add`)."""

        def decorate(handler: Handler) -> Handler:
            for op in ops:
                if isinstance(op, OpOverloadPacket):
                    self._by_packet[op] = handler
                else:
                    self._by_overload[op] = handler
            return handler

        return decorate

    def lookup(self, func: OpOverload) -> Handler:
        """The handler for `func`, or `UnsupportedOpError` naming the op."""
        if self._modules:
            self._load()
        handler = self._by_overload.get(func)
        if handler is None:
            handler = self._by_packet.get(func.overloadpacket)
        if handler is None and decomposes(func):  # under inference_mode (see `decomposes`)
            handler = self._by_overload[func] = _decomposed
        if handler is None:
            handler = self._derived(func)
        if handler is None:
            raise _unsupported(func, self.what)
        return handler

    def _derived(self, func: OpOverload) -> Handler | None:
        """A handler made from a supported op for a form of it nobody registered: a
        `_foreach_` op (per tensor) or an in-place op (its out-of-place form, written back)."""
        name = func.overloadpacket.__name__
        if name.startswith("_foreach_"):
            method = name[len("_foreach_"):]
            if not hasattr(torch.Tensor, method):
                return None
            handler = functools.partial(_per_tensor, method, method.endswith("_"))
        elif name.endswith("_") and not name.startswith("_"):
            out_of_place = out_of_place_of(func)
            if out_of_place is None or not self.supports(out_of_place):
                return None
            handler = functools.partial(_in_place_of, out_of_place)
        else:
            return None
        self._by_overload[func] = handler
        return handler

    def supports(self, func: OpOverload) -> bool:
        if self._modules:
            self._load()
        return func in self._by_overload or func.overloadpacket in self._by_packet


FIXED_OPS = OpTable(
    "fixed-precision tensors",
    ("zsyft.tensors.ops.fixed_arith", "zsyft.tensors.ops.fixed_shape",
     "zsyft.tensors.ops.fixed_float"),
)
SHARED_OPS = OpTable(
    "secret-shared tensors (SharedTensor)",
    (
        "zsyft.tensors.ops.shared_linear",
        "zsyft.tensors.ops.shared_shape",
        "zsyft.tensors.ops.shared_protocols",  # takes over the ops linear refused
        "zsyft.tensors.ops.shared_composites",  # built from the ones above
        "zsyft.tensors.ops.shared_selection",  # max, argmax ... from comparisons
        "zsyft.tensors.ops.shared_pooling",  # max_pool2d and its backward
        "zsyft.tensors.ops.shared_approximations",  # sigmoid, tanh
        "zsyft.tensors.ops.shared_convolution",  # conv, average pooling
        "zsyft.tensors.ops.shared_piecewise",  # clamp, hardtanh, leaky_relu
        "zsyft.tensors.ops.shared_masks",  # where, masked_fill, !=
    ),
)


def is_plain(value: Any) -> bool:
    """True for an ordinary tensor (or `nn.Parameter`), False for wrapper subclasses such as
    pointers, fixed-precision and shared tensors (they override `__torch_dispatch__`)."""
    return (
        isinstance(value, torch.Tensor)
        and type(value).__torch_dispatch__ is torch.Tensor.__torch_dispatch__
    )


def integral_value(value: Any) -> int | torch.Tensor | None:
    """`value` as an exact integer (Python int or int64 tensor) if it is a public integer.

    Python ints and bools, integral floats (`2.0`), integer/bool tensors and floating tensors
    whose every element is an integer (below 2^62 in magnitude) qualify; anything else
    (fractions, NaN, zsyft tensors) gives None.
    """
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 2.0**62:
            return int(value)
        return None
    if not is_plain(value):  # never a zsyft wrapper: its values are not public here
        return None
    if value.dtype == torch.bool or not (value.is_floating_point() or value.is_complex()):
        return value.to(torch.int64)
    if value.is_complex():
        return None
    finite = bool(torch.isfinite(value).all()) if value.numel() else True
    if finite and bool((value == value.round()).all()) and bool((value.abs() < 2.0**62).all()):
        return value.to(torch.int64)
    return None
