"""Torch functions, methods, autograd and nn on pointers give what plain torch gives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zsyft as sy
from tests.integration.conftest import settle

CASES = [
    ("add", lambda a, b: a + b),
    ("sub_scalar", lambda a, b: a - 2.5),
    ("rsub", lambda a, b: 1 - a),
    ("mul_div", lambda a, b: a * b / (b.abs() + 1)),
    ("matmul", lambda a, b: a @ b.T),
    ("torch_matmul", lambda a, b: torch.matmul(a, b.t())),
    ("sum_dim", lambda a, b: a.sum(dim=1)),
    ("mean", lambda a, b: a.mean()),
    ("max_dim_values", lambda a, b: a.max(dim=0).values),
    ("max_dim_indices", lambda a, b: torch.max(a, 1)[1]),
    ("relu", lambda a, b: F.relu(a)),
    ("softmax", lambda a, b: F.softmax(a, dim=-1)),
    ("index_int", lambda a, b: a[1]),
    ("index_slice", lambda a, b: a[:, 1:3]),
    ("index_tensor", lambda a, b: a[torch.tensor([0, 2])]),
    ("view_t", lambda a, b: a.view(4, 3).t().contiguous()),
    ("cat", lambda a, b: torch.cat([a, b], dim=0)),
    ("stack_unbind", lambda a, b: torch.stack(torch.unbind(a, 0))),
    ("comparison", lambda a, b: (a > b).to(torch.float32)),
    ("where", lambda a, b: torch.where(a > 0, a, b)),
    ("pow_exp", lambda a, b: (a**2).exp().log()),
    ("clamp", lambda a, b: a.clamp(-0.5, 0.5)),
    ("local_operand", lambda a, b: a + torch.ones(3, 4)),
    ("dtype_cast", lambda a, b: a.to(torch.float64) * 3),
    ("argmax", lambda a, b: a.argmax(dim=1)),
    ("diag_trace", lambda a, b: a[:3, :3].diag() + a[:3, :3].trace()),
    ("cross_entropy", lambda a, b: F.cross_entropy(a, b.argmax(dim=1))),
    ("einsum", lambda a, b: torch.einsum("ij,kj->ik", a, b)),
    ("layer_norm", lambda a, b: F.layer_norm(a, (4,))),
    ("sort_topk", lambda a, b: a.sort(dim=1).values + torch.topk(a, 4).values),
    ("cumsum_flip", lambda a, b: a.cumsum(0).flip(1)),
    ("masked_fill", lambda a, b: a.masked_fill(b > 0, 0.0)),
    ("set_item", lambda a, b: _set_item(a.clone())),
    ("bincount", lambda a, b: torch.bincount((a > 0).long().flatten())),
    ("ldexp_frexp", lambda a, b: torch.ldexp(torch.frexp(a)[0], torch.ones(3, 4))),
    ("fft", lambda a, b: torch.fft.irfft(torch.fft.rfft(a), n=4) + torch.fft.fft(b).abs()),
    ("put", lambda a, b: a.clone().put_(torch.tensor([1, 6]), torch.tensor([9.0, -9.0]))),
]


def _spd(m):
    return m @ m.mT + 3 * torch.eye(m.shape[-1])


GRAD_CASES = [  # (name, fn, input shapes): forward and every input's gradient
    ("select", lambda a: a[1], [(3, 4)]),
    ("strided_slice", lambda a: a[::2, 1:3], [(5, 4)]),
    ("diagonal", lambda a: a.diagonal(), [(3, 3)]),
    ("unfold", lambda a: a.unfold(0, 2, 1), [(5,)]),
    ("diff_trapezoid", lambda a: torch.diff(a) + torch.trapezoid(a).unsqueeze(0), [(5,)]),
    ("reflect_pad", lambda a: F.pad(a, (1, 1), mode="reflect"), [(1, 2, 4)]),
    ("replicate_pad", lambda a: F.pad(a, (1, 1, 1, 1), mode="replicate"), [(1, 1, 3, 3)]),
    ("circular_pad", lambda a: F.pad(a, (1, 1), mode="circular"), [(1, 2, 4)]),
    ("upsample_nearest", lambda a: F.interpolate(a, scale_factor=2), [(1, 1, 3, 3)]),
    ("upsample_bilinear", lambda a: F.interpolate(a, scale_factor=2, mode="bilinear"),
     [(1, 1, 3, 3)]),
    ("max_pool3d", lambda a: F.max_pool3d(a, 2), [(1, 1, 4, 4, 4)]),
    ("avg_pool3d", lambda a: F.avg_pool3d(a, 2), [(1, 1, 4, 4, 4)]),
    ("adaptive_max_pool2d", lambda a: F.adaptive_max_pool2d(a, 2), [(1, 1, 4, 4)]),
    ("glu_prelu", lambda a, w: F.prelu(F.glu(a, 1), w), [(3, 4), (1,)]),
    ("shrinks", lambda a: F.softshrink(a) + F.hardshrink(a), [(3, 4)]),
    ("cdist", lambda a, b: torch.cdist(a, b), [(3, 4), (2, 4)]),
    ("attention", lambda q: F.scaled_dot_product_attention(q, q, q), [(1, 2, 3, 4)]),
    ("bilinear", lambda a, b, w: F.bilinear(a, b, w), [(3, 2), (3, 4), (5, 2, 4)]),
    ("svd_qr", lambda a: torch.linalg.svdvals(a) + torch.linalg.qr(a)[1].diagonal(), [(3, 3)]),
    ("solve_det", lambda a, b: torch.linalg.solve(_spd(a), b) * torch.det(_spd(a)),
     [(3, 3), (3, 2)]),
    ("eigh_cholesky", lambda a: torch.linalg.eigh(_spd(a))[0] + torch.linalg.cholesky(_spd(a))[2],
     [(3, 3)]),
    ("lstsq_slogdet", lambda a, b: torch.linalg.lstsq(_spd(a), b).solution.sum(0)
     + torch.linalg.slogdet(_spd(a))[1], [(3, 3), (3, 2)]),
    ("matrix_exp_inverse", lambda a: torch.linalg.matrix_exp(a) + torch.inverse(_spd(a)), [(3, 3)]),
    ("rot90_block_diag", lambda a, b: torch.block_diag(a.rot90(), b), [(2, 3), (1, 2)]),
    ("renorm_logcumsumexp", lambda a: a.renorm(2, 0, 1.0) + a.logcumsumexp(1), [(3, 4)]),
    ("pixel_shuffle", lambda a: F.pixel_unshuffle(F.pixel_shuffle(a, 2), 2), [(1, 4, 2, 2)]),
    ("grid_sample", lambda a, g: F.grid_sample(a, g.tanh(), align_corners=False),
     [(1, 1, 3, 3), (1, 2, 2, 2)]),
]


@pytest.mark.parametrize(("name", "fn", "shapes"), GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradients_match_plain_torch(bob, name, fn, shapes):
    torch.manual_seed(3)
    inputs = [torch.randn(*shape) for shape in shapes]
    local = [t.clone().requires_grad_(True) for t in inputs]
    expected = fn(*local)
    expected.sum().backward()
    remote = [t.clone().requires_grad_(True).send(bob) for t in inputs]
    result = fn(*remote)
    result.sum().backward()
    torch.testing.assert_close(result.get(), expected.detach(), atol=1e-5, rtol=1e-4)
    for got, want in zip(remote, local, strict=True):
        torch.testing.assert_close(got.get().grad, want.grad, atol=1e-4, rtol=1e-4)


def test_a_local_gradient_given_to_backward_gives_a_remote_grad(bob):
    """The gradient of `x * 2` needs no remote data: from a local `gradient` torch would
    compute it here, leaving a local `.grad` on a remote leaf."""
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True).send(bob)
    (x * 2).backward(torch.ones(3))
    assert isinstance(x.grad, sy.PointerTensor) and x.grad.location is bob
    assert x.grad.get().tolist() == [2.0, 2.0, 2.0]
    del x


def test_a_pointers_grad_is_set_only_to_a_pointer_or_none(bob):
    """A local tensor as a pointer's .grad would make the next backward() fail far away
    (autograd accumulates into it at the worker): refused where it is set, like .data."""
    w = torch.zeros(3, requires_grad=True).send(bob)
    with pytest.raises(TypeError, match=r"\.grad of a pointer can be set only to a pointer"):
        w.grad = torch.full((3,), 7.0)
    w.grad = torch.ones(3).send(bob)
    (w * 2).sum().backward()
    assert torch.equal(w.get().grad, torch.full((3,), 3.0))


def test_dropout_in_training_keeps_torchs_scaling_and_mask_in_the_gradient(bob):
    x = torch.ones(200, requires_grad=True).send(bob)
    y = F.dropout(x, 0.5, training=True)
    y.sum().backward()
    out, grad = y.get(), x.get().grad
    assert set(out.unique().tolist()) <= {0.0, 2.0} and 0 < int((out == 0).sum()) < 200
    torch.testing.assert_close(grad, out)  # d(sum)/dx is the same mask and scale


def _set_item(t):
    t[0] = 5.0
    t[:, 1] = -1.0
    return t


@pytest.fixture(autouse=True)
def clean(bob):
    yield
    settle(bob)


@pytest.mark.parametrize(("name", "fn"), CASES, ids=[c[0] for c in CASES])
def test_op_matches_plain_torch(bob, name, fn):
    torch.manual_seed(0)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    expected = fn(a, b)
    result = fn(a.send(bob), b.send(bob))
    assert isinstance(result, sy.PointerTensor)
    assert result.shape == expected.shape and result.dtype == expected.dtype
    torch.testing.assert_close(result.get(), expected)


def test_a_channels_last_convolution_has_the_layout_its_pointer_describes(bob):
    """torch's CPU convolution keeps channels-last where its meta kernel (which the client
    infers metadata with) gives a contiguous result: the worker follows the pointer's layout,
    so what the client allows (`view`) works there and reads the right elements."""
    torch.manual_seed(0)
    image, weight = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    expected = F.conv2d(image, weight)
    image_ptr = image.send(bob).contiguous(memory_format=torch.channels_last)
    out = F.conv2d(image_ptr, weight.send(bob))
    torch.testing.assert_close(out.contiguous().view(-1).get(), expected.reshape(-1))
    pooled = F.adaptive_avg_pool2d(image_ptr, 1)
    torch.testing.assert_close(pooled.view(-1).get(), F.adaptive_avg_pool2d(image, 1).view(-1))
    del image_ptr, out


def test_complex_conjugates_run_remotely(bob):
    z = torch.tensor([1 + 2j, 3 - 1j])
    p = z.send(bob)
    assert torch.equal(p.conj().get(), z.conj())
    assert torch.equal((p.conj() * p).get(), z.conj() * z)
    assert torch.equal(p.conj().resolve_conj().get(), z.conj())
    del p


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float64, torch.bool,
                                   torch.float16, torch.uint8, torch.bfloat16])
def test_dtypes_round_trip(bob, dtype):
    x = (torch.arange(12).reshape(3, 4) % 3).to(dtype)
    assert torch.equal(x.send(bob).get(), x)


def test_scalar_and_empty_and_large_tensors(bob):
    for x in (torch.tensor(3.5), torch.empty(0, 5), torch.randn(512, 512)):
        assert torch.equal(x.send(bob).get(), x)


def test_non_contiguous_tensor_is_sent_as_its_values(bob):
    x = torch.arange(12.0).reshape(3, 4).t()
    ptr = x.send(bob)
    assert torch.equal((ptr * 1).get(), x)


def test_a_large_local_argument_changed_after_the_call_is_used_as_it_was(bob, alice):
    """Ops are pipelined: ZeroMQ sends a large argument's bytes after the call returned, so
    changing the argument next (a buffer reused in a loop) must not change what was sent."""
    n = 20_000  # 80 KB: above the size from which frames are sent without a copy
    acc, buf = torch.zeros(n).send(bob), torch.empty(n)
    for i in range(5):
        buf.fill_(i)
        acc += buf
    chained = torch.zeros(n).send(bob).send(alice)
    ones = torch.ones(n)
    joined = torch.cat([chained, ones])
    ones.zero_()
    assert acc.get().unique().tolist() == [10.0]
    assert joined.get().get().sum().item() == n  # n zeros, then n ones


def test_in_place_ops_update_the_remote_tensor(bob):
    x = torch.zeros(3)
    ptr = x.send(bob)
    same = ptr.add_(2)
    assert same is ptr
    ptr.mul_(torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(ptr.get(), torch.tensor([2.0, 4.0, 6.0]))
    assert torch.equal(x, torch.zeros(3)), "the local original must not change"


def test_augmented_shift_and_bitwise_assignments_update_the_remote_tensor(bob):
    x = torch.tensor([1, 2, 3])
    ptr = x.send(bob)
    for step in (lambda t: t.__ilshift__(2), lambda t: t.__irshift__(1),
                 lambda t: t.__iand__(3), lambda t: t.__ior__(4), lambda t: t.__ixor__(1)):
        assert step(ptr) is ptr
        step(x)
    assert torch.equal(ptr.get(), x)


@pytest.mark.parametrize("fn", [
    lambda t: t.t_(), lambda t: t.transpose_(0, 1), lambda t: t.unsqueeze_(0),
    lambda t: t.view(1, 2, 3).squeeze_(), lambda t: t.as_strided_((3, 2), (1, 3)),
    lambda t: t.swapdims_(0, 1),
], ids=["t_", "transpose_", "unsqueeze_", "squeeze_", "as_strided_", "swapdims_"])
def test_in_place_view_ops_reshape_the_pointer_too(bob, fn):
    local = torch.arange(6.0).view(2, 3)
    remote = local.clone().send(bob)
    expected, result = fn(local), fn(remote)
    assert result.shape == expected.shape and result.stride() == expected.stride()
    torch.testing.assert_close((result * 1).get(), expected)
    remote.get()


@pytest.mark.parametrize("kind", [nn.RNN, nn.GRU, nn.LSTM])
def test_recurrent_network_with_batch_first_on_pointers(bob, kind):
    torch.manual_seed(0)
    rnn, x = kind(4, 6, batch_first=True), torch.randn(8, 5, 4)  # uses transpose_ inside
    expected, _ = rnn(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    rnn.send(bob)
    out, hidden = rnn(x.send(bob))
    assert out.shape == expected.shape
    out.sum().backward()
    torch.testing.assert_close(out.get(), expected, atol=1e-5, rtol=1e-4)
    del hidden
    rnn.get()
    for param, grad in zip(rnn.parameters(), grads, strict=True):
        torch.testing.assert_close(param.grad, grad, atol=1e-4, rtol=1e-4)


def test_getting_a_view_of_a_temporary_leaves_nothing_behind(bob):
    x, y = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).send(bob), torch.ones(2, 2).send(bob)
    for view in (lambda t: t.view(-1), lambda t: t.t(), lambda t: t[1], lambda t: t.reshape(4)):
        z = view(x + y)  # torch keeps the temporary alive as z._base
        assert len(bob._objects) == 4
        torch.testing.assert_close(z.get(), view(torch.tensor([[2.0, 3.0], [4.0, 5.0]])))
        assert len(bob._objects) == 2, "the temporary x + y stayed at bob"
    kept = x + y  # a base the user still holds is not touched
    kept.view(-1).get()
    torch.testing.assert_close(kept.get(), torch.tensor([[2.0, 3.0], [4.0, 5.0]]))
    x.get(), y.get()
    assert bob._objects == {}


def test_getting_a_view_leaves_a_base_that_autograd_or_an_alias_still_needs(bob):
    model = nn.Linear(3, 1)
    model.send(bob)
    x = torch.ones(2, 3).send(bob)
    hidden = x * 2
    out = model(hidden)  # autograd saves `hidden` for the weight's gradient
    flat = hidden.view(-1)
    del hidden
    assert flat.get().tolist() == [2.0] * 6
    out.sum().backward()
    assert model.weight.grad.get().tolist() == [[4.0, 4.0, 4.0]]
    base = x + 1
    alias, view = base.detach(), base.view(3, 2)
    del base
    assert view.get().tolist() == [[2.0, 2.0]] * 3
    assert alias.get().tolist() == [[2.0, 2.0, 2.0]] * 2
    del model, x, out, flat


def test_data_dependent_shapes_run_synchronously(bob):
    x = torch.tensor([0.0, 3.0, 0.0, -1.0])
    ptr = x.send(bob)
    nz = ptr.nonzero()
    assert nz.shape == (2, 1)
    assert torch.equal(nz.get(), x.nonzero())
    assert torch.equal(ptr[ptr > 0].get(), torch.tensor([3.0]))
    values = torch.unique(ptr)
    assert torch.equal(values.get(), torch.unique(x))


@pytest.mark.parametrize("reveal", [bool, float, lambda p: p.item(), lambda p: p.tolist(),
                                    lambda p: p.numpy(), lambda p: torch.equal(p, p),
                                    lambda p: torch.allclose(p, p),
                                    lambda p: p.share_memory_(), torch.from_dlpack,
                                    lambda p: p.apply_(abs),
                                    lambda p: torch.utils.dlpack.to_dlpack(p)])
def test_implicit_reveal_is_refused_naming_get(bob, reveal):
    ptr = torch.tensor([1.0]).send(bob)
    with pytest.raises(sy.PointerUsageError, match=r"\.get\(\)"):
        reveal(ptr)


def test_one_hot_of_a_pointer_checks_its_labels_at_the_worker(bob):
    """For a tensor subclass torch's one_hot skips its checks of the labels: a label out of
    range gave a row of zeros. It runs at the worker, whose kernel checks them."""
    labels = torch.tensor([0, 2, 1])
    assert torch.equal(F.one_hot(labels.send(bob), 3).get(), F.one_hot(labels, 3))
    for bad in ([0, 5], [0, -1]):
        with pytest.raises(sy.RemoteError, match="Class values must be"):
            F.one_hot(torch.tensor(bad).send(bob), 3).get()
    with pytest.raises(sy.PointerUsageError, match="num_classes"):
        F.one_hot(labels.send(bob))
    sy.sync()
    assert len(bob._objects) == 0


def test_a_refused_reveal_names_what_the_user_wrote(bob):
    ptr = torch.tensor([1.0]).send(bob)
    with pytest.raises(sy.PointerUsageError, match=r"bool\(\)") as info:
        if ptr > 0:
            pass
    assert "local_scalar_dense" not in str(info.value)


def test_mixing_locations_is_refused(bob, alice):
    with pytest.raises(sy.PointerUsageError, match=r"alice.*bob|bob.*alice"):
        torch.ones(2).send(bob) + torch.ones(2).send(alice)
    settle(alice)


def test_shape_errors_are_raised_at_the_call_like_torch(bob):
    with pytest.raises(RuntimeError, match="broadcast"):
        torch.ones(2).send(bob) + torch.ones(3).send(bob)


def test_remote_error_names_worker_op_and_callsite(bob):
    x = torch.ones(3).send(bob)
    idx = torch.tensor([5]).send(bob)  # out of range: only the worker can tell
    y = x[idx]
    with pytest.raises(sy.RemoteError) as info:
        y.get()
    err = info.value
    assert err.worker == "bob" and err.op == "index.Tensor"
    assert "out of bounds" in str(err) and err.remote_traceback
    assert err.callsite and "test_pointer_ops.py" in err.callsite
    assert bob.ping()["name"] == "bob", "the worker keeps serving after an error"


def test_a_remote_error_is_also_the_builtin_error_torch_raised(bob):
    """`except RuntimeError` catches an op that failed at the worker, as it would locally;
    the failed op's result does not show in `_objects`."""
    x = torch.ones(3).send(bob)
    failed = x & 1  # torch: NotImplementedError, a RuntimeError (no bitwise_and for float)
    with pytest.raises(RuntimeError, match="bitwise_and") as info:
        failed.get()
    assert isinstance(info.value, sy.RemoteError)
    assert info.value.remote_type == "NotImplementedError"
    index = torch.tensor([9]).send(bob)
    with pytest.raises(IndexError):
        x[index].get()
    again = x & 1
    with pytest.raises(RuntimeError):
        sy.sync()
    assert len(bob._objects) == 2  # x and index; not the placeholder of `again`
    del again, index, x


