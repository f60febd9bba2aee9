"""FixedPrecisionTensor: encoding round trips, every op against plain float, autograd."""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import zsyft as sy
from zsyft.mpc.encoding import FixedPointEncoder
from zsyft.tensors.fixed_precision import FixedPrecisionTensor

ENCODINGS = [(10, 3), (2, 16)]
IDS = ["base10-p3", "base2-p16"]


@pytest.fixture(scope="module", autouse=True)
def hook() -> sy.TorchHook:
    return sy.TorchHook(torch)  # adds fix_precision & co. (no worker is started)


def unit(base: int, precision: int) -> float:
    return 1.0 / base**precision


def fixed(x: torch.Tensor, base: int, precision: int) -> FixedPrecisionTensor:
    return x.fix_precision(base=base, precision_fractional=precision)


# -- encoding --------------------------------------------------------------------------------
@pytest.mark.parametrize(("base", "precision"), ENCODINGS, ids=IDS)
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4), (0, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip(base, precision, shape, dtype):
    x = (torch.randn(shape, dtype=torch.float64) * 100).to(dtype)
    fx = fixed(x, base, precision)
    assert isinstance(fx, FixedPrecisionTensor)
    assert fx.dtype == dtype and fx.shape == x.shape
    assert fx.encoded.dtype == torch.int64
    assert (fx.base, fx.precision_fractional) == (base, precision)
    back = fx.float_precision()
    assert type(back) is torch.Tensor and back.dtype == dtype
    tol = 0.5 * unit(base, precision) + 1e-5 * 100  # rounding, plus float32 resolution
    torch.testing.assert_close(back, x, atol=tol, rtol=0)
    assert torch.equal(fx.float_prec(), back)


def test_defaults_and_aliases_match_pysyft():
    fx = torch.tensor([0.1, -2.5]).fix_prec()
    assert (fx.base, fx.precision_fractional) == (10, 3)
    assert fx.encoded.tolist() == [100, -2500]


def test_integer_tensors_are_encoded_as_floats():
    fx = torch.tensor([1, -2, 3]).fix_precision()
    assert fx.dtype == torch.get_default_dtype()
    assert fx.encoded.tolist() == [1000, -2000, 3000]
    assert torch.equal(fx.float_precision(), torch.tensor([1.0, -2.0, 3.0]))


@pytest.mark.parametrize(
    "value", [1e16, float("inf"), float("nan")], ids=["too-large", "inf", "nan"]
)
def test_encoding_overflow_raises(value):
    with pytest.raises(sy.EncodingOverflowError, match="fixed-point"):
        torch.tensor([1.0, value]).fix_precision()


def test_arithmetic_overflow_raises_instead_of_wrapping():
    big = torch.tensor([3e9]).fix_precision()  # encoding 3e12: the product's 9e24 > 2^62
    with pytest.raises(sy.EncodingOverflowError, match="mul"):
        big * big
    near = torch.tensor([4e15]).fix_precision()  # 4e18: fits; the sum 8e18 does not
    with pytest.raises(sy.EncodingOverflowError, match="add"):
        near + near
    with pytest.raises(sy.EncodingOverflowError, match="sum"):
        torch.full((3,), 2e15).fix_precision().sum()
    with pytest.raises(sy.EncodingOverflowError, match="mm"):
        torch.full((2, 2), 3e9).fix_precision() @ torch.full((2, 2), 3e9).fix_precision()


def test_repr_is_pysyft_like():
    fx = torch.tensor([1.5, -2.0]).fix_precision()
    assert repr(fx) == "(Wrapper)>FixedPrecisionTensor>tensor([ 1500, -2000])"
    leaf = torch.tensor([1.5]).fix_precision().requires_grad_()
    assert str(leaf).startswith("(Wrapper)>AutogradTensor>FixedPrecisionTensor>")


# -- ops against plain float -----------------------------------------------------------------
def _set(t):
    t = t.clone()
    t[0] = 1.25
    return t


# name, fn(a, b, c) on 3x4 tensors, number of rescalings along the longest path
OPS = [
    ("add", lambda a, b, c: a + b, 0),
    ("sub", lambda a, b, c: a - b, 0),
    ("neg", lambda a, b, c: -a, 0),
    ("add_scalar", lambda a, b, c: a + 2.5, 0),
    ("radd_int", lambda a, b, c: 3 + a, 0),
    ("rsub_scalar", lambda a, b, c: 1.5 - a, 0),
    ("sub_alpha_int", lambda a, b, c: torch.sub(a, b, alpha=2), 0),
    ("add_alpha_float", lambda a, b, c: torch.add(a, b, alpha=0.5), 1),
    ("add_plain_tensor", lambda a, b, c: a + c, 0),
    ("plain_tensor_minus", lambda a, b, c: c - a, 0),
    ("add_broadcast", lambda a, b, c: a + b[0], 0),
    ("mul", lambda a, b, c: a * b, 1),
    ("mul_int", lambda a, b, c: a * 3, 0),
    ("mul_float", lambda a, b, c: a * 0.37, 1),
    ("mul_plain_tensor", lambda a, b, c: a * c, 1),
    ("mul_plain_int_tensor", lambda a, b, c: a * torch.arange(4), 0),
    ("div_int", lambda a, b, c: a / 3, 1),
    ("div_float", lambda a, b, c: a / 0.7, 1),
    ("div_negative_int", lambda a, b, c: a / -4, 1),
    ("pow2", lambda a, b, c: a**2, 1),
    ("pow3", lambda a, b, c: a**3, 4),
    ("square_loss", lambda a, b, c: ((a - b) ** 2).sum(), 12),
    ("matmul", lambda a, b, c: a @ b.t(), 1),
    ("mm", lambda a, b, c: torch.mm(a.t(), b), 1),
    ("bmm", lambda a, b, c: torch.bmm(a.unsqueeze(0), b.t().unsqueeze(0)), 1),
    ("addmm", lambda a, b, c: torch.addmm(c[:, :3], a, b.t()), 1),
    ("linear", lambda a, b, c: F.linear(a, b[:2], c[0, :2]), 1),
    ("matmul_plain", lambda a, b, c: a @ c.t(), 1),
    ("mv", lambda a, b, c: torch.mv(a, b[0]), 1),
    ("dot", lambda a, b, c: torch.dot(a[0], b[1]), 1),
    ("sum", lambda a, b, c: a.sum(), 0),
    ("sum_dim", lambda a, b, c: a.sum(dim=1), 0),
    ("sum_keepdim", lambda a, b, c: a.sum(0, keepdim=True), 0),
    ("mean", lambda a, b, c: a.mean(), 1),
    ("mean_dim", lambda a, b, c: a.mean(dim=0), 1),
    ("relu", lambda a, b, c: F.relu(a), 0),
    ("t", lambda a, b, c: a.t(), 0),
    ("transpose", lambda a, b, c: a.transpose(0, 1), 0),
    ("view", lambda a, b, c: a.view(2, 6), 0),
    ("reshape_t", lambda a, b, c: a.t().reshape(12), 0),
    ("permute", lambda a, b, c: a.unsqueeze(0).permute(2, 0, 1), 0),
    ("expand", lambda a, b, c: a[:1].expand(3, 4), 0),
    ("unsqueeze", lambda a, b, c: a.unsqueeze(1), 0),
    ("squeeze", lambda a, b, c: a[:1].squeeze(0), 0),
    ("select", lambda a, b, c: a[1], 0),
    ("slice", lambda a, b, c: a[:, 1:3], 0),
    ("index", lambda a, b, c: a[torch.tensor([2, 0])], 0),
    ("cat", lambda a, b, c: torch.cat([a, b], dim=1), 0),
    ("stack", lambda a, b, c: torch.stack([a, b]), 0),
    ("clone", lambda a, b, c: a.clone(), 0),
    ("detach", lambda a, b, c: a.detach(), 0),
    ("flip", lambda a, b, c: a.flip(0), 0),
    ("where", lambda a, b, c: torch.where(b > 0, a, b), 0),
    ("setitem", lambda a, b, c: _set(a), 0),
    ("zeros_like", lambda a, b, c: torch.zeros_like(a), 0),
    ("ones_like", lambda a, b, c: torch.ones_like(a), 0),
    ("add_in_place", lambda a, b, c: a.clone().add_(b), 0),
    ("mul_in_place", lambda a, b, c: a.clone().mul_(b), 1),
    ("to_float64", lambda a, b, c: a.to(torch.float64) + 1, 0),
]


def _inputs(base: int, precision: int):
    torch.manual_seed(0)
    a, b, c = torch.randn(3, 4) * 2, torch.randn(3, 4) * 2, torch.randn(3, 4) * 2
    fa, fb = fixed(a, base, precision), fixed(b, base, precision)
    # the reference computes on the values the encodings represent exactly (the public `c`
    # is encoded by the op itself)
    rc = fixed(c, base, precision).float_precision().double()
    return fa, fb, c, fa.float_precision().double(), fb.float_precision().double(), rc


@pytest.mark.parametrize(("base", "precision"), ENCODINGS, ids=IDS)
@pytest.mark.parametrize(("name", "fn", "rescales"), OPS, ids=[o[0] for o in OPS])
def test_op_matches_plain_float(base, precision, name, fn, rescales):
    fa, fb, c, ra, rb, rc = _inputs(base, precision)
    out = fn(fa, fb, c)
    expected = fn(ra, rb, rc)
    assert isinstance(out, FixedPrecisionTensor), type(out)
    assert out.shape == expected.shape
    if name != "to_float64":
        assert out.dtype == torch.float32
    # each rescaling rounds to within half a unit, times the magnitudes it is multiplied by
    magnitude = float(max(ra.abs().max(), rb.abs().max(), 1.0)) ** 2
    tol = (0.5 * rescales * magnitude + 1e-9) * unit(base, precision) + 1e-6
    got = out.float_precision().double()
    torch.testing.assert_close(got, expected, atol=tol, rtol=0)


@pytest.mark.parametrize(("base", "precision"), ENCODINGS, ids=IDS)
def test_ops_match_plain_float_on_the_original_values(base, precision):
    """Against the unencoded inputs the error also includes the inputs' rounding."""
    torch.manual_seed(1)
    a, b = torch.randn(5, 3), torch.randn(3, 2)
    fa, fb = fixed(a, base, precision), fixed(b, base, precision)
    out = (F.relu(fa @ fb) - 0.5).sum(dim=0).float_precision()
    expected = (F.relu(a @ b) - 0.5).sum(dim=0)
    # 5 rows x (3 products with two rounded factors + one rescaling) of half-units
    tol = 5 * (3 * 2 * 3.0 + 1) * 0.5 * unit(base, precision)
    torch.testing.assert_close(out, expected, atol=tol, rtol=0)


@pytest.mark.parametrize("op", ["gt", "lt", "ge", "le", "eq", "ne"])
def test_comparisons_give_fixed_precision_zeros_and_ones_as_in_pysyft(op):
    fa, fb, _, ra, rb, _ = _inputs(10, 3)
    fn = getattr(torch, op)
    assert isinstance(fn(fa, fb), FixedPrecisionTensor)
    assert torch.equal(fn(fa, fb).float_precision(), fn(ra, rb).float())
    assert torch.equal(fn(fa, 0.5).float_precision(), fn(ra, 0.5).float())
    assert torch.equal(torch.where(fn(fa, fb), fa, fb).float_precision(),
                       torch.where(fn(ra, rb), ra, rb).float())
    assert torch.equal(fa.masked_fill(fn(fa, fb), 0).float_precision(),
                       ra.masked_fill(fn(ra, rb), 0).float())


FLOAT_CASES = [
    ("sigmoid", lambda a, b: torch.sigmoid(a)),
    ("tanh", lambda a, b: torch.tanh(a)),
    ("exp", lambda a, b: a.exp()),
    ("softmax", lambda a, b: F.softmax(a, dim=1)),
    ("log_softmax", lambda a, b: F.log_softmax(a, dim=1)),
    ("cross_entropy", lambda a, b: F.cross_entropy(a, torch.tensor([0, 3, 1]))),
    ("max", lambda a, b: a.max()),
    ("max_dim", lambda a, b: a.max(dim=1)[0]),
    ("argmax", lambda a, b: a.argmax(dim=1)),
    ("abs", lambda a, b: a.abs()),
    ("clamp", lambda a, b: a.clamp(-1, 1)),
    ("maximum", lambda a, b: torch.maximum(a, b)),
    ("div_fixed", lambda a, b: a / (b.abs() + 1)),
    ("mse_loss", lambda a, b: F.mse_loss(a, b)),
    ("std", lambda a, b: a.std()),
    ("conv1d", lambda a, b: F.conv1d(a.unsqueeze(1), b[:2, :2].unsqueeze(1))),
    ("max_pool", lambda a, b: F.max_pool1d(a.unsqueeze(0), 2)),
]


@pytest.mark.parametrize(("name", "fn"), FLOAT_CASES, ids=[c[0] for c in FLOAT_CASES])
def test_non_linear_ops_run_on_the_decoded_values(name, fn):
    fa, fb, _, ra, rb, _ = _inputs(10, 3)
    out = fn(fa, fb)
    expected = fn(ra, rb)
    if expected.is_floating_point():
        assert isinstance(out, FixedPrecisionTensor)
        out = out.float_precision().double()
        torch.testing.assert_close(out, expected, atol=0.5e-3 + 1e-9, rtol=0)  # one rounding
    else:  # indices stay plain
        assert torch.equal(out, expected)


def test_autograd_through_non_linear_ops_of_local_fixed_precision_tensors():
    fa, _, _, ra, _, _ = _inputs(10, 3)
    weight = torch.tensor([[0.5], [-0.25], [0.125], [0.75]])
    fixed_weight = weight.fix_precision().requires_grad_(True)
    plain_weight = weight.clone().requires_grad_(True)
    F.mse_loss(torch.sigmoid(fa @ fixed_weight), torch.ones(3, 1).fix_precision()).backward()
    F.mse_loss(torch.sigmoid(ra.float() @ plain_weight), torch.ones(3, 1)).backward()
    torch.testing.assert_close(fixed_weight.grad.float_precision(), plain_weight.grad,
                               atol=5e-3, rtol=0)


def test_scalars_and_bool():
    x = torch.tensor([2.5]).fix_precision()
    assert x.sum().item() == 2.5
    assert bool(x)
    assert torch.equal(x, torch.tensor([2.5]).fix_precision())


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(1 << 30), 1 << 30),
    st.integers(-(1 << 30), 1 << 30),
    st.sampled_from(ENCODINGS),
)
def test_products_round_exactly(x, y, encoding):
    """X * Y / scale is rounded to the nearest integer (ties up), computed exactly."""
    encoder = FixedPointEncoder(*encoding)
    fx = FixedPrecisionTensor(torch.tensor([x]), encoder)
    fy = FixedPrecisionTensor(torch.tensor([y]), encoder)
    exact = Fraction(x * y, encoder.scale)
    want = (exact + Fraction(1, 2)).__floor__()
    assert (fx * fy).encoded.item() == want
    mean = FixedPrecisionTensor(torch.tensor([x, y, 1]), encoder).mean()
    assert mean.encoded.item() == (Fraction(x + y + 1, 3) + Fraction(1, 2)).__floor__()


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fn", "op"),
    [
        (torch.erf, "erf"),
        (lambda a: a.lgamma_(), "lgamma_"),
        (lambda a: a.div_(a), "div"),
        (lambda a: a**0.5, "pow"),
        (lambda a: a.long(), "_to_copy"),
    ],
    ids=["erf", "lgamma_in_place", "div_fixed_in_place", "pow_fraction", "long"],
)
def test_unsupported_ops_name_the_op(fn, op):
    x = torch.tensor([1.0, 2.0]).fix_precision()
    with pytest.raises(sy.UnsupportedOpError, match=op) as info:
        fn(x)
    assert info.value.op == op
    assert "fixed-precision" in str(info.value) or "fixed" in str(info.value)


