"""Convolutions and average pooling of `SharedTensor`, forward and backward.

- `conv1d`/`conv2d`/`conv3d` and the transposed ones (`aten.convolution`): a convolution is
  bilinear in input and weight, so it runs as one Beaver product with a convolution triple
  and its truncation (`zsyft.mpc.convolution`), one protocol op; with a public weight or
  input, share by share and one truncation. The bias is added share-wise.
- Its backward (`aten.convolution_backward`): the input's and the weight's gradients are
  bilinear too (in grad_output and weight, and in grad_output and input): one protocol op
  each; the bias's gradient is a share-wise sum.
- `avg_pool1d/2d/3d` and `adaptive_avg_pool2d` (when the output size divides the input's):
  a window sum at each party (a convolution with a public all-ones kernel per channel, no
  rounding), then one exact truncation by the window's size. The backward spreads the
  gradient with the transposed window sum and divides the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.mpc.convolution import Convolution
from zsyft.tensors.ops import SHARED_OPS, UnsupportedOpError, op_name
from zsyft.tensors.ops import shared_linear as linear
from zsyft.tensors.ops.shared_protocols import divide_by_integer, product
from zsyft.tensors.shared import SharedTensor

aten = torch.ops.aten


def _convolution(args: tuple) -> Convolution:
    """The `Convolution` of `aten.convolution(input, weight, bias, stride, padding, dilation,
    transposed, output_padding, groups)` (or of its backward: the same hyperparameters)."""
    stride, padding, dilation, transposed, output_padding, groups = args
    return Convolution(tuple(stride), tuple(padding), tuple(dilation), bool(transposed),
                       tuple(output_padding), int(groups))


def _convolve(g: linear.Group, func: Any, x: Any, y: Any, spec: Convolution) -> SharedTensor:
    return g.result(product(g, func, "conv", x, y, spec, {"conv": spec.to_wire()}))


@SHARED_OPS.register(aten.convolution.default)
def convolution(func: Any, args: tuple, kwargs: dict) -> Any:
    x, weight, bias = args[:3]
    spec = _convolution(args[3:9])
    g = linear.group(func, args)
    out = _convolve(g, func, x, weight, spec)
    if bias is None:
        return out
    return torch.add(out, bias.view(-1, *[1] * len(spec.stride)))


@SHARED_OPS.register(aten.convolution_backward.default)
def convolution_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    grad, x, weight = args[:3]
    spec = _convolution(args[4:10])
    mask = args[10]
    g = linear.group(func, args)
    grad_input = grad_weight = grad_bias = None
    if mask[0]:
        grad_input = _convolve(g, func, grad, weight, spec.gradient("input_grad", x.shape))
    if mask[1]:
        grad_weight = _convolve(g, func, grad, x, spec.gradient("weight_grad", weight.shape))
    if mask[2]:
        grad_bias = torch.sum(grad, [0, *range(2, grad.dim())])
    return grad_input, grad_weight, grad_bias


# -- average pooling -------------------------------------------------------------------------
def _window_sums(
    x: SharedTensor, pieces: list[Any], kernel: list[int], stride: list[int],
    padding: list[int], role: str = "forward",
) -> list[Any]:
    """Each piece (a share of `x` or of a gradient) summed over pooling windows, per
    channel: a convolution with an all-ones kernel, groups = channels (`role` picks the
    transposed sum of the backward pass). Integer weights: no rounding, no protocol."""
    dims = len(kernel)
    channels = x.shape[-dims - 1]
    ones = torch.ones(channels, 1, *kernel, dtype=torch.int64)
    spec = Convolution(tuple(stride), tuple(padding), (1,) * dims, False, (0,) * dims,
                       channels)
    if role == "input_grad":
        spec = spec.gradient(role, x.shape if x.dim() == dims + 2 else (1, *x.shape))
    batched = pieces[0].dim() == dims + 2
    sums = [spec(p if batched else p.unsqueeze(0), ones) for p in pieces]
    return sums if batched else [s.squeeze(0) for s in sums]


def _pooling(
    func: Any, x: Any, dims: int, args: tuple
) -> tuple[list[int], list[int], list[int], int]:
    """Kernel, stride, padding and divisor of `avg_poolNd(x, kernel, stride, padding,
    ceil_mode, count_include_pad, divisor_override)`; refuses what the window sum can't do."""
    def each(value: Any) -> list[int]:
        return list(value) * dims if len(value) == 1 else list(value)

    kernel = each(args[0])
    stride = each(args[1]) if len(args) > 1 and args[1] else kernel
    padding = each(args[2]) if len(args) > 2 else [0] * dims
    ceil_mode = args[3] if len(args) > 3 else False
    count_include_pad = args[4] if len(args) > 4 else True
    divisor = args[5] if len(args) > 5 and args[5] is not None else None
    if not isinstance(x, SharedTensor):
        raise UnsupportedOpError(f"{op_name(func)} of a public tensor with a shared one",
                                 op=op_name(func))
    if any(padding) and not count_include_pad and divisor is None:
        raise UnsupportedOpError(
            f"{op_name(func)} with padding and count_include_pad=False divides each window "
            "by a different count; use count_include_pad=True or no padding on shared tensors",
            op=op_name(func),
        )
    if ceil_mode:
        spatial = x.shape[-dims:]
        exact = all((n + 2 * p - k) % s == 0
                    for n, p, k, s in zip(spatial, padding, kernel, stride, strict=True))
        if not exact:
            raise UnsupportedOpError(
                f"{op_name(func)} with ceil_mode=True adds partial windows; use "
                "ceil_mode=False on shared tensors",
                op=op_name(func),
            )
    size = 1
    for k in kernel:
        size *= k
    return kernel, stride, padding, divisor or size


