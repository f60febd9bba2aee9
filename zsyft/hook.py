"""`sy.TorchHook(torch)`: the one place that adds zsyft's methods to torch classes.

Nothing changes in torch until the user asks for it: importing zsyft adds nothing. The hook
adds to `torch.Tensor`: `send`, `id`, `fix_precision`/`fix_prec`, `float_precision`/
`float_prec` and `share`; to `nn.Module`: `send`, `get`, `fix_precision`/`fix_prec`,
`float_precision`/`float_prec` and `share`; to `torch.optim.Optimizer`: `fix_precision`/
`fix_prec`, and a check before every optimizer's step that refuses, with a clear error, the
optimizers it cannot run on encrypted parameters; it replaces `F.one_hot` and DLPack export
with versions that handle zsyft's tensors (`tensors.torch_functions`). Pointers,
fixed-precision and shared tensors carry their own versions of these (`get`,
`float_precision`, ...) as methods of their classes.
"""

from __future__ import annotations

import copy
import secrets
import warnings
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from zsyft.nn import (
    fix_precision_module,
    float_precision_module,
    get_module,
    move_module,
    send_module,
    share_module,
)
from zsyft.remote.node import LocalNode, local_node
from zsyft.tensors.fixed_precision import FixedPrecisionTensor, fix_precision
from zsyft.tensors.pointer import PointerTensor, refuse_several_workers
from zsyft.tensors.shared import SharedTensor
from zsyft.tensors.sharing import share
from zsyft.tensors.torch_functions import install as install_torch_functions
from zsyft.tensors.transfer import send


def _tensor_send(self: torch.Tensor, worker: Any, *more: Any) -> PointerTensor:
    """Send this tensor to `worker` and return a pointer to it.

    The pointer keeps `requires_grad` (it is a leaf), so autograd runs on the remote data;
    a `.grad` goes along (the pointer's `.grad` points at it).
    """
    refuse_several_workers(more)
    return send(self, worker, local_node().id)


def _tensor_id(self: torch.Tensor) -> int:
    """A random id for this tensor (PySyft tensors carry one), allocated on first use."""
    own = self.__dict__.get("_zsyft_id")
    if own is None:
        own = self.__dict__["_zsyft_id"] = secrets.randbits(64)
    return own


def _tensor_fix_precision(
    self: torch.Tensor, base: int = 10, precision_fractional: int = 3
) -> FixedPrecisionTensor:
    """Encode this tensor in fixed point: `round(x * base**precision_fractional)` in int64."""
    return fix_precision(self, base, precision_fractional)


def _tensor_float_precision(self: torch.Tensor) -> torch.Tensor:
    """Only fixed-precision tensors have a float precision to go back to."""
    raise TypeError(
        f"float_precision() decodes a fixed-precision tensor; this is a {type(self).__name__} "
        "(x.fix_precision() makes one)"
    )


def _tensor_share(
    self: torch.Tensor,
    *workers: Any,
    crypto_provider: Any = None,
    requires_grad: bool = False,
    **options: Any,
) -> SharedTensor:
    """Secret-share this tensor among `workers`; `.get()` gives it back (see `sharing.share`,
    which also takes PySyft's `protocol`, `field` and `dtype` options)."""
    return share(
        self, *workers, crypto_provider=crypto_provider, requires_grad=requires_grad, **options
    )


_DIVIDES = ("'s step divides by a running statistic of the gradients, and zsyft cannot divide "
            "by a secret-shared or fixed-precision value")
# Optimizers whose step zsyft cannot run on encrypted parameters, and why.
_REFUSED_STEPS: dict[type, str] = {
    **{cls: _DIVIDES for cls in (
        torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
        torch.optim.RAdam, torch.optim.Adagrad, torch.optim.Adadelta, torch.optim.RMSprop,
        torch.optim.SparseAdam,
    )},
    torch.optim.Rprop: ("'s step assigns through masks of the gradients' signs, which would "
                        "show every party which elements they select"),
    torch.optim.LBFGS: "'s step reads the loss as a Python float at every iteration",
}
_step_hook: Any = None  # the handle of `_refuse_encrypted_step`, registered once


def _refuse_encrypted_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    """Raise a clear error before the step of an optimizer zsyft cannot run on encrypted
    parameters (registered for every optimizer's step, with or without `.fix_precision()`)."""
    reason = next((why for cls, why in _REFUSED_STEPS.items() if isinstance(optimizer, cls)), None)
    if reason is None:
        return
    params = (p for group in optimizer.param_groups for p in group["params"])
    if any(isinstance(p, SharedTensor | FixedPrecisionTensor) for p in params):
        raise TypeError(
            f"{type(optimizer).__name__}{reason}; use optim.SGD (momentum, nesterov and "
            "weight_decay work)"
        )


