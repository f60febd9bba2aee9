"""`F.max_pool2d` (`nn.MaxPool2d`) of `SharedTensor`s, and its backward pass.

Forward: each share is cut into its windows (`unfold`, pointer ops at the parties, no
protocol), and the tournament of `shared_selection` finds each window's maximum with the
(shared) index of its position in the input's plane, as torch gives it. Nothing is revealed.

Backward: torch asks for `max_pool2d_with_indices_backward(grad, x, ..., indices)`, which
sends each window's gradient to its maximum. Under autograd the forward tournament also
carries every candidate's one-hot position (0/1, unscaled), selected with the same shared
bits in the same protocol ops, and keeps the winner's on the indices it returns
(`SharedTensor.window_choice`). The backward pass is then one exact Beaver product,
`grad * choice` (the gradient spread over each window), and a public scatter-add of the
windows back into the input's plane (`index_add`, share by share), which also sums the
windows that overlap. Without autograd the one-hots are not computed.

Padding and `ceil_mode=True` windows are refused (padding would need -inf).
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.tensors.ops import SHARED_OPS, UnsupportedOpError
from zsyft.tensors.ops import shared_linear as linear
from zsyft.tensors.ops.shared_selection import tournament
from zsyft.tensors.protocol_client import run_protocol
from zsyft.tensors.shared import SharedTensor

aten = torch.ops.aten


class Windows:
    """The geometry of one max pooling: window size, stride, dilation and output size."""

    def __init__(self, args: tuple, height: int, width: int) -> None:
        def pair(position: int, default: Any) -> list[int]:
            value = args[position] if len(args) > position and args[position] else default
            return list(value) * 2 if len(value) == 1 else list(value)

        self.kernel = pair(0, None)
        self.stride, padding, self.dilation = pair(1, self.kernel), pair(2, [0]), pair(3, [1])
        ceil_mode = len(args) > 4 and args[4]
        self.height, self.width = height, width
        geometry = list(zip((height, width), self.kernel, self.stride, self.dilation,
                            strict=True))
        self.sizes = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in geometry]
        if any(padding) or (ceil_mode and any((n - d * (k - 1) - 1) % s
                                              for n, k, s, d in geometry)):
            raise UnsupportedOpError(
                "max_pool2d on shared tensors takes no padding and ceil_mode=False (padding "
                "would need -inf); pad the input with F.pad(x, ..., value=<a low number>) "
                "first",
                op="max_pool2d",
            )
        self.spans = [d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation, strict=True)]

    @property
    def size(self) -> int:
        return self.kernel[0] * self.kernel[1]

    def positions(self) -> torch.Tensor:
        """`[out_h, out_w, window]`: where each window element sits in the input's plane."""
        (sh, sw), (dh, dw) = self.stride, self.dilation
        rows = torch.arange(self.sizes[0]).view(-1, 1, 1, 1) * sh + torch.arange(
            0, self.spans[0], dh).view(1, 1, -1, 1)
        cols = torch.arange(self.sizes[1]).view(1, -1, 1, 1) * sw + torch.arange(
            0, self.spans[1], dw).view(1, 1, 1, -1)
        return (rows * self.width + cols).reshape(self.sizes[0], self.sizes[1], -1)

    def cut(self, x: SharedTensor) -> SharedTensor:
        """`[..., out_h, out_w, window]`: every window's elements, share by share."""
        windows = x.unfold(-2, self.spans[0], self.stride[0]).unfold(
            -2, self.spans[1], self.stride[1])
        if self.dilation != [1, 1]:
            windows = windows[..., ::self.dilation[0], ::self.dilation[1]]
        return windows.reshape(*windows.shape[:-2], self.size)


@SHARED_OPS.register(aten.max_pool2d_with_indices.default)
def max_pool2d(func: Any, args: tuple, kwargs: dict) -> Any:
    """`F.max_pool2d`: the maximum of each window and its (shared) index in the plane."""
    x = args[0]
    windows = Windows(args[1:], *x.shape[-2:])
    training = torch.is_grad_enabled() and x.requires_grad
    cut = windows.cut(x)
    values, indices, choice = tournament(cut, cut.dim() - 1, True, windows.positions(),
                                          want_choice=training)
    indices.window_choice = choice
    return values, indices


@SHARED_OPS.register(aten.max_pool2d_with_indices_backward.default)
def max_pool2d_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    """Each window's gradient at its maximum, summed where windows overlap (see above)."""
    grad, x, indices = args[0], args[1], args[-1]
    choice = indices.window_choice if isinstance(indices, SharedTensor) else None
    if choice is None:
        raise UnsupportedOpError(
            "max_pool2d's backward needs the choices its forward pass keeps under autograd; "
            "this forward ran without autograd (under torch.no_grad(), or on an input that "
            "does not require grad)",
            op="max_pool2d_with_indices_backward",
        )
    windows = Windows(args[2:7], *x.shape[-2:])
    g = linear.group(func, [grad, x])
    shape = [*grad.shape, windows.size]
    spread = [piece.unsqueeze(-1).expand(shape).contiguous() for piece in grad.shares]
    per_window = run_protocol("mul", [spread, choice], g.crypto_provider,
                              {"x_shape": shape, "y_shape": shape}, shape)
    lead, plane = list(x.shape[:-2]), windows.height * windows.width
    where = windows.positions().reshape(-1)
    summed = [
        piece.new_zeros([*lead, plane]).index_add(-1, where, piece.reshape(*lead, -1))
        .view(x.shape)
        for piece in per_window
    ]
    return g.result(summed)
