"""Provider material: dealer and party derivations agree, and never depend on secrets."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc import (
    Prg,
    deal_comparison,
    deal_triple,
    deal_truncation,
    party_comparison,
    party_triple,
    party_truncation,
    reconstruct,
    run_local_beaver,
    run_local_truncation,
    share,
    unsigned_floordiv,
)
from zsyft.mpc.beaver import BeaverParty
from zsyft.mpc.binary_tree import LEVEL_WIDTHS
from zsyft.mpc.bitops import permute_bits, split_halves
from zsyft.mpc.comparison_material import COMPARISONS, RADIX_FOUR_MAX
from zsyft.mpc.lookahead import LEVEL_GROUPS, level_plans
from zsyft.mpc.protocol import run_local
from zsyft.mpc.ring import INT64_MAX, top_bit


def _xor(shares: list[torch.Tensor]) -> torch.Tensor:
    out = shares[0].clone()
    for s in shares[1:]:
        out ^= s
    return out


def _sum(shares: list[torch.Tensor]) -> torch.Tensor:
    return reconstruct([s.to(torch.int64) for s in shares])


def test_triple_shares_reconstruct_to_a_product(prgs: list[Prg]) -> None:
    n = len(prgs)
    for kind, xs, ys, op in [
        ("mul", (4, 1), (1, 3), torch.mul),
        ("matmul", (2, 4, 5), (5, 3), torch.matmul),
    ]:
        corr = deal_triple(prgs, kind, kind, xs, ys)
        triples = [
            party_triple(prgs[i], kind, i, n, kind, xs, ys, corr if i == n - 1 else None)
            for i in range(n)
        ]
        a = reconstruct([t.a for t in triples])
        b = reconstruct([t.b for t in triples])
        c = reconstruct([t.c for t in triples])
        assert torch.equal(c, op(a, b))
        assert torch.equal(triples[-1].c, corr)


@pytest.mark.parametrize("divisor", [1000, 1 << 16, 7])
def test_truncation_material_is_consistent(prgs: list[Prg], divisor: int) -> None:
    n, shape = len(prgs), (500,)
    corr = deal_truncation(prgs, 5, shape, divisor)
    assert corr.shape == (2, *shape)
    mats = [
        party_truncation(prgs[i], 5, i, n, shape, divisor, corr if i == n - 1 else None)
        for i in range(n)
    ]
    r = reconstruct([m.r for m in mats])
    assert torch.equal(reconstruct([m.r_div for m in mats]), unsigned_floordiv(r, divisor))
    assert torch.equal(reconstruct([m.r_top for m in mats]), top_bit(r))


@pytest.mark.parametrize("name", sorted(COMPARISONS))
@pytest.mark.parametrize("shape", [(3, 37), (RADIX_FOUR_MAX + 3,)], ids=["radix4", "binary"])
def test_comparison_material_is_consistent(
    prgs: list[Prg], name: str, shape: tuple[int, ...]
) -> None:
    n = len(prgs)
    corr = deal_comparison(prgs, b"cmp", name, shape)
    assert corr.dtype == torch.uint8 and corr.dim() == 1
    mats = [
        party_comparison(prgs[i], b"cmp", i, n, name, shape, corr if i == n - 1 else None)
        for i in range(n)
    ]
    r = reconstruct([m.r for m in mats])
    t = _xor([m.t_bit for m in mats]).to(torch.int64)
    assert set(t.tolist()) <= {0, 1}
    assert torch.equal(_sum([m.t for m in mats]), t)
    spec = COMPARISONS[name]
    if spec.multiply == "input":
        assert torch.equal(_sum([m.product for m in mats]), r * t)
    if spec.multiply == "other":
        mask = reconstruct([m.mask for m in mats])
        assert torch.equal(_sum([m.product for m in mats]), mask * t)
    trees = [m.tree for m in mats]
    if len(r) <= RADIX_FOUR_MAX:
        _check_radix_four(trees, r, spec.zero_test)
    else:
        _check_binary(trees, r, spec.zero_test)


def _check_radix_four(trees: list, r: torch.Tensor, zero_test: bool) -> None:
    chunk = ((r & INT64_MAX).reshape(-1, 1) >> torch.arange(0, 64, 4)) & 15  # top: 3 bits
    below = _xor([m.below for m in trees]).to(torch.int64) & 0xFFFF
    assert torch.equal(below, (1 << chunk) - 1)
    r63 = top_bit(r).to(torch.uint8)
    assert torch.equal(_xor([m.r63 for m in trees]), r63)
    for j, (groups, plan) in enumerate(zip(LEVEL_GROUPS, level_plans(zero_test), strict=True)):
        a = _xor([m.levels[j][0] for m in trees]).to(torch.int64)
        b = _xor([m.levels[j][1] for m in trees]).to(torch.int64)
        assert a.shape == b.shape == (len(r), groups) and int(a.max()) < 16 > int(b.max())
        bits = torch.cat([(a.unsqueeze(-1) >> torch.arange(4)) & 1,
                          (b.unsqueeze(-1) >> torch.arange(4)) & 1,
                          r63.view(-1, 1, 1).expand(-1, groups, 1)], dim=-1)  # by variable
        products = _xor([m.levels[j][2] for m in trees]).to(torch.int64)
        for k, subset in enumerate(plan.products):  # bit k: a product of masks
            assert torch.equal((products >> k) & 1, bits[..., list(subset)].amin(dim=-1))


def _check_binary(trees: list, r: torch.Tensor, zero_test: bool) -> None:
    bits = permute_bits(r)
    assert torch.equal(_xor([m.r_bits for m in trees]), bits)
    hi, lo = split_halves(bits & INT64_MAX, 64)
    assert torch.equal(_xor([m.r_pairs for m in trees]), hi & lo)
    for j, width in enumerate(LEVEL_WIDTHS):
        a, b, c_pg, c_pp = (_xor([m.levels[j][k] for m in trees]) if trees[0].levels[j][k]
                            is not None else None for k in range(4))
        a_hi, a_lo = split_halves(a, width)
        assert torch.equal(c_pg, a_hi & b)
        if c_pp is not None:
            assert torch.equal(c_pp, a_hi & a_lo)
    if zero_test:
        r63 = top_bit(bits).to(torch.uint8)
        z1, z2, z3 = (_xor([m.zero[k] for m in trees]) for k in range(3))
        a_hi, a_lo = split_halves(_xor([m.levels[-1][0] for m in trees]), LEVEL_WIDTHS[-1])
        assert torch.equal(z1, a_lo & r63)
        assert torch.equal(z2, a_hi & r63)
        assert torch.equal(z3, a_hi & a_lo & r63)


def test_corrections_depend_only_on_seeds_op_id_and_shapes(prgs2: list[Prg]) -> None:
    # The deal_* functions take no data at all; their output is reproducible from the
    # public metadata and the seeds, and fresh for every op id.
    assert torch.equal(
        deal_triple(prgs2, 9, "mul", (8,), (8,)), deal_triple(prgs2, 9, "mul", (8,), (8,))
    )
    assert not torch.equal(
        deal_triple(prgs2, 9, "mul", (8,), (8,)), deal_triple(prgs2, 10, "mul", (8,), (8,))
    )
    assert torch.equal(deal_truncation(prgs2, 3, (8,), 1000), deal_truncation(prgs2, 3, (8,), 1000))
    assert torch.equal(
        deal_comparison(prgs2, 4, "relu", (8,)), deal_comparison(prgs2, 4, "relu", (8,))
    )
    assert not torch.equal(
        deal_comparison(prgs2, 4, "relu", (8,)), deal_comparison(prgs2, 5, "relu", (8,))
    )


def test_one_correction_serves_any_secret(prgs2: list[Prg]) -> None:
    """The same dealt correction yields correct results for unrelated secrets."""
    corr = deal_triple(prgs2, "op", "mul", (64,), (64,))
    triples = [
        party_triple(prgs2[i], "op", i, 2, "mul", (64,), (64,), corr if i else None)
        for i in range(2)
    ]
    for scale in (0, 1, 1 << 40):
        x, y = torch.randint(-1000, 1000, (64,)) * scale, torch.randint(-1000, 1000, (64,))
        xs, ys = share(x, 2), share(y, 2)
        parties = [BeaverParty("mul", i, 2, xs[i], ys[i], triples[i]) for i in range(2)]
        assert torch.equal(reconstruct(run_local(parties)), x * y)
    # And the dealer's output did not change with the secrets used above.
    assert torch.equal(corr, deal_triple(prgs2, "op", "mul", (64,), (64,)))


def test_local_drivers_use_the_same_material(prgs2: list[Prg]) -> None:
    x = torch.randint(-(1 << 40), 1 << 40, (16,))
    z = reconstruct(run_local_beaver("mul", share(x, 2), share(x, 2), prgs2, 1))
    assert torch.equal(z, x * x)
    z = reconstruct(run_local_truncation(share(x, 2), prgs2, 1, 1 << 16))
    assert ((z - (x >> 16)).abs() <= 1).all()


def test_correction_validation(prgs2: list[Prg]) -> None:
    corr = deal_triple(prgs2, 1, "mul", (4,), (4,))
    with pytest.raises(ValueError):
        party_triple(prgs2[1], 1, 1, 2, "mul", (4,), (4,))  # last party without correction
    with pytest.raises(ValueError):
        party_triple(prgs2[0], 1, 0, 2, "mul", (4,), (4,), corr)  # only the last party gets one
    with pytest.raises(ValueError):
        party_triple(prgs2[1], 1, 1, 2, "mul", (4,), (4,), corr[:3])
    corr_cmp = deal_comparison(prgs2, 1, "ltz", (10,))
    with pytest.raises(ValueError):
        party_comparison(prgs2[1], 1, 1, 2, "ltz", (10,), torch.cat([corr_cmp, corr_cmp[:1]]))
    with pytest.raises(ValueError):
        deal_triple(prgs2[:1], 1, "mul", (4,), (4,))