def test_a_linalg_op_on_a_bad_matrix_raises_at_the_call_like_torch(bob):
    """torch.linalg checks its result and raises `LinAlgError` at the call: on a pointer too,
    so the result is never assigned."""
    good = torch.tensor([[4.0, 2.0], [2.0, 3.0]])
    torch.testing.assert_close(torch.linalg.cholesky(good.send(bob)).get(),
                               torch.linalg.cholesky(good))
    singular = torch.zeros(2, 2).send(bob)
    with pytest.raises(torch.linalg.LinAlgError, match="positive-definite"):
        torch.linalg.cholesky(singular)
    with pytest.raises(torch.linalg.LinAlgError, match="singular"):
        torch.linalg.inv(singular)
    del singular
    settle(bob)
    assert len(bob._objects) == 0


def test_pipelined_error_surfaces_at_the_next_sync(bob):
    x = torch.ones(3).send(bob)
    x[torch.tensor([7]).send(bob)]  # fails remotely; nobody waits for it
    with pytest.raises(sy.RemoteError, match=r"index\.Tensor"):
        sy.sync()
    sy.sync()  # reported once


def test_a_workers_own_sync_is_a_sync_point_too(bob):
    """`bob.sync()` waits for bob as `sy.sync()` waits for every worker, and raises what
    failed meanwhile: a user who syncs one worker learns that an op there failed."""
    x = torch.ones(3).send(bob)
    x[torch.tensor([7]).send(bob)]  # fails remotely; nobody waits for it
    with pytest.raises(sy.RemoteError, match=r"index\.Tensor"):
        bob.sync()
    bob.sync()  # reported once


