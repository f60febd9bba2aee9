"""Whole `nn.Module`s: send, fix precision, secret-share and bring back every parameter.

The module object stays local (its Python code runs here); only its tensors change form.
After `model.send(bob)`, `model(x_ptr)` runs every op at bob, and `torch.optim` updates the
remote parameters in place. After `model.fix_precision().share(bob, alice, crypto_provider=
james, requires_grad=True)` every parameter is a `SharedTensor` leaf; `model.get()` brings
them back as fixed-precision tensors (with their gradients) and `model.float_precision()`
decodes them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zsyft.remote.node import local_node
from zsyft.tensors.fixed_precision import FixedPrecisionTensor, fix_precision
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.shared import SharedTensor, check_sharing_options, share
from zsyft.tensors.transfer import send


def _replace(module: nn.Module, convert: Any, want: Any) -> nn.Module:
    """Replace every parameter and buffer `want(t)` accepts by `convert(t)`.

    A parameter keeps its `requires_grad` unless `convert` returns `(value, requires_grad)`;
    a returned `.grad` on the value becomes the new parameter's gradient.
    """
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and want(param):
                value = convert(param)
                requires_grad = param.requires_grad
                if isinstance(value, tuple):
                    value, requires_grad = value
                grad = value.grad if value.is_leaf else None
                local = nn.Parameter(value.detach(), requires_grad=requires_grad)
                if grad is not None:
                    local.grad = grad
                sub._parameters[name] = local
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None and want(buffer):
                sub._buffers[name] = convert(buffer).detach()
    return module


def send_module(module: nn.Module, worker: object) -> nn.Module:
    """Send every parameter and buffer of `module` to `worker`; returns it. Tensors become
    pointers; a module already sent elsewhere becomes a chain of pointers, as with tensors
    (`model.send(bob).send(alice)`: the data stays at bob, alice holds the pointers)."""
    return _move_tensors(module, worker, lambda t: send(t.detach(), worker, local_node().id))


def move_module(module: nn.Module, worker: object) -> nn.Module:
    """PySyft's `model.move(worker)`: every parameter's data goes straight to `worker` (from
    worker to worker, not through here; see `PointerTensor.move`); returns the module."""
    return _move_tensors(module, worker, lambda t: t.detach().move(worker) if isinstance(
        t, PointerTensor) else send(t.detach(), worker, local_node().id))


def _move_tensors(module: nn.Module, worker: object, place: Any) -> nn.Module:
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and _to_place(param, worker):
                pointer = place(param)
                sub._parameters[name] = nn.Parameter(pointer, requires_grad=param.requires_grad)
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None and _to_place(buffer, worker):
                sub._buffers[name] = place(buffer)
    return module


def _to_place(t: torch.Tensor, worker: object) -> bool:
    if isinstance(t, SharedTensor | FixedPrecisionTensor):
        raise TypeError(
            f"this module's tensors are {type(t).__name__}s: get() it (and float_precision()) "
            "before sending or moving it"
        )
    return not (isinstance(t, PointerTensor) and t.location is worker)


def get_module(module: nn.Module) -> nn.Module:
    """Bring every remote or shared parameter and buffer back (with its gradient); returns it.

    Shared parameters come back as what was shared: fixed-precision tensors after
    `model.fix_precision().share(...)` (decode them with `model.float_precision()`).
    """
    return _replace(
        module,
        lambda t: t.get(),
        lambda t: isinstance(t, PointerTensor | SharedTensor),
    )


def fix_precision_module(
    module: nn.Module, base: int = 10, precision_fractional: int = 3
) -> nn.Module:
    """Encode every floating parameter and buffer in fixed point (see `fix_precision`).

    Remote, shared or already fixed-precision parameters raise the tensor-level error.
    """
    return _replace(
        module,
        lambda t: fix_precision(t, base, precision_fractional),
        lambda t: _is_plain_float(t) or isinstance(t, _ZSYFT_TENSORS),
    )


def float_precision_module(module: nn.Module) -> nn.Module:
    """Decode every fixed-precision parameter and buffer (and gradient) to plain floats.

    Shared parameters raise: `model.get()` first, as with a tensor.
    """
    return _replace(
        module,
        lambda t: t.float_precision(),
        lambda t: isinstance(t, FixedPrecisionTensor | SharedTensor),
    )


def share_module(
    module: nn.Module,
    *workers: Any,
    crypto_provider: Any = None,
    requires_grad: bool = False,
    **options: Any,
) -> nn.Module:
    """Secret-share every floating parameter and buffer among `workers` (see `share`, which
    also takes PySyft's `protocol`, `field` and `dtype` options).

    Parameters require grad iff `requires_grad` (PySyft's meaning: track gradients of the
    encrypted model) and they did before: a frozen parameter stays frozen. Plain float
    parameters are encoded with the default precision first.
    """
    check_sharing_options(**options)  # before any parameter is converted

    def convert(t: torch.Tensor) -> Any:
        shared = share(t, *workers, crypto_provider=crypto_provider, **options)
        if not isinstance(t, nn.Parameter):
            return shared
        return shared, requires_grad and t.requires_grad

    return _replace(
        module, convert, lambda t: _is_plain_float(t) or isinstance(t, _ZSYFT_TENSORS)
    )


_ZSYFT_TENSORS = (PointerTensor, FixedPrecisionTensor, SharedTensor)


def _is_plain_float(t: torch.Tensor) -> bool:
    return not isinstance(t, _ZSYFT_TENSORS) and t.is_floating_point()