@pytest.mark.filterwarnings("ignore:with base=10, precision_fractional=12")
def test_methods_that_do_not_apply():
    x = torch.tensor([1.0]).fix_precision()
    with pytest.raises(TypeError, match="already"):
        x.fix_precision()
    with pytest.raises(TypeError, match="fix_precision"):
        torch.tensor([1.0]).float_precision()
    with pytest.raises(sy.EncodingOverflowError):
        torch.tensor([1.0]).fix_precision(base=10, precision_fractional=12) * 1e7


# -- autograd --------------------------------------------------------------------------------
@pytest.mark.parametrize(("base", "precision"), ENCODINGS, ids=IDS)
def test_linear_layer_and_square_loss_gradients_match_float(base, precision):
    torch.manual_seed(2)
    x, target = torch.randn(6, 3), torch.randn(6, 2)
    layer = nn.Linear(3, 2)
    loss = ((layer(x) - target) ** 2).sum()
    loss.backward()

    fixed_layer = nn.Linear(3, 2)
    fixed_layer.load_state_dict(layer.state_dict())
    fixed_layer.fix_precision(base=base, precision_fractional=precision)
    assert isinstance(fixed_layer.weight, FixedPrecisionTensor)
    assert fixed_layer.weight.requires_grad and fixed_layer.weight.is_leaf
    floss = ((fixed_layer(fixed(x, base, precision)) - fixed(target, base, precision)) ** 2).sum()
    floss.backward()
    grad = fixed_layer.weight.grad
    assert isinstance(grad, FixedPrecisionTensor)
    # every value is within a few dozen units of the float computation at these magnitudes
    tol = 100 * unit(base, precision) * 6
    torch.testing.assert_close(floss.float_precision(), loss.detach(), atol=tol, rtol=0)
    torch.testing.assert_close(grad.float_precision(), layer.weight.grad, atol=tol, rtol=0)
    torch.testing.assert_close(fixed_layer.bias.grad.float_precision(), layer.bias.grad,
                               atol=tol, rtol=0)

    fixed_layer.float_precision()
    assert type(fixed_layer.weight.data) is torch.Tensor
    torch.testing.assert_close(fixed_layer.weight.grad, layer.weight.grad, atol=tol, rtol=0)


