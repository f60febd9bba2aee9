"""`sy.TorchHook(torch)`: the one place that adds zsyft's methods to torch classes.

Nothing changes in torch until the user asks for it: importing zsyft adds nothing. The hook
adds `Tensor.send`, `Tensor.id`, and `nn.Module.send`/`get`; pointers (`PointerTensor`) carry
`get` and their PySyft attributes themselves.
"""

from __future__ import annotations

import secrets
from types import ModuleType
from typing import Any

import torch
from torch import nn

from zsyft.nn import get_module, send_module
from zsyft.remote.node import LocalNode, local_node
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.transfer import send


def _tensor_send(self: torch.Tensor, worker: Any) -> PointerTensor:
    """Send this tensor to `worker` and return a pointer to it.

    The pointer keeps `requires_grad` (it is a leaf), so autograd runs on the remote data.
    """
    return send(self, worker, local_node().id)


def _tensor_id(self: torch.Tensor) -> int:
    """A random id for this tensor (PySyft tensors carry one), allocated on first use."""
    own = self.__dict__.get("_zsyft_id")
    if own is None:
        own = self.__dict__["_zsyft_id"] = secrets.randbits(64)
    return own


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
        nn.Module.send = send_module  # type: ignore[attr-defined]
        nn.Module.get = get_module  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return "<TorchHook zsyft>"
