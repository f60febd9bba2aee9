"""Secure comparison, ReLU and ReLU backward: exact for all 64-bit inputs."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc import (
    COMPARISONS,
    ComparisonParty,
    Prg,
    Transcript,
    comparison_message_bytes,
    deal_comparison,
    party_comparison,
    reconstruct,
    run_local,
    run_local_comparison,
    run_local_gt,
    run_local_lt,
    run_local_ltz,
    run_local_relu,
    run_local_relu_backward,
    share,
)
from zsyft.mpc.comparison import comparison_rounds
from zsyft.mpc.comparison_material import RADIX_FOUR_MAX
from zsyft.mpc.ring import INT64_MAX, INT64_MIN

EDGES = [0, 1, -1, 2, -2, INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1]
EDGES += [1 << 62, -(1 << 62), (1 << 63) - 2**31, 1 << 32, -(1 << 32), 1000, -1000]

PREDICATES = {
    "ltz": lambda v: v < 0,
    "gez": lambda v: v >= 0,
    "gtz": lambda v: v > 0,
    "lez": lambda v: v <= 0,
    "eqz": lambda v: v == 0,
}


def _values(n_random: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(n_random)  # test data only
    rand = torch.randint(INT64_MIN, INT64_MAX, (n_random,), generator=gen)
    small = torch.randint(-3, 4, (n_random // 10,), generator=gen)  # many exact zeros / ties
    # Values whose low 63 bits equal those of 0 or -1 stress the equality and borrow paths.
    return torch.cat([torch.tensor(EDGES), rand, small, torch.tensor(EDGES) ^ INT64_MIN])


TREES = pytest.mark.parametrize("small", [True, False], ids=["radix4", "binary"])
"""Each protocol test runs on a tensor small enough for the radix-4 borrow tree and on one
large enough for the binary tree."""


def _size(small: bool, large: int) -> int:
    return min(large, 3000) if small else max(large, RADIX_FOUR_MAX + 100)


@TREES
@pytest.mark.parametrize("name", sorted(PREDICATES))
def test_unary_predicates_exact_on_edges(prgs: list[Prg], name: str, small: bool) -> None:
    x = _values(_size(small, 5000))
    assert (x.numel() <= RADIX_FOUR_MAX) == small
    z = reconstruct(run_local_comparison(name, [share(x, len(prgs))], prgs, name))
    assert torch.equal(z, PREDICATES[name](x).to(torch.int64))


def test_ltz_random_100k(prgs2: list[Prg]) -> None:
    x = _values(100_000)
    z = reconstruct(run_local_ltz(share(x, 2), prgs2, "ltz"))
    assert torch.equal(z, (x < 0).to(torch.int64))


@TREES
def test_relu_matches_plaintext(prgs: list[Prg], small: bool) -> None:
    n = len(prgs)
    x = _values(_size(small, 100_000))
    z = reconstruct(run_local_relu(share(x, n), prgs, b"relu"))
    assert torch.equal(z, torch.relu(x))
    assert torch.equal(z, torch.where(x >= 0, x, 0))


@TREES
def test_relu_with_mask_outputs_relu_and_the_mask_its_backward_needs(
    prgs: list[Prg], small: bool
) -> None:
    n = len(prgs)
    x = _values(_size(small, 5000))
    xs = share(x, n)
    correction = deal_comparison(prgs, b"m", "relu_with_mask", x.shape)
    parties = [
        ComparisonParty("relu_with_mask", i, n, [xs[i]], party_comparison(
            prgs[i], b"m", i, n, "relu_with_mask", x.shape, correction if i == n - 1 else None))
        for i in range(n)
    ]
    assert torch.equal(reconstruct(run_local(parties)), torch.relu(x))
    mask = reconstruct([p.outputs()[1] for p in parties])
    assert torch.equal(mask, (x > 0).to(torch.int64))  # x == 0 gives 0, as threshold_backward
    grad = torch.randint(-(1 << 40), 1 << 40, x.shape)
    assert torch.equal(grad * mask, torch.ops.aten.threshold_backward(grad, torch.relu(x), 0))
    assert COMPARISONS["relu"].outputs == 1 and COMPARISONS["relu_with_mask"].outputs == 2


@TREES
def test_relu_backward_threshold_semantics(prgs: list[Prg], small: bool) -> None:
    n = len(prgs)
    x = _values(_size(small, 20_000))
    grad = torch.randint(INT64_MIN, INT64_MAX, x.shape)
    z = reconstruct(run_local_relu_backward(share(grad, n), share(x, n), prgs, 7))
    expected = torch.ops.aten.threshold_backward(grad, x, 0)
    assert torch.equal(z, expected)
    zeros = x == 0
    assert bool(zeros.any()) and not bool(z[zeros].any())  # x == 0 gives 0
    assert int(z[x == INT64_MIN].abs().sum()) == 0  # where -x would overflow


def test_relu_backward_on_float_grads_through_torch(prgs2: list[Prg]) -> None:
    xf = torch.tensor([-1.0, 0.0, 0.5, 2.0, -0.001, 0.001], requires_grad=True)
    torch.relu(xf).backward(torch.full_like(xf, 3.0))
    x = (xf.detach() * 1000).round().to(torch.int64)
    grad = torch.full_like(x, 3000)
    z = reconstruct(run_local_relu_backward(share(grad, 2), share(x, 2), prgs2, 1))
    assert torch.equal(z, (xf.grad * 1000).round().to(torch.int64))


@TREES
@pytest.mark.parametrize("name", ["lt", "gt", "le", "ge", "eq"])
def test_binary_comparisons(prgs: list[Prg], name: str, small: bool) -> None:
    n, numel = len(prgs), _size(small, 5000)
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(-(1 << 61), 1 << 61, (numel,), generator=gen)
    y = torch.randint(-(1 << 61), 1 << 61, (numel,), generator=gen)
    y[:1000] = x[:1000]  # ties
    y[1000:1100] = x[1000:1100] + 1
    z = reconstruct(run_local_comparison(name, [share(x, n), share(y, n)], prgs, name))
    expected = {"lt": x < y, "gt": x > y, "le": x <= y, "ge": x >= y, "eq": x == y}[name]
    assert torch.equal(z, expected.to(torch.int64))


@pytest.mark.parametrize("name", sorted(COMPARISONS))
@pytest.mark.parametrize("shape", [(0,), (3, 0), ()])
def test_empty_and_scalar_tensors(prgs: list[Prg], name: str, shape: tuple[int, ...]) -> None:
    x = torch.full(shape, -7)
    inputs = [share(x, len(prgs)) for _ in range(COMPARISONS[name].arity)]
    outputs = run_local_comparison(name, inputs, prgs, name)
    assert reconstruct(outputs).shape == shape


def test_named_helpers_and_shapes(prgs2: list[Prg]) -> None:
    x = torch.randint(-100, 100, (4, 5, 6))
    y = torch.randint(-100, 100, (4, 5, 6))
    xs, ys = share(x, 2), share(y, 2)
    assert torch.equal(reconstruct(run_local_lt(xs, ys, prgs2, 1)), (x < y).long())
    assert torch.equal(reconstruct(run_local_gt(xs, ys, prgs2, 2)), (x > y).long())
    single = reconstruct(run_local_relu(share(torch.tensor([-5]), 2), prgs2, 3))
    assert single.tolist() == [0]
    scalar = reconstruct(run_local_ltz(share(torch.tensor(-5), 2), prgs2, 4))
    assert scalar.shape == () and scalar.item() == 1


@pytest.mark.parametrize("name", sorted(COMPARISONS))
@pytest.mark.parametrize("numel", [1, 13, 64, RADIX_FOUR_MAX, RADIX_FOUR_MAX + 13])
def test_message_sizes_match_transcript(prgs2: list[Prg], name: str, numel: int) -> None:
    arity = COMPARISONS[name].arity
    inputs = [share(torch.randint(-9, 9, (numel,)), 2) for _ in range(arity)]
    transcript = Transcript()
    run_local_comparison(name, inputs, prgs2, name, transcript)
    sizes = [r[0].numel() * r[0].element_size() for r in transcript.rounds]
    assert sizes == comparison_message_bytes(name, numel)
    assert len(sizes) == comparison_rounds(numel) == (4 if numel <= RADIX_FOUR_MAX else 7)


def test_wrong_arity_is_rejected(prgs2: list[Prg]) -> None:
    xs = share(torch.tensor([1, 2]), 2)
    with pytest.raises(ValueError):
        run_local_comparison("lt", [xs], prgs2, 1)
    with pytest.raises(ValueError):
        run_local_comparison("sort", [xs], prgs2, 1)