def test_indexing_mean_and_accumulation_backward():
    x = torch.randn(3, 4)
    fx = x.fix_precision().requires_grad_()
    (fx[1].sum() + fx[:, 1:3].sum() + fx[torch.tensor([0, 2])].sum() + fx.mean()).backward()
    ref = x.clone().requires_grad_()
    (ref[1].sum() + ref[:, 1:3].sum() + ref[torch.tensor([0, 2])].sum() + ref.mean()).backward()
    torch.testing.assert_close(fx.grad.float_precision(), ref.grad, atol=1e-3, rtol=0)
    (fx * 3).sum().backward()  # accumulates into the existing gradient
    torch.testing.assert_close(fx.grad.float_precision(), ref.grad + 3, atol=1e-3, rtol=0)


def test_sgd_step_on_fixed_precision_parameters():
    torch.manual_seed(3)
    model = nn.Linear(2, 1)
    reference = nn.Linear(2, 1)
    reference.load_state_dict(model.state_dict())
    model.fix_precision()
    opt = torch.optim.SGD(model.parameters(), lr=0.1).fix_precision()
    assert isinstance(opt, torch.optim.SGD)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    target = torch.tensor([[0], [0], [1], [1.0]])
    fdata, ftarget = data.fix_precision(), target.fix_precision()
    for _ in range(5):
        opt.zero_grad()
        ref_opt.zero_grad()
        ((model(fdata) - ftarget) ** 2).sum().backward()
        ((reference(data) - target) ** 2).sum().backward()
        opt.step()
        ref_opt.step()
    model.float_precision()
    torch.testing.assert_close(model.weight.data, reference.weight.data, atol=0.02, rtol=0)


