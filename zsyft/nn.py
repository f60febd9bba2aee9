"""Whole `nn.Module`s: send, fix precision, secret-share and bring back every parameter.

The module object stays local (its Python code runs here); only its tensors change form,
each parameter in place (the same object), as in PySyft.
After `model.send(bob)`, `model(x_ptr)` runs every op at bob, and `torch.optim` updates the
remote parameters in place. After `model.fix_precision().share(bob, alice, crypto_provider=
james, requires_grad=True)` every parameter is a `SharedTensor` leaf; `model.get()` brings
them back as fixed-precision tensors (with their gradients) and `model.float_precision()`
decodes them.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import torch
from torch import nn

from zsyft.remote.interrupts import interrupts_deferred
from zsyft.remote.node import local_node
from zsyft.tensors.fixed_precision import FixedPrecisionTensor, fix_precision
from zsyft.tensors.pointer import PointerTensor, refuse_several_workers
from zsyft.tensors.shared import SharedTensor
from zsyft.tensors.sharing import check_sharing_options, share
from zsyft.tensors.transfer import send


def _replace(
    module: nn.Module, convert: Any, want: Any, all_or_nothing: bool = False
) -> nn.Module:
    """Give every parameter and buffer `want(t)` accepts the form `convert(t)`.

    A parameter keeps its `requires_grad` unless `convert` returns `(value, requires_grad)`;
    a returned `.grad` on the value becomes the parameter's gradient. Parameters change in
    place (see `_become`), so an optimizer made before the change still updates them, and a
    parameter two modules share is converted once and stays shared.

    With `all_or_nothing`, a conversion that fails or is interrupted (Ctrl-C in a notebook)
    puts back what it changed: no module is left half encoded or half shared. Without it,
    what was converted stays so, and running it again converts the rest (send, get).
    """
    converted: dict[int, tuple[nn.Parameter, nn.Parameter]] = {}  # id -> (before, after)
    undo: list[Any] = []
    try:
        for sub in module.modules():
            _replace_in(sub, convert, want, converted, undo)
    except BaseException:
        if all_or_nothing:
            with interrupts_deferred():
                for step in reversed(undo):
                    step()
        raise
    return module


def _replace_in(
    sub: nn.Module, convert: Any, want: Any, converted: dict, undo: list[Any]
) -> None:
    """`_replace` for the tensors `sub` itself holds; appends to `undo` how to put each
    change back."""
    # torch's recurrent layers keep weak references to their weights, which a swap refuses;
    # they are dropped and rebuilt around the change, as `nn.RNNBase._apply` does
    rnn_weights = isinstance(getattr(sub, "_flat_weight_refs", None), list)
    if rnn_weights:
        sub._flat_weight_refs = []
        undo.append(sub._init_flat_weights)
    for name, param in list(sub._parameters.items()):
        if param is None:
            continue
        if id(param) in converted:  # tied: met in an earlier module
            sub._parameters[name] = converted[id(param)][1]
            undo.append(partial(sub._parameters.__setitem__, name, param))
            continue
        if not want(param):
            continue
        _leave_graphs(param)
        value = convert(param)
        requires_grad = param.requires_grad
        if isinstance(value, tuple):
            value, requires_grad = value
        after = _set_parameter(sub, name, param, value, requires_grad, undo)
        converted[id(param)] = (param, after)
    for name, buffer in list(sub._buffers.items()):
        if buffer is not None and want(buffer):
            sub._buffers[name] = convert(buffer).detach()
            undo.append(partial(sub._buffers.__setitem__, name, buffer))
    if rnn_weights:
        sub._init_flat_weights()
        undo.append(partial(setattr, sub, "_flat_weight_refs", []))


def _set_parameter(
    sub: nn.Module,
    name: str,
    param: nn.Parameter,
    value: torch.Tensor,
    requires_grad: bool,
    undo: list[Any],
) -> nn.Parameter:
    """Make `param` (registered as `sub.<name>`) the leaf parameter `value` with its `.grad`:
    the same object when it can change in place, else a new one registered in its stead."""
    if value is param:  # changed in place already (a pointer's `move`)
        return param
    new = _leaf(value, requires_grad, value.grad if value.is_leaf else None)
    if _become(param, new):
        undo.append(partial(_become, param, new))  # `new` holds what `param` held
        return param
    warnings.warn(
        f"the parameter {name!r} of {type(sub).__name__} is referenced elsewhere (a view of "
        "it, or a graph still holding it) and was replaced by a new object: an optimizer "
        "made before this call no longer updates it; make the optimizer afterwards",
        stacklevel=5,
    )
    sub._parameters[name] = new
    undo.append(partial(sub._parameters.__setitem__, name, param))
    return new


def _leave_graphs(param: nn.Parameter) -> None:
    """Give `param` a fresh leaf of the same value and gradient if a live autograd graph
    holds it (the loss of the last training step, say): torch's swap (`_become`) then has no
    graph node to look up, which it does with a view of the tensor, and which a pointer or
    shared tensor could no longer make once its value was fetched."""
    if param._use_count() > 1:
        fresh = _leaf(param, param.requires_grad, param.grad)
        if _become(param, fresh) and isinstance(fresh, PointerTensor):
            fresh.ref.drop(fresh)  # the graph's copy gives up its claim: get() takes the object


def _leaf(value: torch.Tensor, requires_grad: bool, grad: Any) -> nn.Parameter:
    """A new parameter object holding `value`'s data (a new alias, nothing copied)."""
    new = nn.Parameter(value.detach(), requires_grad=requires_grad)
    if grad is not None:
        new.grad = grad
    return new


