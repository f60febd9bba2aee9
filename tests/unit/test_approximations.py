"""The piecewise-linear sigmoid and tanh that shared tensors compute, on plain values."""

from __future__ import annotations

import pytest
import torch

from zsyft.tensors.ops.shared_approximations import APPROXIMATIONS, PiecewiseLinear

aten = torch.ops.aten


@pytest.mark.parametrize(("op", "function", "bound"), [
    (aten.sigmoid, torch.sigmoid, 0.0035),
    (aten.tanh, torch.tanh, 0.0042),
])
def test_the_stated_error_holds_over_the_whole_line(op, function, bound):
    x = torch.linspace(-60, 60, 240_001, dtype=torch.float64)
    error = (APPROXIMATIONS[op](x) - function(x)).abs().max().item()
    assert error <= bound


def test_interpolation_goes_through_the_knots_and_is_flat_beyond():
    curve = PiecewiseLinear.interpolate(torch.sigmoid, (-2.0, 0.0, 2.0))
    knots = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(curve(knots), torch.sigmoid(knots))
    far = torch.tensor([-100.0, -2.0, 2.0, 100.0], dtype=torch.float64)
    values = curve(far)
    assert values[0].item() == pytest.approx(values[1].item(), abs=1e-12)
    assert values[2].item() == pytest.approx(values[3].item(), abs=1e-12)
    midpoint = curve(torch.tensor([1.0], dtype=torch.float64))
    assert midpoint.item() == pytest.approx((0.5 + torch.sigmoid(torch.tensor(2.0)).item()) / 2)