def _optimizer_fix_precision(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
    """Accepted for PySyft compatibility; returns the optimizer itself.

    PySyft re-encoded the hyperparameters here (its `precision_fractional=` set the precision
    of `lr`). In zsyft the parameters themselves carry the fixed-point encoding
    (FixedPrecisionTensor / SharedTensor), and a public float such as `lr` is encoded by the
    op that uses it (`param.add_(grad, alpha=-lr)`) with 16 significant bits whatever the
    parameters' precision (`FixedPointEncoder.encode_factor`), so there is nothing to convert
    and the arguments are ignored. Warns when no shared parameter requires grad (the model
    was shared without `requires_grad=True`: step() would silently change nothing); refuses
    the optimizers zsyft cannot step on encrypted models (Adam, RMSprop, Rprop, ...), as
    their `step()` does without this call.

    Plain SGD (no momentum, weight decay or maximize) of secret-shared
    parameters is switched to torch's multi-tensor step, which updates every parameter with
    one `_foreach_add_(params, grads, alpha=-lr)`: that truncates all the scaled gradients in
    one protocol round instead of one round per parameter.
    """
    _refuse_encrypted_step(self)
    params = [p for group in self.param_groups for p in group["params"]]
    if params and all(isinstance(p, SharedTensor) and not p.requires_grad for p in params):
        warnings.warn(
            "none of this optimizer's secret-shared parameters requires grad, so step() will "
            "not change them: share the model with requires_grad=True to train it",
            stacklevel=2,
        )
    if isinstance(self, torch.optim.SGD):
        for group in self.param_groups:
            plain = not (group.get("momentum") or group.get("weight_decay")
                         or group.get("maximize") or group.get("fused"))
            shared = all(isinstance(p, SharedTensor) for p in group["params"])
            if plain and shared and group.get("foreach") is None:
                group["foreach"] = True
    return self


def _tensor_copy(self: torch.Tensor) -> torch.Tensor:
    """PySyft's `x.copy()`: a copy of the tensor (`clone()`; of a shared tensor, new shares
    at the same parties; of a pointer, a copy at the same worker)."""
    return self.clone()


def _module_copy(self: nn.Module) -> nn.Module:
    """PySyft's `model.copy()` (`model.copy().send(bob)` in federated averaging): a deep copy;
    a sent or shared model is copied where its parameters are."""
    return copy.deepcopy(self)


class TorchHook:
    """Adds zsyft's methods to torch; `hook.local_worker` is the local node "me"."""

    def __init__(self, torch_module: ModuleType = torch, **_ignored: Any) -> None:
        if torch_module is not torch:
            raise TypeError("TorchHook expects the torch module: sy.TorchHook(torch)")
        self.torch = torch_module
        self.local_worker: LocalNode = local_node()
        torch.Tensor.send = _tensor_send  # type: ignore[attr-defined]
        if not isinstance(getattr(torch.Tensor, "id", None), property):
            torch.Tensor.id = property(_tensor_id)  # type: ignore[attr-defined]
        torch.Tensor.fix_precision = _tensor_fix_precision  # type: ignore[attr-defined]
        torch.Tensor.fix_prec = _tensor_fix_precision  # type: ignore[attr-defined]
        torch.Tensor.float_precision = _tensor_float_precision  # type: ignore[attr-defined]
        torch.Tensor.float_prec = _tensor_float_precision  # type: ignore[attr-defined]
        torch.Tensor.share = _tensor_share  # type: ignore[attr-defined]
        torch.Tensor.copy = _tensor_copy  # type: ignore[attr-defined]
        nn.Module.copy = _module_copy  # type: ignore[attr-defined]
        nn.Module.send = send_module  # type: ignore[attr-defined]
        nn.Module.move = move_module  # type: ignore[attr-defined]
        nn.Module.get = get_module  # type: ignore[attr-defined]
        nn.Module.fix_precision = fix_precision_module  # type: ignore[attr-defined]
        nn.Module.fix_prec = fix_precision_module  # type: ignore[attr-defined]
        nn.Module.float_precision = float_precision_module  # type: ignore[attr-defined]
        nn.Module.float_prec = float_precision_module  # type: ignore[attr-defined]
        nn.Module.share = share_module  # type: ignore[attr-defined]
        torch.optim.Optimizer.fix_precision = _optimizer_fix_precision  # type: ignore[attr-defined]
        torch.optim.Optimizer.fix_prec = _optimizer_fix_precision  # type: ignore[attr-defined]
        install_torch_functions()  # F.one_hot and DLPack export, aware of zsyft's tensors
        global _step_hook
        if _step_hook is None:
            _step_hook = register_optimizer_step_pre_hook(_refuse_encrypted_step)

    def __repr__(self) -> str:
        return "<TorchHook zsyft>"