def _become(old: torch.Tensor, new: torch.Tensor) -> bool:
    """Swap the contents of the tensor objects `old` and `new` (class, data, gradient,
    attributes): `old` keeps its identity, as PySyft's in-place `send_`/`get_` kept it, so
    the optimizers and code holding a module's parameters follow it to the worker and back.

    A pointer tensor is known to its remote claim by a weak reference, which torch's swap
    refuses: it is handed over to the object that holds the pointer afterwards. False when
    torch cannot swap (other references to the tensor's data, such as a live view).
    """
    for tensor in (old, new):
        if isinstance(tensor, PointerTensor):
            tensor.ref.drop(tensor)
    try:
        torch.utils.swap_tensors(old, new)
        return True
    except RuntimeError:
        return False
    finally:
        for tensor in (old, new):
            if isinstance(tensor, PointerTensor):
                tensor.ref.hold(tensor)


def send_module(module: nn.Module, worker: object, *more: object) -> nn.Module:
    """Send every parameter and buffer of `module` to `worker`; returns it. Tensors become
    pointers; a module already sent elsewhere becomes a chain of pointers, as with tensors
    (`model.send(bob).send(alice)`: the data stays at bob, alice holds the pointers)."""
    refuse_several_workers(more)
    return _replace(module, lambda t: send(t, worker, local_node().id),
                    lambda t: _to_place(t, worker))


def move_module(module: nn.Module, worker: object) -> nn.Module:
    """PySyft's `model.move(worker)`: every parameter's data goes straight to `worker` (from
    worker to worker, not through here; see `PointerTensor.move`); returns the module."""
    return _replace(module, lambda t: t.move(worker) if isinstance(t, PointerTensor) else send(
        t, worker, local_node().id), lambda t: _to_place(t, worker))


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

    Parameters encoded so already stay as they are, so running a notebook cell's
    `model.fix_precision().share(...)` again after an interrupt stopped its `share()` (which
    then changed nothing) completes it. Remote, shared or otherwise encoded parameters raise
    the tensor-level error.
    """

    def want(t: torch.Tensor) -> bool:
        if isinstance(t, FixedPrecisionTensor):
            return (t.base, t.precision_fractional) != (base, precision_fractional)
        return _is_plain_float(t) or isinstance(t, _ZSYFT_TENSORS)

    return _replace(
        module, lambda t: fix_precision(t, base, precision_fractional), want,
        all_or_nothing=True,
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
        module,
        convert,
        lambda t: _is_plain_float(t) or isinstance(t, _ZSYFT_TENSORS),
        all_or_nothing=True,
    )


_ZSYFT_TENSORS = (PointerTensor, FixedPrecisionTensor, SharedTensor)


def _is_plain_float(t: torch.Tensor) -> bool:
    return not isinstance(t, _ZSYFT_TENSORS) and t.is_floating_point()

