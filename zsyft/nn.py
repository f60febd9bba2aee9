"""Sending whole `nn.Module`s: every parameter and buffer becomes a pointer, and back.

The module object stays local (its Python code runs here); only its tensors move. After
`model.send(bob)`, `model(x_ptr)` runs every op at bob, and `torch.optim` updates the remote
parameters in place.
"""

from __future__ import annotations

import torch
from torch import nn

from zsyft.remote.node import local_node
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.transfer import send


def send_module(module: nn.Module, worker: object) -> nn.Module:
    """Replace every parameter and buffer of `module` by a pointer at `worker`; returns it."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and not isinstance(param, PointerTensor):
                pointer = send(param.detach(), worker, local_node().id)
                sub._parameters[name] = nn.Parameter(pointer, requires_grad=param.requires_grad)
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None and not isinstance(buffer, PointerTensor):
                sub._buffers[name] = send(buffer, worker, local_node().id)
    return module


def get_module(module: nn.Module) -> nn.Module:
    """Bring every remote parameter and buffer of `module` back (with its gradient); returns it."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if isinstance(param, PointerTensor):
                value = param.get()
                local = nn.Parameter(value.detach(), requires_grad=param.requires_grad)
                local.grad = value.grad
                sub._parameters[name] = local
        for name, buffer in list(sub._buffers.items()):
            if isinstance(buffer, PointerTensor):
                sub._buffers[name] = buffer.get()
    return module


def is_remote(tensor: torch.Tensor) -> bool:
    return isinstance(tensor, PointerTensor)
