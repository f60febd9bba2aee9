"""`send()` and `move()` of a tensor inside an autograd graph (split learning), as `.to()` is.

A tensor an op made while autograd records (an activation `h = model_at_bob(x)`) is part of a
graph at its worker. Sent or moved elsewhere, a copy travels (the graph keeps the original:
its backward may need it), and the copy stays in the graph: its gradient travels back to
where the original is, so `loss.backward()` at alice reaches the model at bob.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.remote.node import local_node
from zsyft.tensors.pointer import PointerTensor


def in_graph(value: torch.Tensor) -> bool:
    """Whether `value` was made by an op autograd recorded (and still records)."""
    return torch.is_grad_enabled() and value.grad_fn is not None


class _Carry(torch.autograd.Function):
    """A copy of `value` at `worker`; backward carries the gradient home."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, worker: Any) -> PointerTensor:
        from zsyft.tensors.transfer import send

        ctx.home = value.location if isinstance(value, PointerTensor) else None
        if ctx.home is None:
            return send(value.detach(), worker, local_node().id)
        return value.detach().clone().move(worker)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        from zsyft.tensors.transfer import send

        home = ctx.home
        if home is None:
            return (grad.get() if isinstance(grad, PointerTensor) else grad), None
        if not isinstance(grad, PointerTensor):
            return send(grad, home, local_node().id), None
        if grad.location is home:
            return grad, None
        return grad.detach().clone().move(home), None


def carried(value: torch.Tensor, worker: Any) -> PointerTensor:
    """`value` (in a graph, see `in_graph`) copied to `worker`, its gradient carried home."""
    return _Carry.apply(value, worker)
