"""Convolutions as Beaver-triple kinds: exact int64 maps, their gradients, the wire form."""

from __future__ import annotations

import itertools

import pytest
import torch

from zsyft.mpc import FixedPointEncoder, Prg, reconstruct, share
from zsyft.mpc.beaver import run_local_beaver
from zsyft.mpc.convolution import Convolution
from zsyft.mpc.fixed_product import run_local_fixed_product
from zsyft.mpc.provider import bilinear_output_shape

aten = torch.ops.aten

CONFIGS = [
    # dims, transposed, stride, padding, dilation, groups
    *itertools.product([2], [False, True], [1, 2], [0, 1], [1, 2], [1, 2]),
    (1, False, 2, 1, 1, 1), (1, True, 2, 0, 1, 2), (3, False, 1, 1, 1, 1), (3, True, 2, 1, 1, 1),
]  # fmt: skip


def _case(dims: int, transposed: bool, stride: int, padding: int, dilation: int, groups: int):
    """Small-integer float64 operands (exact in float), the torch result and gradients, and
    the `Convolution` describing the same op."""
    gen = torch.Generator().manual_seed(dims * 100 + stride * 10 + groups)
    spatial, kernel = (7, 6, 5)[:dims], (3, 2, 3)[:dims]
    channels_in, channels_out = 4, 6
    weight_shape = ((channels_in, channels_out // groups) if transposed
                    else (channels_out, channels_in // groups))
    x = torch.randint(-4, 4, (2, channels_in, *spatial), generator=gen).double()
    w = torch.randint(-4, 4, (*weight_shape, *kernel), generator=gen).double()
    output_padding = [1 if transposed and stride > 1 else 0] * dims
    spec = Convolution((stride,) * dims, (padding,) * dims, (dilation,) * dims, transposed,
                       tuple(output_padding), groups)
    x.requires_grad_()
    w.requires_grad_()
    y = aten.convolution(x, w, None, [stride] * dims, [padding] * dims, [dilation] * dims,
                         transposed, output_padding, groups)
    dy = torch.randint(-4, 4, y.shape, generator=gen).double()
    y.backward(dy)
    return spec, x, w, y, dy


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c)))
def test_forward_and_both_gradients_match_torch_exactly(config: tuple) -> None:
    spec, x, w, y, dy = _case(*config)
    as_int = lambda t: t.detach().long()  # noqa: E731
    assert torch.equal(spec(as_int(x), as_int(w)), as_int(y))
    input_grad = spec.gradient("input_grad", x.shape)
    weight_grad = spec.gradient("weight_grad", w.shape)
    assert torch.equal(input_grad(as_int(dy), as_int(w)), as_int(x.grad))
    assert torch.equal(weight_grad(as_int(dy), as_int(x)), as_int(w.grad))
    assert bilinear_output_shape(spec, x.shape, w.shape) == y.shape
    assert bilinear_output_shape(weight_grad, dy.shape, x.shape) == w.shape
    assert bilinear_output_shape(input_grad, dy.shape, w.shape) == x.shape


def test_int64_convolution_is_bilinear_modulo_2_64() -> None:
    """Beaver's identity needs bilinearity in Z/2^64, with wraparound."""
    spec = Convolution((2, 2), (1, 1), (1, 1), False, (0, 0), 1)
    full = lambda *s: torch.randint(-(2**63), 2**63 - 1, s, dtype=torch.int64)  # noqa: E731
    x1, x2, w1, w2 = full(2, 3, 7, 7), full(2, 3, 7, 7), full(4, 3, 3, 3), full(4, 3, 3, 3)
    assert torch.equal(spec(x1 + x2, w1), spec(x1, w1) + spec(x2, w1))
    assert torch.equal(spec(x1, w1 + w2), spec(x1, w1) + spec(x1, w2))


def test_beaver_and_fixed_product_with_a_convolution_triple(prgs: list[Prg]) -> None:
    enc = FixedPointEncoder()
    gen = torch.Generator().manual_seed(3)
    spec = Convolution((1, 1), (1, 1), (1, 1), False, (0, 0), 1)
    xf = torch.randn(2, 3, 5, 5, generator=gen, dtype=torch.float64)
    wf = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    x, w = enc.encode(xf), enc.encode(wf)
    n = len(prgs)
    exact = reconstruct(run_local_beaver(spec, share(x, n), share(w, n), prgs, b"beaver"))
    assert torch.equal(exact, spec(x, w))
    z = reconstruct(run_local_fixed_product(spec, share(x, n), share(w, n), prgs, b"fixed",
                                            enc.scale))
    assert (z - spec(x, w) // enc.scale).abs().max() <= 2


def test_wire_form_round_trips_and_bad_parameters_are_refused() -> None:
    spec = Convolution((2,), (1,), (1,), True, (1,), 2).gradient("weight_grad", (4, 3, 3))
    assert Convolution.from_wire(spec.to_wire()) == spec
    bad = [
        {**spec.to_wire(), "stride": [0]},
        {**spec.to_wire(), "padding": [1, 1]},
        {**spec.to_wire(), "groups": True},
        {**spec.to_wire(), "role": "exec"},
        {**spec.to_wire(), "shape": []},
        {**spec.to_wire(), "dilation": 2},
        {k: v for k, v in spec.to_wire().items() if k != "groups"},
        "conv",
    ]
    for params in bad:
        with pytest.raises(ValueError, match="convolution"):
            Convolution.from_wire(params)
    with pytest.raises(ValueError, match="dimensions"):
        Convolution((1, 1), (0, 0), (1, 1), False, (0, 0), 1).output_shape((3, 5, 5), (2, 3, 3))
    with pytest.raises(ValueError, match="convolution of shapes"):
        Convolution((1, 1), (0, 0), (1, 1), False, (0, 0), 1).output_shape((1, 3, 2, 2),
                                                                            (2, 3, 3, 3))