@pytest.mark.parametrize("factor", [0.0004, 0.0015, -0.0007, 1 / 3])
def test_public_fractions_keep_their_significant_digits(factor):
    x = torch.tensor([1000.0, -250.0, 3.0]).fix_precision()
    expected = torch.tensor([1000.0, -250.0, 3.0], dtype=torch.float64) * factor
    out = (x * factor).float_precision().double()
    torch.testing.assert_close(out, expected, atol=0.0011, rtol=2.0**-15)  # not 0.0004 -> 0


def test_in_place_forms_of_supported_ops_write_into_the_tensor():
    x = torch.tensor([-1.5, 0.25, 2.0]).fix_precision()
    assert x.sigmoid_() is x and x.abs_() is x
    expected = torch.tensor([-1.5, 0.25, 2.0]).sigmoid().abs()
    torch.testing.assert_close(x.float_precision(), expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("fn", [lambda x: x.share_memory_(), torch.from_dlpack],
                         ids=["share_memory_", "from_dlpack"])
def test_handing_out_memory_says_to_decode_first(fn):
    """The wrapper has no memory of its own: torch would hand out a null pointer."""
    with pytest.raises(TypeError, match="float_precision"):
        fn(torch.tensor([1.0]).fix_precision())


def test_a_precision_that_leaves_products_little_range_warns_at_the_users_line():
    with pytest.warns(UserWarning, match=r"\|x \* y\| < 4\.61") as caught:
        torch.tensor([1.5]).fix_precision(precision_fractional=9)
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.tensor([1.5]).fix_precision()  # products up to ~4.6e12: no warning
        torch.tensor([1.5]).fix_precision(base=2, precision_fractional=16)
