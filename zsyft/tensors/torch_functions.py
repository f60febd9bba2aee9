"""torch functions that take a way around `__torch_dispatch__` for wrapper tensors, replaced
by `sy.TorchHook(torch)` with versions that handle zsyft's tensors.

- `F.one_hot`: for a tensor subclass, torch's kernel skips its checks of the labels (they
  read the data) and builds the result from `eq`: a label out of range silently gave a row of
  zeros. On a pointer it runs as one op at the pointer's worker, whose kernel checks them.
- `torch.utils.dlpack.to_dlpack` (and `torch.to_dlpack`) hand out a capsule of the tensor's
  memory without asking the tensor: for a pointer, shared or fixed-precision tensor, a null
  pointer that crashes the process once used. They raise the tensor's `memory_error`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.dlpack

from zsyft.errors import PointerUsageError
from zsyft.tensors._torch_compat import WithoutOwnMemory
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.remote_ops import run_remote

_torch_one_hot = torch._C._nn.one_hot
_torch_to_dlpack = torch._C._to_dlpack


def one_hot(tensor: torch.Tensor, num_classes: int = -1) -> torch.Tensor:
    """`F.one_hot`; on a pointer, one op at its worker (see the module docstring)."""
    if not isinstance(tensor, PointerTensor):
        return _torch_one_hot(tensor, num_classes)
    if num_classes < 0:
        raise PointerUsageError(
            f"F.one_hot of a pointer needs num_classes: without it, the number of classes "
            f"is read from the data at {tensor.location.id}; pass num_classes=..., or "
            "compute it with labels.max().get() + 1"
        )
    return run_remote(torch.ops.aten.one_hot.default, (tensor, num_classes), {})


def to_dlpack(tensor: torch.Tensor) -> Any:
    """`torch.utils.dlpack.to_dlpack`, refusing tensors whose values live elsewhere."""
    if isinstance(tensor, WithoutOwnMemory):
        raise tensor.memory_error("DLPack export")
    return _torch_to_dlpack(tensor)


def install() -> None:
    """Put these in torch's namespaces (idempotent)."""
    F.one_hot = one_hot
    torch.utils.dlpack.to_dlpack = to_dlpack
    torch.to_dlpack = to_dlpack
