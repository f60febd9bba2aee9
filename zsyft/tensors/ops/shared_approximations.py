"""`sigmoid` and `tanh` of `SharedTensor`s, as piecewise-linear approximations.

Secret-shared arithmetic has additions, products and comparisons, not exponentials, so these
functions are approximated, as every MPC framework does (PySyft 0.2 used a Maclaurin series
for the sigmoid, accurate only near 0; CrypTen uses exp, reciprocal and Chebyshev series at
16 fractional bits). At PySyft's default precision (3 decimal digits) a polynomial loses its
small coefficients, so zsyft interpolates the function linearly between fixed knots and holds
it constant beyond the outer ones:

    f(x) ~ f(b_1) + sum_i d_i relu(x - b_i)

where `d_i` is the change of slope at knot `b_i`. All the `relu(x - b_i)` run as one ReLU
protocol op on the stacked differences (4 rounds up to 4096 stacked elements, 7 beyond; the
knots are public), the weighted sum is local, and one truncation divides it back (1 round):
5 or 8 rounds in all, and per element the
bytes of one ReLU times the number of knots. The slopes are encoded 2^16 times finer than the
tensor (the truncation divides by that scale too), so their rounding costs nothing visible;
at very high precisions less fine, so that the weighted sum stays in the truncation's range.

Largest error over the whole real line, from the knots below (`APPROXIMATIONS`): 0.0034 for
the sigmoid (19 knots), 0.0041 for tanh (21 knots), plus a few units of the last place.

Backward: `sigmoid_backward` is `grad * out * (1 - out)` and `tanh_backward` is
`grad * (1 - out^2)`, torch's own formulas on the approximate output: two fixed-point
products each (4 rounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zsyft.tensors.ops import SHARED_OPS, UnsupportedOpError, op_name
from zsyft.tensors.ops import shared_linear as linear
from zsyft.tensors.ops import shared_protocols as protocols
from zsyft.tensors.protocol_client import run_protocol

aten = torch.ops.aten
SLOPE_SCALE = 1 << 16
"""How much finer than the tensor's own encoding the slopes are encoded."""


@dataclass(frozen=True)
class PiecewiseLinear:
    """Linear interpolation of a function between knots, constant beyond them."""

    knots: tuple[float, ...]
    left: float  # the value at the first knot, and below it
    slope_changes: tuple[float, ...]  # d_i at each knot

    @classmethod
    def interpolate(cls, function: Any, knots: tuple[float, ...]) -> PiecewiseLinear:
        b = torch.tensor(knots, dtype=torch.float64)
        y = function(b)
        inner = (y[1:] - y[:-1]) / (b[1:] - b[:-1])
        flat = torch.zeros(1, dtype=torch.float64)
        slopes = torch.cat([flat, inner, flat])
        return cls(knots, float(y[0]), tuple((slopes[1:] - slopes[:-1]).tolist()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The approximation on plain values (what the shared version computes)."""
        b = torch.tensor(self.knots, dtype=torch.float64)
        d = torch.tensor(self.slope_changes, dtype=torch.float64)
        ramps = torch.relu(x.double().unsqueeze(-1) - b)
        return (self.left + (ramps * d).sum(-1)).to(x.dtype)


APPROXIMATIONS = {
    aten.sigmoid: PiecewiseLinear.interpolate(torch.sigmoid, (
        -7, -5, -4, -3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 7,
    )),
    aten.tanh: PiecewiseLinear.interpolate(torch.tanh, (
        -3.6, -2.6, -2.0, -1.6, -1.3, -1.05, -0.85, -0.65, -0.45, -0.25, 0,
        0.25, 0.45, 0.65, 0.85, 1.05, 1.3, 1.6, 2.0, 2.6, 3.6,
    )),
}


def slope_encoding_scale(scale: int) -> int:
    """The scale of the slopes: `SLOPE_SCALE` times the tensor's, unless the weighted sum,
    about `scale * fine * (f(x) - f(b_1))` with `|f(x) - f(b_1)| <= 2`, would leave the
    truncation's range (|x| < 2^62): at 7 decimal digits or 24 binary ones and above, the
    slopes get the finest scale that keeps it within 2^61."""
    return max(1, min(scale * SLOPE_SCALE, (1 << 60) // scale))


@SHARED_OPS.register(aten.sigmoid.default, aten.tanh.default)
def approximate(func: Any, args: tuple, kwargs: dict) -> Any:
    """`torch.sigmoid(x)`, `torch.tanh(x)`, `nn.Sigmoid`, `nn.Tanh` (see the module text)."""
    x = args[0]
    curve = APPROXIMATIONS[func.overloadpacket]
    g = linear.group(func, args)
    if not g.dtype.is_floating_point:
        raise UnsupportedOpError(
            f"{op_name(func)} of an integer shared tensor; share a fixed-precision tensor "
            "(x.fix_precision().share(...))",
            op=op_name(func),
        )
    knots = torch.tensor(curve.knots, dtype=x.dtype).view(-1, *[1] * x.dim())
    shifted = torch.sub(x.unsqueeze(0), knots)  # x - b_i for every knot, stacked
    shape = list(shifted.shape)
    ramps = run_protocol("relu", [shifted.shares], g.crypto_provider, {"shape": shape}, shape)
    fine = slope_encoding_scale(g.encoder.scale)
    weights = torch.tensor([round(d * fine) for d in curve.slope_changes], dtype=torch.int64)
    weights = weights.view(-1, *[1] * x.dim())
    sums = [torch.mul(ramp, weights).sum(0) for ramp in ramps]
    return torch.add(g.result(protocols.truncate(g, sums, fine)), curve.left)


@SHARED_OPS.register(aten.sigmoid_backward.default)
def sigmoid_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    """`grad * out * (1 - out)`."""
    grad, out = args[0], args[1]
    return torch.mul(torch.mul(out, torch.rsub(out, 1)), grad)


@SHARED_OPS.register(aten.tanh_backward.default)
def tanh_backward(func: Any, args: tuple, kwargs: dict) -> Any:
    """`grad * (1 - out^2)`."""
    grad, out = args[0], args[1]
    return torch.mul(torch.rsub(torch.mul(out, out), 1), grad)
