"""Secret sharing across real worker processes: round trips, privacy, linear ops, autograd."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zsyft as sy
from tests.integration.conftest import assert_nothing_left, private_worker, settle
from zsyft.mpc.sharing import reconstruct
from zsyft.remote.handle import WorkerHandle
from zsyft.tensors.fixed_precision import FixedPrecisionTensor


@pytest.fixture(scope="module")
def charlie(hook):
    yield from private_worker(hook, "charlie")


@pytest.fixture(scope="module")
def everyone(bob, alice, charlie, james):
    workers = [bob, alice, charlie, james]
    try:  # errors an earlier test module left pending at the local node are not ours
        sy.sync()
    except sy.ZsyftError:
        pass
    return workers


@pytest.fixture(autouse=True)
def nothing_left_behind(everyone):
    """Every test starts and ends with empty stores: shares are deleted when dropped."""
    settle(*everyone)
    assert all(w._objects == {} for w in everyone), "a previous test left objects"
    yield
    assert_nothing_left(*everyone)


@pytest.fixture(params=[2, 3], ids=["2-parties", "3-parties"])
def parties(request, bob, alice, charlie):
    return [bob, alice, charlie][: request.param]


def share(x, parties, james, **kwargs):
    return x.share(*parties, crypto_provider=james, **kwargs)


# -- round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4), (0, 2)])
def test_fixed_precision_round_trip(parties, james, shape):
    x = torch.randn(shape) * 50
    shared = share(x.fix_precision(), parties, james)
    assert isinstance(shared, sy.SharedTensor)
    assert shared.shape == x.shape and shared.dtype == torch.float32
    assert shared.locations == parties and shared.crypto_provider is james
    back = shared.get()
    assert isinstance(back, FixedPrecisionTensor)
    assert torch.equal(back.encoded, x.fix_precision().encoded)
    torch.testing.assert_close(back.float_precision(), x, atol=0.5e-3 + 1e-5, rtol=0)


@pytest.mark.parametrize(
    ("x", "base", "precision"),
    [
        (torch.randn(4, 3, dtype=torch.float64) * 1e4, 10, 3),
        (torch.randn(7) * 100, 2, 16),
        (torch.tensor([-1e8, 1e8, 0.5]), 10, 6),
    ],
    ids=["float64", "base2", "large-values"],
)
def test_round_trip_other_encodings(bob, alice, james, x, base, precision):
    fx = x.fix_precision(base=base, precision_fractional=precision)
    back = fx.share(bob, alice, crypto_provider=james).get()
    assert back.dtype == x.dtype and back.encoder == fx.encoder
    assert torch.equal(back.encoded, fx.encoded)


def test_plain_tensors_come_back_as_plain_tensors(bob, alice, james):
    x = torch.tensor([[0.25, -1.5], [3.0, 0.001]])
    back = x.share(bob, alice, crypto_provider=james).get()
    assert type(back) is torch.Tensor and back.dtype == torch.float32
    torch.testing.assert_close(back, x, atol=0.5e-3, rtol=0)
    ints = torch.tensor([25, -7, 1 << 40])
    shared = ints.share(bob, alice)
    assert shared.dtype == torch.int64
    assert torch.equal(shared.get(), ints)
    small = torch.tensor([1, 2], dtype=torch.int32)
    assert small.share(bob, alice).get().dtype == torch.int32


def test_get_deletes_the_shares(bob, alice, james):
    shared = torch.ones(3).fix_precision().share(bob, alice, crypto_provider=james)
    assert len(bob._objects) == 1 and len(alice._objects) == 1
    shared.get()
    assert bob._objects == {} and alice._objects == {}
    with pytest.raises(sy.PointerUsageError, match="retrieved"):
        shared + 1


# -- privacy ---------------------------------------------------------------------------------
def test_each_party_holds_a_random_looking_int64_share(parties, james):
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    encoded = x.fix_precision().encoded
    shared = share(x.fix_precision(), parties, james)
    held = []
    for worker, pointer in zip(parties, shared.shares, strict=True):
        objects = worker._objects
        assert list(objects) == [pointer.id_at_location]
        piece = objects[pointer.id_at_location]
        assert piece.dtype == torch.int64 and piece.shape == x.shape
        assert not torch.equal(piece, encoded)
        assert (piece == encoded).sum() == 0
        held.append(piece)
    assert torch.equal(reconstruct(held), encoded)  # only all shares together give the value


def test_privacy_canary(parties, james):
    """A share of a constant never shows the constant (probability n / 2^64 per element)."""
    canary = torch.full((20_000,), 1234.5)
    encoded = 1234500
    shared = share(canary.fix_precision(), parties, james)
    for worker, pointer in zip(parties, shared.shares, strict=True):
        piece = worker._objects[pointer.id_at_location]
        assert int((piece == encoded).sum()) == 0
        # a uniform share has about as many negative as positive words
        assert 0.45 < float((piece < 0).double().mean()) < 0.55


def test_shares_are_fresh_each_time(bob, alice):
    x = torch.ones(64).fix_precision()
    a, b = x.share(bob, alice), x.share(bob, alice)
    objects = bob._objects
    assert not torch.equal(objects[a.shares[0].id_at_location], objects[b.shares[0].id_at_location])


# -- linear ops ------------------------------------------------------------------------------
def _setitem(x, y):
    x = x.clone()
    x[1] = y[0]
    return x


LINEAR = [
    ("pad", lambda x, y: F.pad(x, (1, 2, 0, 1), value=-2.5)),
    ("cumsum", lambda x, y: x.cumsum(dim=1)),
    ("pow_zero", lambda x, y: x**0),
    ("add", lambda x, y: x + y),
    ("sub", lambda x, y: x - y),
    ("neg", lambda x, y: -x),
    ("add_alpha", lambda x, y: torch.add(x, y, alpha=3)),
    ("add_scalar", lambda x, y: x + 2.5),
    ("scalar_minus", lambda x, y: 1.25 - x),
    ("add_plain", lambda x, y: x + torch.tensor([1.0, 2.0, -3.0, 0.5])),
    ("broadcast_plain", lambda x, y: x[0] + torch.ones(2, 3, 4)),
    ("plain_minus", lambda x, y: torch.ones(3, 4) - x),
    ("add_fixed", lambda x, y: x + torch.full((3, 4), 0.75).fix_precision()),
    ("fixed_minus", lambda x, y: torch.full((4,), 0.5).fix_precision() - x),
    ("mul_int", lambda x, y: x * 3),
    ("mul_integral_float", lambda x, y: 2.0 * x),
    ("mul_int_tensor", lambda x, y: x * torch.tensor([1, -2, 3, 0])),
    ("sum", lambda x, y: x.sum()),
    ("sum_dim", lambda x, y: (x - y).sum(dim=1)),
    ("sum_keepdim", lambda x, y: x.sum(0, keepdim=True)),
    ("view", lambda x, y: x.view(2, 6)),
    ("t_reshape", lambda x, y: x.t().reshape(12)),
    ("transpose", lambda x, y: x.transpose(0, 1) + y.t()),
    ("permute", lambda x, y: x.unsqueeze(0).permute(2, 0, 1)),
    ("unsqueeze_squeeze", lambda x, y: x.unsqueeze(1).squeeze(1)),
    ("in_place_views", lambda x, y: x.clone().t_().unsqueeze_(0).squeeze_(0).transpose_(0, 1)),
    ("select", lambda x, y: x[1]),
    ("slice", lambda x, y: x[:, 1:3]),
    ("index", lambda x, y: x[torch.tensor([2, 0])]),
    ("expand", lambda x, y: x[:1].expand(3, 4) + y),
    ("cat", lambda x, y: torch.cat([x, y], dim=1)),
    ("stack", lambda x, y: torch.stack([x, y])),
    ("clone_detach", lambda x, y: x.clone().detach()),
    ("zeros_like", lambda x, y: torch.zeros_like(x)),
    ("ones_like", lambda x, y: torch.ones_like(x) + x),
    ("in_place", lambda x, y: x.clone().add_(y).sub_(1.5).mul_(2)),
    ("setitem", _setitem),
]


@pytest.mark.parametrize(("name", "fn"), LINEAR, ids=[c[0] for c in LINEAR])
def test_linear_op_matches_fixed_precision_exactly(bob, alice, james, name, fn):
    """A linear op on shares gives exactly the encoding the local fixed-point op gives."""
    torch.manual_seed(0)
    fx, fy = (torch.randn(3, 4) * 10).fix_precision(), (torch.randn(3, 4) * 10).fix_precision()
    expected = fn(fx, fy)
    xs = fx.share(bob, alice, crypto_provider=james)
    ys = fy.share(bob, alice, crypto_provider=james)
    result = fn(xs, ys)
    assert isinstance(result, sy.SharedTensor)
    assert result.shape == expected.shape and result.dtype == expected.dtype
    assert result.crypto_provider is james
    got = result.get()
    assert isinstance(got, FixedPrecisionTensor)
    assert torch.equal(got.encoded, expected.encoded)


def test_three_party_linear_ops(bob, alice, charlie, james):
    x = torch.tensor([[1.5, -2.0], [0.25, 4.0]])
    xs = x.fix_precision().share(bob, alice, charlie, crypto_provider=james)
    out = ((xs - 1) * 4 + xs.t()).sum(dim=0) + torch.tensor([0.5, 0.5])
    expected = ((x - 1) * 4 + x.t()).sum(dim=0) + 0.5
    torch.testing.assert_close(out.get().float_precision(), expected)


def test_integer_sharing_pysyft_part_9(bob, alice):
    x, y = torch.tensor([25]).share(bob, alice), torch.tensor([5]).share(bob, alice)
    assert torch.equal((x + y).get(), torch.tensor([30]))
    x, y = torch.tensor([25]).share(bob, alice), torch.tensor([5]).share(bob, alice)
    assert torch.equal((x - y * 2).sum().get(), torch.tensor(15))
    with pytest.raises(sy.UnsupportedOpError, match="non-integer"):
        torch.tensor([1]).share(bob, alice) + 0.5


def test_linear_ops_never_bring_data_to_the_client(bob, alice, james, monkeypatch):
    xs = torch.randn(3, 4).fix_precision().share(bob, alice, crypto_provider=james)
    ys = torch.randn(3, 4).fix_precision().share(bob, alice, crypto_provider=james)
    fetched = []
    monkeypatch.setattr(WorkerHandle, "fetch", lambda self, *a, **k: fetched.append(a))
    out = ((xs + ys) * 2 - 1.5).t().sum(dim=0)
    sy.sync()
    monkeypatch.undo()
    assert fetched == [] and isinstance(out, sy.SharedTensor)


# -- autograd --------------------------------------------------------------------------------
def test_sum_of_sum_backward_gives_shared_gradients(parties, james):
    x = share(torch.tensor([1.0, 2.0, 3.0]).fix_precision(), parties, james, requires_grad=True)
    y = share(torch.tensor([4.0, 5.0, 6.0]).fix_precision(), parties, james, requires_grad=True)
    assert x.requires_grad and x.is_leaf
    (x + y).sum().backward()
    assert isinstance(x.grad, sy.SharedTensor) and x.grad.locations == parties
    assert torch.equal(x.grad.get().float_precision(), torch.ones(3))
    assert torch.equal(y.grad.get().float_precision(), torch.ones(3))


def test_linear_backward_through_views_and_accumulation(bob, alice, james):
    base = torch.randn(3, 4)
    x = base.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    ref = base.clone().requires_grad_()
    for value in (x, ref):
        loss = (value[1] * 2).sum() - value[:, 1:3].sum() + value.t()[0].sum()
        (loss + torch.cat([value, value]).sum() + value[torch.tensor([0, 2])].sum()).backward()
        (value * 3).sum().backward()  # accumulates
    grad = x.grad.get().float_precision()
    torch.testing.assert_close(grad, ref.grad)


def test_leaf_get_brings_its_gradient(bob, alice, james):
    x = torch.tensor([1.0, -1.0]).fix_precision().share(
        bob, alice, crypto_provider=james, requires_grad=True
    )
    (x * 5).sum().backward()
    back = x.get()
    assert isinstance(back, FixedPrecisionTensor) and back.requires_grad and back.is_leaf
    assert torch.equal(back.grad.float_precision(), torch.tensor([5.0, 5.0]))
    plain = back.float_precision()
    assert plain.requires_grad and torch.equal(plain.grad, torch.tensor([5.0, 5.0]))


def test_relu_gradient_is_exact_at_zero_and_the_kept_mask_follows_the_values(bob, alice, james):
    """ReLU's backward (threshold_backward) is 0 where the input is exactly 0, as in torch,
    both from the mask the forward pass kept and from the comparison protocol."""
    values = torch.tensor([-1.0, 0.0, 0.5, 2.0, -0.001, 0.001, 0.0])
    weights = torch.arange(1.0, 8.0)
    plain = values.clone().requires_grad_()
    (F.relu(plain) * weights).sum().backward()
    x = values.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    w = weights.fix_precision().share(bob, alice, crypto_provider=james)
    out = F.relu(x)
    assert out.positive_mask is not None  # kept for the backward pass
    (out * w).sum().backward()
    torch.testing.assert_close(x.grad.get().float_precision(), plain.grad, atol=2e-3, rtol=0)
    grad = w.clone()
    direct = torch.ops.aten.threshold_backward(grad, x, 0)  # no mask: compares again
    torch.testing.assert_close(direct.get().float_precision(), plain.grad, atol=2e-3, rtol=0)
    with torch.no_grad():
        inference = F.relu(x)
        assert inference.positive_mask is None  # nothing kept when no backward will come
        out.add_(1)
    assert out.positive_mask is None  # changed in place: the mask no longer describes it


# -- what needs the protocols, or would reveal the value ------------------------------------
WITH_PROTOCOLS = [
    ("mul", lambda x, y: x * y),
    ("mm", lambda x, y: x @ y.t()),
    ("addmm", lambda x, y: F.linear(x, y, torch.ones(3))),
    ("vector_matrix", lambda x, y: x[0] @ y.t()),
    ("matrix_vector", lambda x, y: x @ y[1]),
    ("dot", lambda x, y: torch.dot(x[0], y[2])),
    ("addmv", lambda x, y: torch.addmv(x[:, 0], y, x[1])),
    ("linear_one_sample", lambda x, y: F.linear(x[2], y, torch.ones(3))),
    ("mul_fraction", lambda x, y: x * 0.1),
    ("div", lambda x, y: x / 2),
    ("mean", lambda x, y: x.mean()),
    ("mean_dim", lambda x, y: x.mean(dim=1)),
    ("pow", lambda x, y: x**2),
    ("relu", lambda x, y: F.relu(x)),
    ("add_alpha", lambda x, y: x.clone().add_(y, alpha=-0.1)),
    ("gt", lambda x, y: (x > y) * 1.0),
    ("lt_public", lambda x, y: (x < 0.25) * 1.0),
    ("ge_mask", lambda x, y: x * (x >= y)),
    ("mse_loss", lambda x, y: F.mse_loss(x, y)),
    ("mse_loss_sum", lambda x, y: F.mse_loss(x, y, reduction="sum")),
    ("mse_loss_none", lambda x, y: nn.MSELoss(reduction="none")(x, y)),
    ("relu_inplace", lambda x, y: F.relu(x * 1, inplace=True)),
    ("abs", lambda x, y: x.abs()),
    ("sign", lambda x, y: torch.sign(x - y)),
    ("l1_loss", lambda x, y: F.l1_loss(x, y)),
    ("sigmoid", lambda x, y: torch.sigmoid(x * 3)),
    ("tanh", lambda x, y: torch.tanh(x * 2)),
    ("clamp", lambda x, y: x.clamp(-0.5, 0.7)),
    ("clamp_min", lambda x, y: torch.clamp(x, min=0.2)),
    ("clamp_max_", lambda x, y: (x * 1).clamp_max_(0.1)),
    ("hardtanh", lambda x, y: F.hardtanh(x * 2)),
    ("relu6_inplace", lambda x, y: F.relu6(x * 4, inplace=True)),
    ("leaky_relu", lambda x, y: F.leaky_relu(x)),
    ("leaky_relu_inplace", lambda x, y: F.leaky_relu(x * 1, 0.2, inplace=True)),
    ("ne", lambda x, y: (x.clamp(0, 1) != y.clamp(0, 1)) * 1.0),
    ("where_shared_mask", lambda x, y: torch.where(x > y, x, y * 2)),
    ("masked_fill_shared_mask", lambda x, y: x.masked_fill(x > 0, 0.5)),
    ("masked_fill_public_mask", lambda x, y: x.masked_fill(torch.tensor([1, 0, 1, 0]).bool(), -1)),
    ("masked_fill_inplace", lambda x, y: (x * 1).masked_fill_(x < y, 2.0)),
    ("where_public_mask_and_scalar", lambda x, y: torch.where(_MASK, x, 0.0)),
    ("where_public_mask_and_public", lambda x, y: torch.where(_MASK, torch.ones(3, 4), y)),
    ("pow_public_tensor_exponent", lambda x, y: x ** torch.tensor(3)),
    ("abs_inplace", lambda x, y: (x * 1).abs_()),
    ("sigmoid_inplace", lambda x, y: (x * 1).sigmoid_()),
    ("pow_inplace", lambda x, y: (x * 1).pow_(2)),
    ("addmm_beta_alpha", lambda x, y: torch.addmm(y[:, :3], x, y.t(), beta=0.5, alpha=-2)),
    ("baddbmm", lambda x, y: torch.baddbmm(y[:, :3].reshape(1, 3, 3), x.view(1, 3, 4),
                                           y.t().reshape(1, 4, 3))),
    ("addbmm", lambda x, y: torch.addbmm(y[:1, :1], x.view(3, 1, 4), y.view(3, 4, 1))),
]
_MASK = torch.tensor([[True, False, True, False]]).expand(3, 4)


@pytest.mark.parametrize(("op", "fn"), WITH_PROTOCOLS, ids=[c[0] for c in WITH_PROTOCOLS])
def test_ops_run_with_the_crypto_provider(bob, alice, james, op, fn):
    """Products, divisions and ReLU run as protocols between the parties and the provider;
    within a few units of the last place of the plaintext result."""
    torch.manual_seed(3)
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    expected = fn(x, y)
    xs = x.fix_precision().share(bob, alice, crypto_provider=james)
    ys = y.fix_precision().share(bob, alice, crypto_provider=james)
    result = fn(xs, ys).get().float_precision()
    torch.testing.assert_close(result, expected, atol=0.02, rtol=0)


def test_division_by_a_public_integer_is_exact_to_the_last_place(bob, alice, james):
    """`x / 16` and a mean of 16 values divide by 16 itself, not by an encoded 0.062."""
    x = torch.linspace(-1000, 1000, 16)
    xs = x.fix_precision().share(bob, alice, crypto_provider=james)
    for got, want in [((xs / 16), x / 16), ((xs / -7), x / -7), (xs.mean(), x.mean()),
                      ((xs / 1), x)]:
        torch.testing.assert_close(got.get().float_precision(), want, atol=0.0025, rtol=0)
    with pytest.raises(ZeroDivisionError):
        xs / 0
    integers = torch.tensor([4, 6]).share(bob, alice, crypto_provider=james)
    with pytest.raises(sy.UnsupportedOpError, match="fix_precision"):
        integers / 2
    torch.testing.assert_close(xs.get().float_precision(), x, atol=0.001, rtol=0)  # intact
    integers.get()


def test_sending_or_moving_a_shared_tensor_says_what_to_do_instead(bob, alice, james):
    xs = torch.ones(2).fix_precision().share(bob, alice, crypto_provider=james)
    with pytest.raises(sy.UnsupportedOpError, match="already live at bob, alice"):
        xs.send(james)
    with pytest.raises(sy.UnsupportedOpError, match=r"\.get\(\) it and \.share\(\.\.\.\) it"):
        xs.move(james)
    torch.testing.assert_close(xs.get().float_precision(), torch.ones(2))


def test_rounding_after_products_is_unbiased_so_long_sums_stay_accurate(bob, alice, james):
    """Each truncation rounds to within 2 units, centred on zero: a floor would lose 0.5
    units per product, i.e. 10 over the sum of these 20,000 products."""
    torch.manual_seed(5)
    a, b = torch.rand(20_000).round(decimals=3), torch.rand(20_000).round(decimals=3)
    exact = (a.double() * b.double()).sum().item()
    sa = a.fix_precision().share(bob, alice, crypto_provider=james)
    sb = b.fix_precision().share(bob, alice, crypto_provider=james)
    products = (sa * sb).get().float_precision().double()
    assert abs(products.sum().item() - exact) < 0.5
    halves = (sa * 0.5).get().float_precision().double()
    assert abs((halves - a.double() * 0.5).sum().item()) < 0.5
    sa.get(), sb.get()


CONVOLUTIONS = [
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b)),
    ("conv2d_stride_padding", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1)),
    ("conv2d_dilation_groups", lambda x, w, b: F.conv2d(x, w[:, :2].repeat(2, 1, 1, 1), None,
                                                        dilation=2, groups=2)),
    ("conv2d_public_weight", lambda x, w, b: F.conv2d(x, torch.full((6, 4, 3, 3), 0.1))),
    ("conv_transpose2d", lambda x, w, b: F.conv_transpose2d(x, w.transpose(0, 1), b, stride=2,
                                                            output_padding=1)),
    ("conv1d", lambda x, w, b: F.conv1d(x.flatten(2), w[:, :, 1], b, padding=1)),
    ("avg_pool2d", lambda x, w, b: F.avg_pool2d(x, 2)),
    ("avg_pool2d_padded", lambda x, w, b: F.avg_pool2d(x, 3, stride=2, padding=1)),
    ("avg_pool1d", lambda x, w, b: F.avg_pool1d(x.flatten(2), 4)),
    ("adaptive_avg_pool2d", lambda x, w, b: F.adaptive_avg_pool2d(x, (2, 1))),
]


@pytest.mark.parametrize(("op", "fn"), CONVOLUTIONS, ids=[c[0] for c in CONVOLUTIONS])
def test_convolutions_and_pooling_match_plaintext(bob, alice, james, op, fn):
    """Convolutions run as Beaver products with convolution triples; average pooling as a
    window sum and one exact division."""
    torch.manual_seed(8)
    x, w, b = torch.randn(2, 4, 6, 6), torch.randn(6, 4, 3, 3), torch.randn(6)
    expected = fn(x, w, b)
    shared = [t.fix_precision().share(bob, alice, crypto_provider=james) for t in (x, w, b)]
    with torch.no_grad():
        result = fn(*shared).get().float_precision()
    torch.testing.assert_close(result, expected, atol=0.02, rtol=0)


MAX_POOLS = [
    ("kernel_2", {"kernel_size": 2}),
    ("kernel_3_stride_2", {"kernel_size": 3, "stride": 2}),
    ("dilation_2", {"kernel_size": 2, "dilation": 2}),
    ("rectangular", {"kernel_size": (2, 3), "stride": (1, 2)}),
]


@pytest.mark.parametrize(("case", "options"), MAX_POOLS, ids=[c[0] for c in MAX_POOLS])
def test_max_pool2d_values_and_indices_like_torch(bob, alice, james, case, options):
    torch.manual_seed(4)
    x = torch.randn(2, 3, 6, 7)
    x[0, 0, 0, :2] = 2.5  # a tie inside a window: the first one wins, as in torch
    expected, expected_indices = F.max_pool2d(x, return_indices=True, **options)
    xs = x.fix_precision().share(bob, alice, crypto_provider=james)
    with torch.no_grad():
        values, indices = F.max_pool2d(xs, return_indices=True, **options)
    torch.testing.assert_close(values.get().float_precision(), expected, atol=0.001, rtol=0)
    assert torch.equal(indices.get().float_precision().round().long(), expected_indices)


@pytest.mark.parametrize(("case", "options"), MAX_POOLS, ids=[c[0] for c in MAX_POOLS])
def test_max_pool2d_gradient_goes_to_each_windows_maximum_like_torch(bob, alice, james, case,
                                                                       options):
    torch.manual_seed(6)
    x = torch.randn(2, 2, 6, 7, requires_grad=True)
    weights = torch.randn(F.max_pool2d(x, **options).shape)
    (F.max_pool2d(x, **options) * weights).sum().backward()
    xs = x.detach().fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    (F.max_pool2d(xs, **options) * weights).sum().backward()
    # up to 3 overlapping windows, each product with a public fraction rounded once
    torch.testing.assert_close(xs.grad.get().float_precision(), x.grad, atol=0.005, rtol=0)


def test_pooling_that_needs_unequal_windows_is_refused_by_name(bob, alice, james):
    xs = torch.randn(1, 2, 5, 5).fix_precision().share(bob, alice, crypto_provider=james)
    with pytest.raises(sy.UnsupportedOpError, match="count_include_pad=True"):
        F.avg_pool2d(xs, 3, padding=1, count_include_pad=False)
    with pytest.raises(sy.UnsupportedOpError, match="ceil_mode=False"):
        F.avg_pool2d(xs, 2, ceil_mode=True)
    with pytest.raises(sy.UnsupportedOpError, match="must divide"):
        F.adaptive_avg_pool2d(xs, 2)
    with torch.no_grad(), pytest.raises(sy.UnsupportedOpError, match="no padding"):
        F.max_pool2d(xs, 3, padding=1)
    torch.testing.assert_close(F.avg_pool2d(xs, 5).get().float_precision().shape,
                               torch.Size([1, 2, 1, 1]))


SELECTION = [
    ("argmax_dim", lambda x, y: x.argmax(1)),
    ("argmax_all", lambda x, y: x.argmax()),
    ("argmin_keepdim", lambda x, y: x.argmin(0, keepdim=True)),
    ("max", lambda x, y: x.max()),
    ("min_dim_values", lambda x, y: x.min(1).values),
    ("max_dim_indices", lambda x, y: x.max(0, keepdim=True).indices),
    ("amax", lambda x, y: torch.amax(x, 1)),
    ("maximum", lambda x, y: torch.maximum(x, y)),
    ("minimum_public", lambda x, y: torch.minimum(x, torch.zeros(3, 5))),
    ("max_other", lambda x, y: torch.max(x, y)),
]


@pytest.mark.parametrize(("op", "fn"), SELECTION, ids=[c[0] for c in SELECTION])
def test_max_min_and_their_indices_by_comparisons(bob, alice, james, op, fn):
    """The values and indices torch gives (the first of equal maxima), as shared values."""
    torch.manual_seed(5)
    x, y = torch.randn(3, 5), torch.randn(3, 5)
    x[1, 1] = x[1, 3] = 4.0  # a tie: the earlier index wins, as in torch
    x[2, 0] = x[2, 4] = -4.0
    expected = fn(x, y)
    xs = x.fix_precision().share(bob, alice, crypto_provider=james)
    ys = y.fix_precision().share(bob, alice, crypto_provider=james)
    result = fn(xs, ys).get().float_precision()
    torch.testing.assert_close(result, expected.float(), atol=0.002, rtol=0)


CLASSIFIERS = [
    ("linear", lambda: nn.Linear(4, 3), (8, 4)),
    ("cnn_max_pool", lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
                                           nn.Flatten(), nn.Linear(4 * 3 * 3, 3)),
     (6, 1, 8, 8)),
]


@pytest.mark.parametrize(("case", "make", "shape"), CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS])
def test_accuracy_on_encrypted_predictions_like_pysyft_part_11(bob, alice, james, case, make,
                                                               shape):
    """The correct predictions counted on shared data, none of them revealed."""
    torch.manual_seed(6)
    model = make()
    data, labels = torch.randn(shape), torch.randint(0, 3, (shape[0],))
    expected = int((model(data).argmax(dim=1) == labels).sum())
    kwargs = {"crypto_provider": james}
    model.fix_precision().share(bob, alice, **kwargs)
    shared_data = data.fix_precision().share(bob, alice, **kwargs)
    shared_labels = labels.float().fix_precision().share(bob, alice, **kwargs)
    with torch.no_grad():
        pred = model(shared_data).argmax(dim=1)
        correct = pred.eq(shared_labels.view_as(pred)).sum()
    assert correct.get().float_precision().item() == expected
    model.get()
    del shared_data, shared_labels, pred


def test_max_refuses_at_once_when_autograd_would_need_its_backward(bob, alice, james):
    xs = torch.randn(2, 3).fix_precision().share(bob, alice, crypto_provider=james,
                                                 requires_grad=True)
    for fn in (lambda x: x.max(), lambda x: x.max(1), lambda x: torch.maximum(x, x)):
        with pytest.raises(sy.UnsupportedOpError, match=r"torch\.no_grad"):
            fn(xs)
    with torch.no_grad():
        assert xs.max().get().float_precision().item() == pytest.approx(
            xs.get().float_precision().max().item(), abs=0.002)


def test_clamp_refuses_under_autograd_and_names_hardtanh(bob, alice, james):
    xs = torch.randn(2, 3).fix_precision().share(bob, alice, crypto_provider=james,
                                                 requires_grad=True)
    with pytest.raises(sy.UnsupportedOpError, match=r"F\.hardtanh"):
        xs.clamp(0, 1)
    with torch.no_grad():
        assert xs.clamp(0, 1).get().float_precision().min().item() >= 0


def test_sigmoid_and_tanh_are_within_their_stated_error_everywhere(bob, alice, james):
    x = torch.linspace(-40, 40, 801)
    xs = x.fix_precision().share(bob, alice, crypto_provider=james)
    for fn in (torch.sigmoid, torch.tanh):
        error = (fn(xs).get().float_precision() - fn(x)).abs().max().item()
        assert error <= 0.006, f"{fn.__name__}: {error}"


STILL_UNAVAILABLE = [
    ("exp", lambda x, y: x.exp()),
    ("log", lambda x, y: x.log()),
]


@pytest.mark.parametrize(("op", "fn"), STILL_UNAVAILABLE, ids=[c[0] for c in STILL_UNAVAILABLE])
def test_ops_not_available_yet_name_the_op(bob, alice, james, op, fn):
    xs = torch.randn(3, 4).fix_precision().share(bob, alice, crypto_provider=james)
    ys = torch.randn(3, 4).fix_precision().share(bob, alice, crypto_provider=james)
    with pytest.raises(sy.ProtocolUnavailableError, match="has no secure protocol") as info:
        fn(xs, ys)
    assert info.value.op == op
    assert str(info.value).startswith(op) and ".get()" in str(info.value)


@pytest.mark.parametrize("fn", [
    lambda x, m: x[m], lambda x, m: x.index_select(0, m), lambda x, m: x.gather(0, m),
], ids=["mask", "index_select", "gather"])
def test_indexing_by_a_shared_mask_is_refused_naming_where(bob, alice, james, fn):
    """Each party would index with its own random share (and error messages would carry
    it back to the client): refused here, before any party sees such a command."""
    xs = torch.tensor([1.0, -2.0, 3.0]).fix_precision().share(bob, alice, crypto_provider=james)
    mask = xs > 0
    with pytest.raises(sy.UnsupportedOpError, match=r"shared index or mask.*torch\.where"):
        fn(xs, mask)


def test_protocol_ops_need_a_crypto_provider(bob, alice):
    xs = torch.ones(2).fix_precision().share(bob, alice)
    with pytest.raises(sy.PointerUsageError, match=r"\(fixed_mul.*crypto_provider=james"):
        (xs * xs).get()


def test_max_pooling_with_padding_works_on_a_padded_input(bob, alice, james):
    """max_pool2d with padding is refused, saying to pad with a low number first: that works."""
    torch.manual_seed(5)
    image = torch.randn(1, 2, 5, 5)
    shared = image.fix_precision().share(bob, alice, crypto_provider=james)
    with pytest.raises(sy.UnsupportedOpError, match=r"F\.pad"):
        F.max_pool2d(shared, 2, padding=1)
    with torch.no_grad():
        pooled = F.max_pool2d(F.pad(shared, (1, 1, 1, 1), value=-1000.0), 2)
    expected = F.max_pool2d(image, 2, padding=1)
    torch.testing.assert_close(pooled.get().float_precision(), expected, atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    "fn", [bool, lambda x: x.item(), lambda x: x.tolist(), lambda x: x.float_precision(),
           lambda x: x.share_memory_(), torch.from_dlpack, lambda x: x.apply_(abs),
           lambda x: torch.utils.dlpack.to_dlpack(x)],
    ids=["bool", "item", "tolist", "float_precision", "share_memory_", "from_dlpack", "apply_",
         "to_dlpack"],
)
def test_revealing_ops_say_get_first(bob, alice, fn):
    xs = torch.tensor([1.0]).fix_precision().share(bob, alice)
    with pytest.raises(sy.PointerUsageError, match=r"\.get\(\)"):
        fn(xs)


def test_branching_on_a_comparison_and_unknown_ops(bob, alice, james):
    xs = torch.tensor([1.0]).fix_precision().share(bob, alice, crypto_provider=james)
    with pytest.raises(sy.PointerUsageError, match=r"\.get\(\)"):
        if xs > 0:
            pass
    with pytest.raises(sy.UnsupportedOpError, match=r"cumprod.*secret-shared"):
        xs.cumprod(0)


def test_mismatched_parties_and_bad_workers(bob, alice, charlie, james):
    x = torch.ones(2).fix_precision()
    with pytest.raises(sy.PointerUsageError, match=r"sub.*\(bob, alice\).*\(bob, alice, ch"):
        x.share(bob, alice) - x.share(bob, alice, charlie)
    with pytest.raises(sy.PointerUsageError, match="same workers"):
        x.share(bob, alice) - x.share(bob, alice, charlie)
    with pytest.raises(ValueError, match="twice"):
        x.share(bob, bob)
    with pytest.raises(ValueError, match="crypto provider"):
        x.share(bob, alice, crypto_provider=alice)
    with pytest.raises(ValueError, match="at least 2"):
        x.share(bob)
    with pytest.raises(sy.PointerUsageError, match="pointer"):
        x.share(bob, alice) + torch.ones(2).send(bob)


def test_repr_is_pysyft_like(bob, alice, james):
    xs = torch.ones(2).fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    lines = repr(xs).split("\n")
    assert lines[0] == "(Wrapper)>AutogradTensor>FixedPrecisionTensor>[AdditiveSharingTensor]"
    assert lines[1] == f"\t-> {xs.shares[0]!r}" and "-> bob:" in lines[1]
    assert "-> alice:" in lines[2]
    assert lines[3] == "\t*crypto provider: james*"


# -- modules and optimizers (tutorial Part 12) ------------------------------------------------
def test_module_fix_precision_share_get_round_trip(bob, alice, james):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    before = [p.detach().clone() for p in model.parameters()]
    model.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    params = list(model.parameters())
    assert all(isinstance(p, sy.SharedTensor) for p in params)
    assert all(p.requires_grad and p.is_leaf and isinstance(p, nn.Parameter) for p in params)
    assert len(bob._objects) == len(params)
    opt = torch.optim.SGD(params=model.parameters(), lr=0.1).fix_precision()
    assert isinstance(opt, torch.optim.SGD)

    plain = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        for p_plain, p_before in zip(plain.parameters(), before, strict=True):
            p_plain.copy_(p_before)
    data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    shared_data = data.fix_precision().share(bob, alice, crypto_provider=james,
                                             requires_grad=True)
    loss = model(shared_data).sum()
    loss.backward()
    opt.step()  # param.add_(grad, alpha=-0.1): scaled with the provider's truncation
    plain_loss = plain(data).sum()
    plain_loss.backward()
    torch.optim.SGD(plain.parameters(), lr=0.1).step()
    assert abs(loss.get().float_precision().item() - plain_loss.item()) < 0.02
    before = [p.detach().clone() for p in plain.parameters()]

    model.get()
    assert all(isinstance(p, FixedPrecisionTensor) for p in model.parameters())
    model.float_precision()
    after = [p.detach() for p in model.parameters()]
    for got, want in zip(after, before, strict=True):
        torch.testing.assert_close(got, want, atol=0.01, rtol=0)
    torch.testing.assert_close(model[0].weight.grad, plain[0].weight.grad, atol=0.01, rtol=0)
    del data, shared_data, loss, opt


def test_module_share_without_fix_precision(bob, alice):
    model = nn.Linear(3, 2)
    weight = model.weight.detach().clone()
    model.share(bob, alice)
    assert isinstance(model.weight, sy.SharedTensor) and not model.weight.requires_grad
    with pytest.raises(sy.PointerUsageError, match=r"\.get\(\)"):
        model.float_precision()
    model.get()
    assert type(model.weight.data) is torch.Tensor
    torch.testing.assert_close(model.weight.detach(), weight, atol=0.5e-3, rtol=0)


def test_loss_get_float_precision_like_part_12(bob, alice, james):
    pred = torch.tensor([[0.1], [0.4], [0.8], [1.2]])
    target = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    p = pred.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    t = target.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    loss = (p - t).sum()
    value = loss.get().float_precision()
    assert type(value) is torch.Tensor and not value.requires_grad
    torch.testing.assert_close(value, (pred - target).sum())


def test_sgd_step_truncates_every_shared_parameter_in_one_protocol_op(
    bob, alice, james, monkeypatch
):
    import zsyft.tensors.ops.shared_protocols as protocols

    torch.manual_seed(5)
    model, plain = nn.Linear(3, 2), nn.Linear(3, 2)
    plain.load_state_dict(model.state_dict())
    data = torch.tensor([[1.0, -2.0, 0.5], [0.25, 1.0, -1.0]])
    model.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05).fix_precision()
    assert all(group["foreach"] for group in opt.param_groups)
    model(data.fix_precision().share(bob, alice, crypto_provider=james)).sum().backward()
    plain(data).sum().backward()
    ops = []
    real = protocols.run_protocol
    monkeypatch.setattr(protocols, "run_protocol", lambda name, *a: ops.append(name) or real(
        name, *a))
    opt.step()
    torch.optim.SGD(plain.parameters(), lr=0.05).step()
    assert ops == ["truncate"]  # weight and bias together
    model.get().float_precision()
    for got, want in zip(model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), atol=0.01, rtol=0)


def test_sgd_with_momentum_keeps_its_own_step(bob, alice, james):
    model = nn.Linear(2, 1).fix_precision().share(bob, alice, crypto_provider=james,
                                                  requires_grad=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).fix_precision()
    assert all(group["foreach"] is None for group in opt.param_groups)
    del model, opt


def test_sgd_with_momentum_on_the_multi_tensor_path_trains_as_plaintext(bob, alice, james):
    """`foreach=True` runs momentum's `_foreach_mul_` and `_foreach_add_` one tensor at a time."""
    torch.manual_seed(1)
    model, data, target = nn.Linear(3, 1), torch.randn(4, 3), torch.randn(4, 1)
    plain = copy.deepcopy(model)
    shared = model.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    data_s, target_s = (share(t.fix_precision(), [bob, alice], james) for t in (data, target))
    opt = torch.optim.SGD(shared.parameters(), lr=0.05, momentum=0.9, foreach=True)
    opt = opt.fix_precision()
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9, foreach=True)
    for _ in range(4):
        for m, o, x, y in ((shared, opt, data_s, target_s), (plain, plain_opt, data, target)):
            o.zero_grad()
            loss = ((m(x) - y) ** 2).sum()
            loss.backward()
            o.step()
    for mine, theirs in zip(shared.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(mine.get().float_precision(), theirs.detach(), atol=0.02, rtol=0)
    del shared, opt, data_s, target_s


def test_foreach_add_of_shared_tensors_matches_one_add_each(bob, alice, james):
    parties = [bob, alice]
    xs = [share(torch.tensor(v).fix_precision(), parties, james) for v in ([1.0, 2.0], [[3.0]])]
    ys = [share(torch.tensor(v).fix_precision(), parties, james) for v in ([0.5, -1.0], [[2.0]])]
    torch._foreach_add_(xs, ys, alpha=2)  # an integer factor: no truncation needed
    assert [x.get().float_precision().tolist() for x in xs] == [[2.0, 0.0], [[7.0]]]
    zs = [share(torch.tensor([4.0]).fix_precision(), parties, james)]
    torch._foreach_add_(zs, [share(torch.tensor([1.0]).fix_precision(), parties, james)],
                        alpha=-0.25)
    # the truncation is exact to within one unit of the last place (0.001 at precision 3)
    torch.testing.assert_close(zs[0].get().float_precision(), torch.tensor([3.75]),
                               atol=1.5e-3, rtol=0)


def _count_protocol_ops(monkeypatch) -> list[str]:
    import zsyft.tensors.protocol_client as client

    ops: list[str] = []
    real = client.run_protocol_outputs
    monkeypatch.setattr(client, "run_protocol_outputs",
                        lambda name, *a: ops.append(name) or real(name, *a))
    return ops


def test_products_with_a_shared_constant_need_no_protocol(bob, alice, james, monkeypatch):
    """`ones_like` of a shared tensor is a shared constant whose value this client knows:
    multiplying by it (or by a view of it) is share-wise, as autograd does with the gradient
    `loss.backward()` starts from."""
    x = torch.tensor([[1.5, -2.0], [0.25, 3.0]]).fix_precision().share(
        bob, alice, crypto_provider=james)
    ops = _count_protocol_ops(monkeypatch)
    ones = torch.ones_like(x)
    halves = x.new_full((2, 1), 0.5).expand(2, 2)
    assert torch.equal(ones.public_value(), torch.ones(2, 2))
    assert torch.equal(halves.public_value(), torch.full((2, 2), 0.5))
    products = [x * ones, ones * x, x * halves.t(), x * ones.view(4).reshape(2, 2)]
    assert ops == ["truncate"], "only the fractional constant needs a truncation"
    want = torch.tensor([[1.5, -2.0], [0.25, 3.0]])
    for got, scale in zip(products, [1, 1, 0.5, 1], strict=True):
        torch.testing.assert_close(got.get().float_precision(), want * scale, atol=2e-3,
                                   rtol=0)
    for constant in (ones, halves):
        assert constant.get().float_precision().eq(constant.public_value()).all()


def test_a_constant_written_into_is_no_longer_public(bob, alice, james, monkeypatch):
    x = torch.tensor([1.5, -2.0, 4.0]).fix_precision().share(bob, alice, crypto_provider=james)
    c, d = torch.ones_like(x), torch.zeros_like(x)
    c.add_(x)  # in place: c = 1 + x, no longer known here
    d.view(3)[1:].add_(x[1:])  # through a view: d = [0, -2, 4]
    assert c.public_value() is None and d.public_value() is None
    ops = _count_protocol_ops(monkeypatch)
    products = (x * c).get().float_precision(), (x * d).get().float_precision()
    assert ops == ["fixed_mul", "fixed_mul"]
    want = torch.tensor([1.5, -2.0, 4.0])
    torch.testing.assert_close(products[0], want * (1 + want), atol=5e-3, rtol=0)
    torch.testing.assert_close(products[1], want * torch.tensor([0, -2.0, 4.0]), atol=5e-3,
                               rtol=0)


def test_backward_of_a_square_loss_multiplies_by_the_known_start_gradient(
    bob, alice, james, monkeypatch
):
    """`((pred - target) ** 2).sum().backward()`: the forward square is one product; its
    backward multiplies by autograd's (known) ones, share-wise."""
    pred = torch.tensor([[0.5], [-1.25]]).fix_precision().share(
        bob, alice, crypto_provider=james, requires_grad=True)
    target = torch.tensor([[1.0], [0.0]]).fix_precision().share(
        bob, alice, crypto_provider=james)
    ops = _count_protocol_ops(monkeypatch)
    ((pred - target) ** 2).sum().backward()
    assert ops == ["fixed_mul"]
    torch.testing.assert_close(pred.grad.get().float_precision(),
                               torch.tensor([[-1.0], [-2.5]]), atol=3e-3, rtol=0)
    pred.get()


def test_products_of_empty_shared_tensors_repeat(bob, alice, james):
    """Empty operands, again and again (their material is dealt ahead like any other's)."""
    x = torch.ones(0, 2).fix_precision().share(bob, alice, crypto_provider=james)
    for _ in range(4):
        assert (x * x).get().float_precision().shape == (0, 2)
        assert (x @ x.t()).get().float_precision().shape == (0, 0)


def test_results_of_protocol_ops_can_be_written_into(bob, alice, james):
    """Parties compute protocol ops without autograd bookkeeping; what they store is an
    ordinary tensor, which later in-place ops (an optimizer's step, a gradient accumulated,
    zero_grad(set_to_none=False)) may change."""
    x = torch.tensor([1.5, -2.0, 3.0]).fix_precision().share(bob, alice, crypto_provider=james)
    y = torch.tensor([2.0, 0.5, -1.0]).fix_precision().share(bob, alice, crypto_provider=james)
    for z, expected in [(x * y, [3.0, -1.0, -3.0]), (torch.relu(x), [1.5, 0.0, 3.0]),
                        (x @ y, -1.0), (x / 4, [0.375, -0.5, 0.75])]:
        z.add_(torch.ones_like(z))  # every party writes into its share (party 0 adds the 1)
        z.mul_(2)
        torch.testing.assert_close(
            z.get().float_precision(), (torch.tensor(expected) + 1) * 2, atol=0.02, rtol=0)
    w = nn.Linear(3, 1).fix_precision().share(bob, alice, crypto_provider=james,
                                              requires_grad=True)
    opt = torch.optim.SGD(w.parameters(), lr=0.1).fix_precision()
    for _ in range(2):
        opt.zero_grad(set_to_none=False)  # zeroes the gradients' shares in place
        w(x.unsqueeze(0)).sum().backward()
        opt.step()
    assert w.weight.grad is not None
    del w, opt