def test_an_error_raised_by_get_is_not_raised_again_at_the_next_sync_point(bob):
    x = torch.ones(3).send(bob)
    y = x[torch.tensor([7]).send(bob)]  # fails remotely
    with pytest.raises(sy.RemoteError, match=r"index\.Tensor"):
        y.get()  # raised here, where its value was asked for ...
    z = torch.tensor([1, 2]).send(bob) + 1
    assert torch.equal(z.get(), torch.tensor([2, 3]))  # ... and not again here
    sy.sync()


def test_a_get_that_raises_an_earlier_ops_error_keeps_its_value_for_the_next_get(bob):
    """An unrelated op's failure, reported with the reply of a get(), is raised there; the
    tensor that get() fetched is not lost: get() again returns it."""
    y = torch.tensor([1.0, 2.0, 3.0]).send(bob)
    x = torch.ones(3).send(bob)
    bad = x[torch.tensor([7]).send(bob)]  # fails at bob; nothing waits for it
    with pytest.raises(sy.RemoteError, match=r"index\.Tensor"):
        y.get()
    assert torch.equal(y.get(), torch.tensor([1.0, 2.0, 3.0]))
    del bad, x
    settle(bob)
    assert len(bob._objects) == 0


def test_inference_mode_runs_a_sent_model(bob):
    """Under `torch.inference_mode()` torch hands composite ops (`linear`, `conv2d`) to the
    pointer undecomposed: they run as the ops they are made of, as under `no_grad`."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3),
                          nn.LayerNorm(3)).eval()
    x = torch.randn(2, 1, 6, 6)
    with torch.inference_mode():
        expected = model(x)
    model.send(bob)
    with torch.inference_mode():
        out = model(x.send(bob))
    torch.testing.assert_close(out.get(), expected)
    model.get()


def test_get_after_the_gradient_was_fetched_keeps_the_data(bob):
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True).send(bob)
    (x * 2).sum().backward()
    assert torch.equal(x.grad.get(), torch.full((3,), 2.0))
    value = x.get()
    assert torch.equal(value.detach(), torch.tensor([1.0, 2.0, 3.0])) and value.requires_grad
    assert value.grad is None


def test_conv_net_forward_and_backward(bob):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 3 * 3, 2))
    images = torch.randn(2, 3, 8, 8)
    expected = net(images)
    expected.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.send(bob)
    out = net(images.send(bob))
    out.sum().backward()
    torch.testing.assert_close(out.get(), expected, atol=1e-5, rtol=1e-4)
    net.get()
    for param, grad in zip(net.parameters(), grads, strict=True):
        torch.testing.assert_close(param.grad, grad, atol=1e-5, rtol=1e-4)


def test_remote_training_with_nn_and_optim(bob):
    torch.manual_seed(1)
    data, target = torch.randn(16, 3), torch.randn(16, 1)
    local_model, remote_model = nn.Linear(3, 1), nn.Linear(3, 1)
    remote_model.load_state_dict(local_model.state_dict())
    remote_model.send(bob)
    assert all(isinstance(p, sy.PointerTensor) for p in remote_model.parameters())
    opt_local = torch.optim.SGD(local_model.parameters(), lr=0.1)
    opt_remote = torch.optim.SGD(remote_model.parameters(), lr=0.1)
    data_ptr, target_ptr = data.send(bob), target.send(bob)
    for _ in range(5):
        for model, opt, x, y in ((local_model, opt_local, data, target),
                                 (remote_model, opt_remote, data_ptr, target_ptr)):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
    remote_model.get()
    for p_local, p_remote in zip(local_model.parameters(), remote_model.parameters(), strict=True):
        assert not isinstance(p_remote, sy.PointerTensor)
        torch.testing.assert_close(p_local, p_remote)


def test_python_numbers_of_another_type_give_the_right_result_dtype(hook, bob):
    """1, 1.0 and True compare equal, but promote an int8 tensor differently."""
    x = torch.tensor([1, 2], dtype=torch.int8).send(bob)
    for scalar, dtype in ((1, torch.int8), (1.0, torch.float32), (True, torch.int8)):
        y = x + scalar
        assert y.dtype == dtype
        assert y.get().dtype == dtype


@pytest.mark.parametrize("sample", [
    lambda t: torch.multinomial(t.abs().flatten() + 0.1, 3),
    lambda t: t.clone().random_(0, 5), lambda t: torch.poisson(t.abs()),
    lambda t: t.clone().geometric_(0.5), lambda t: t.clone().cauchy_(),
    lambda t: t.clone().log_normal_(),
], ids=["multinomial", "random_", "poisson", "geometric_", "cauchy_", "log_normal_"])
def test_samplers_run_at_the_worker(bob, sample):
    t = torch.randn(3, 4)
    drawn = sample(t.send(bob))
    assert drawn.shape == sample(t).shape and torch.isfinite(drawn.get().float()).all()


def test_an_op_off_the_allowlist_is_refused_at_the_call_leaving_the_pointer_as_it_was(bob):
    x = torch.zeros(6).send(bob)
    with pytest.raises(sy.OpNotAllowedError, match=r"resize_.*allowlist"):
        x.resize_(2, 3)
    assert x.shape == (6,) and torch.equal(x.get(), torch.zeros(6))


def test_the_legacy_new_constructor_makes_pointers_where_the_data_is(bob):
    x = torch.ones(3, dtype=torch.float64).send(bob)
    made = {"sizes": x.new(2, 3), "size": x.new(torch.Size([2])), "data": x.new([1.0, 2.0]),
            "empty": x.new()}
    assert all(isinstance(p, sy.PointerTensor) and p.location is bob for p in made.values())
    assert torch.equal(made["sizes"].get(), torch.zeros(2, 3, dtype=torch.float64))
    assert torch.equal(made["size"].get(), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(made["data"].get(), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert made["empty"].get().shape == (0,)


def test_new_tensor_and_mid_get_as_in_pysyft(bob, alice):
    p = torch.ones(3).send(bob)
    made = p.new_tensor([1.0, 2.0])
    assert isinstance(made, sy.PointerTensor) and made.location is bob
    assert torch.equal(made.get(), torch.tensor([1.0, 2.0]))
    base = torch.ones(2).send(bob).send(alice)
    along = base.new_tensor([5, 6], requires_grad=True)
    assert along.location is alice and along.requires_grad and along.dtype == torch.float32
    at_bob = bob._objects.values()  # the data is at the chain's end
    assert any(torch.equal(v, torch.tensor([5.0, 6.0])) for v in at_bob)
    assert torch.equal(along.get().get(), torch.tensor([5.0, 6.0]))
    assert torch.equal((base + base.new_tensor([1.0, 2.0])).get().get(), torch.tensor([2.0, 3.0]))
    del base
    chain = torch.tensor([3.0]).send(bob).send(alice)
    assert chain.mid_get() is chain and torch.equal(chain.get(), torch.tensor([3.0]))
