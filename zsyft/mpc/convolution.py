"""Convolutions as bilinear operations on int64 tensors, for Beaver triples.

A convolution is bilinear in its input and its weight, and so is each of its two gradients:
the input's gradient in (grad_output, weight), the weight's gradient in (grad_output, input).
A Beaver triple works for any bilinear operation (``z = op(eps, delta) + op(eps, b) +
op(a, delta) + op(a, b)``), so one :class:`Convolution` object names the operation for the
provider and the parties, and the same triple machinery as for ``mul`` and ``matmul`` runs it.

Torch computes int64 convolutions (and transposed ones) on the CPU with wraparound, which is
arithmetic in Z/2^64; its ``convolution_backward`` has no int64 kernel, so the gradients are
written here as convolutions themselves:

* input gradient of a convolution = the transposed convolution of ``grad_output`` with the
  same weight (its ``output_padding`` recovers the input's exact size), and the other way
  round for a transposed convolution;
* weight gradient = a convolution of the input (batch and channel axes swapped) with
  ``grad_output`` as the kernel, stride and dilation exchanged, cropped to the kernel's size,
  one group at a time. A transposed convolution is the adjoint of a plain one, so its weight
  gradient is the plain one's with input and ``grad_output`` exchanged.

The same code runs on plain tensors at a party and on pointers at the client (a convolution
with a public operand runs share by share at each party).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ROLES", "Convolution"]

aten = torch.ops.aten

ROLES = ("forward", "input_grad", "weight_grad")
"""forward: op(input, weight); input_grad: op(grad_output, weight); weight_grad:
op(grad_output, input)."""

_MAX_DIMS = 3  # conv1d, conv2d, conv3d


def _ints(value: Any, name: str, minimum: int, dims: int | None) -> tuple[int, ...]:
    if not (isinstance(value, list | tuple) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= minimum for n in value
    )):
        raise ValueError(f"convolution parameter {name!r} must be a list of ints >= {minimum}")
    if len(value) != dims if dims is not None else not 1 <= len(value) <= _MAX_DIMS:
        raise ValueError(f"convolution parameter {name!r} has {len(value)} entries; expected "
                         f"{dims or f'1 to {_MAX_DIMS}'}")
    return tuple(value)


@dataclass(frozen=True)
class Convolution:
    """``aten.convolution``'s hyperparameters and which of its bilinear maps is meant.

    ``shape`` is the input's shape for ``input_grad`` (to recover its exact size) and the
    weight's shape for ``weight_grad`` (to crop to the kernel); empty for ``forward``.
    """

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    transposed: bool
    output_padding: tuple[int, ...]
    groups: int
    role: str = "forward"
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        dims = len(self.stride)
        _ints(self.stride, "stride", 1, None)
        _ints(self.padding, "padding", 0, dims)
        _ints(self.dilation, "dilation", 1, dims)
        _ints(self.output_padding, "output_padding", 0, dims)
        if not isinstance(self.transposed, bool):
            raise ValueError("convolution parameter 'transposed' must be a bool")
        if not (isinstance(self.groups, int) and not isinstance(self.groups, bool)
                and self.groups >= 1):
            raise ValueError("convolution parameter 'groups' must be a positive int")
        if self.role not in ROLES:
            raise ValueError(f"convolution role {self.role!r} is not one of {ROLES}")
        if (self.role == "forward") != (not self.shape):
            raise ValueError("a convolution's gradients need the input's or weight's shape "
                             "(and only they)")
        if self.shape:
            _ints(self.shape, "shape", 0, dims + 2)

    # -- the wire ---------------------------------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        return {
            "stride": list(self.stride), "padding": list(self.padding),
            "dilation": list(self.dilation), "transposed": self.transposed,
            "output_padding": list(self.output_padding), "groups": self.groups,
            "role": self.role, "shape": list(self.shape),
        }  # fmt: skip

    @classmethod
    def from_wire(cls, value: Any) -> Convolution:
        """The convolution described by a client's parameters; ValueError if malformed."""
        fields = ("stride", "padding", "dilation", "transposed", "output_padding", "groups",
                  "role", "shape")
        if not (isinstance(value, dict) and set(value) == set(fields)):
            raise ValueError(f"convolution parameters must be a map with keys {fields}")
        lists = {}
        for key in ("stride", "padding", "dilation", "output_padding", "shape"):
            if not isinstance(value[key], list):
                raise ValueError(f"convolution parameter {key!r} must be a list of ints")
            lists[key] = tuple(value[key])  # checked by __post_init__
        return cls(**lists, transposed=value["transposed"], groups=value["groups"],
                   role=value["role"])

    def gradient(self, role: str, shape: Sequence[int]) -> Convolution:
        """This convolution's gradient map ``role``, for an input/weight of ``shape``."""
        return Convolution(self.stride, self.padding, self.dilation, self.transposed,
                           self.output_padding, self.groups, role, tuple(shape))

    # -- the bilinear map -------------------------------------------------------------------
    def __call__(self, a: Any, b: Any) -> Any:
        if self.role == "forward":
            return self._convolve(a, b, self.transposed, self.output_padding)
        if self.role == "input_grad":
            return self._input_grad(a, b)
        grad_output, source = (b, a) if self.transposed else (a, b)
        return self._weight_grad(source, grad_output)

    def output_shape(self, a_shape: Sequence[int], b_shape: Sequence[int]) -> torch.Size:
        """Shape of ``self(a, b)``, worked out on meta tensors; ValueError if they don't fit."""
        a = torch.empty(tuple(a_shape), dtype=torch.int64, device="meta")
        b = torch.empty(tuple(b_shape), dtype=torch.int64, device="meta")
        if a.dim() != len(self.stride) + 2 or b.dim() != len(self.stride) + 2:
            raise ValueError(f"a {len(self.stride)}-d convolution needs operands with "
                             f"{len(self.stride) + 2} dimensions, got {list(a_shape)} and "
                             f"{list(b_shape)}")
        try:
            return self(a, b).shape
        except (RuntimeError, IndexError) as exc:
            raise ValueError(f"convolution of shapes {list(a_shape)} and {list(b_shape)}: "
                             f"{exc}") from exc

    def _convolve(self, x: Any, w: Any, transposed: bool, output_padding: Sequence[int],
                  stride: Sequence[int] | None = None, dilation: Sequence[int] | None = None,
                  groups: int | None = None) -> Any:
        return aten.convolution(
            x, w, None, list(stride or self.stride), list(self.padding),
            list(dilation or self.dilation), transposed, list(output_padding),
            self.groups if groups is None else groups,
        )

    def _input_grad(self, grad_output: Any, weight: Any) -> Any:
        if self.transposed:
            zeros = [0] * len(self.stride)
            result = self._convolve(grad_output, weight, False, zeros)
        else:
            kernel = weight.shape[2:]
            spans = [
                (o - 1) * s - 2 * p + d * (k - 1) + 1
                for o, s, p, d, k in zip(grad_output.shape[2:], self.stride, self.padding,
                                         self.dilation, kernel, strict=True)
            ]
            extra = [n - span for n, span in zip(self.shape[2:], spans, strict=True)]
            result = self._convolve(grad_output, weight, True, extra)
        if tuple(result.shape) != self.shape:
            raise ValueError(f"input gradient has shape {list(result.shape)}, the input "
                             f"{list(self.shape)}")
        return result

    def _weight_grad(self, source: Any, grad_output: Any) -> Any:
        """d loss / d weight of the plain convolution of ``source`` (batch first) giving
        ``grad_output``, one group at a time."""
        groups = self.groups
        in_per_group = source.shape[1] // groups
        out_per_group = grad_output.shape[1] // groups
        kernel = self.shape[2:]
        zeros = [0] * len(self.stride)
        parts = []
        for g in range(groups):
            x = source[:, g * in_per_group:(g + 1) * in_per_group].transpose(0, 1)
            dy = grad_output[:, g * out_per_group:(g + 1) * out_per_group].transpose(0, 1)
            full = self._convolve(x, dy, False, zeros, stride=self.dilation,
                                  dilation=self.stride, groups=1)
            for dim, k in enumerate(kernel, start=2):
                full = full.narrow(dim, 0, k)
            parts.append(full.transpose(0, 1))
        result = parts[0] if groups == 1 else torch.cat(parts)
        if tuple(result.shape) != self.shape:
            raise ValueError(f"weight gradient has shape {list(result.shape)}, the weight "
                             f"{list(self.shape)}")
        return result