# avg_pool1d reaches a tensor subclass as avg_pool2d of an unsqueezed input.
_AVG_POOLS = {aten.avg_pool2d.default: 2, aten.avg_pool3d.default: 3}
_AVG_POOL_BACKWARDS = {aten.avg_pool2d_backward.default: 2, aten.avg_pool3d_backward.default: 3}


@SHARED_OPS.register(*_AVG_POOLS)
def avg_pool(func: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0]
    kernel, stride, padding, divisor = _pooling(func, x, _AVG_POOLS[func], args[1:])
    g = linear.group(func, args)
    sums = g.result(_window_sums(x, x.shares, kernel, stride, padding))
    return divide_by_integer(g, sums, divisor)


@SHARED_OPS.register(*_AVG_POOL_BACKWARDS)
def avg_pool_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    grad, x = args[0], args[1]
    kernel, stride, padding, divisor = _pooling(func, x, _AVG_POOL_BACKWARDS[func], args[2:])
    g = linear.group(func, args)
    spread = g.result(_window_sums(x, grad.shares, kernel, stride, padding, "input_grad"))
    return divide_by_integer(g, spread, divisor)


def _adaptive_kernel(func: Any, x: Any, output_size: list[int]) -> list[int]:
    """The window of an adaptive average pooling whose output size divides the input's."""
    spatial = list(x.shape[-len(output_size):])
    if any(o <= 0 or n % o for n, o in zip(spatial, output_size, strict=True)):
        raise UnsupportedOpError(
            f"{op_name(func)} from {spatial} to {list(output_size)}: on shared tensors the "
            "output size must divide the input size (equal windows)",
            op=op_name(func),
        )
    return [n // o for n, o in zip(spatial, output_size, strict=True)]


@SHARED_OPS.register(aten._adaptive_avg_pool2d.default)
def adaptive_avg_pool2d(func: Any, args: tuple, kwargs: dict) -> Any:
    x, output_size = args[0], list(args[1])
    kernel = _adaptive_kernel(func, x, output_size)
    return avg_pool(aten.avg_pool2d.default, (x, kernel, kernel), {})


@SHARED_OPS.register(aten._adaptive_avg_pool2d_backward.default)
def adaptive_avg_pool2d_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    grad, x = args
    kernel = _adaptive_kernel(func, x, list(grad.shape[-2:]))
    return avg_pool_backward(aten.avg_pool2d_backward.default,
                             (grad, x, kernel, kernel, [0, 0], False, True, None), {})
