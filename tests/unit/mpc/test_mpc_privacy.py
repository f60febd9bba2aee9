"""What parties see is uniform and independent of the secrets.

For each protocol, the values a party receives (the other parties' messages and the
opened sums) are tested byte by byte against the uniform distribution with a chi-square
statistic (255 degrees of freedom: mean 255, sd 22.6).  The threshold of 255 + 12 sd
is exceeded by chance with probability below 1e-20, so these tests cannot fail by chance;
the ``broken`` variants run the same protocols with the masks removed and show that the
statistic then explodes, i.e. the tests do detect a missing or partial mask.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from zsyft.mpc import (
    BeaverParty,
    BeaverTriple,
    ComparisonParty,
    Prg,
    Transcript,
    TruncationMaterial,
    TruncationParty,
    deal_comparison,
    deal_truncation,
    party_comparison,
    party_truncation,
    run_local,
    run_local_beaver,
    run_local_comparison,
    run_local_truncation,
    share,
)
from zsyft.mpc.comparison import comparison_rounds
from zsyft.mpc.comparison_material import RADIX_FOUR_MAX
from zsyft.mpc.fixed_product import run_local_fixed_product

N = 1 << 16
THRESHOLD = 255 + 12 * math.sqrt(2 * 255)
SECRETS = (0, 1 << 40)


def chi2_uniform(t: torch.Tensor) -> float:
    """Largest chi-square statistic of the byte histograms, one per byte position."""
    cols = t.contiguous().reshape(-1).view(torch.uint8).reshape(t.numel(), t.element_size())
    expected = cols.shape[0] / 256
    return max(
        float(((torch.bincount(cols[:, j].long(), minlength=256) - expected) ** 2).sum()) / expected
        for j in range(cols.shape[1])
    )


def chi2_two_sample(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest two-sample chi-square statistic between the byte histograms of a and b."""
    ca = a.contiguous().reshape(-1).view(torch.uint8).reshape(a.numel(), a.element_size())
    cb = b.contiguous().reshape(-1).view(torch.uint8).reshape(b.numel(), b.element_size())
    worst = 0.0
    for j in range(ca.shape[1]):
        ha = torch.bincount(ca[:, j].long(), minlength=256).double()
        hb = torch.bincount(cb[:, j].long(), minlength=256).double()
        seen = (ha + hb) > 0
        worst = max(worst, float(((ha - hb)[seen] ** 2 / (ha + hb)[seen]).sum()))
    return worst


def views(transcript: Transcript, arithmetic_rounds: set[int]) -> list[torch.Tensor]:
    """Per round: party 1's message (received by party 0) and the opened value."""
    out = []
    for r, msgs in enumerate(transcript.rounds):
        opened = msgs[0].clone()
        for m in msgs[1:]:
            if r in arithmetic_rounds:
                opened += m
            else:
                opened ^= m
        out += [msgs[1], opened]
    return out


def assert_uniform_and_secret_independent(per_secret: list[list[torch.Tensor]]) -> None:
    for seen in per_secret:
        for v in seen:
            assert chi2_uniform(v) < THRESHOLD
    for v0, v1 in zip(*per_secret, strict=True):
        assert chi2_two_sample(v0, v1) < THRESHOLD


def test_statistic_detects_missing_and_partial_masks() -> None:
    x = torch.full((N,), 1 << 40)
    mask = torch.randint(-(1 << 63), (1 << 63) - 1, (N,))  # test data, not a secret
    assert chi2_uniform(x) > 100 * THRESHOLD  # no mask
    assert chi2_uniform(x + (mask & ((1 << 56) - 1))) > 100 * THRESHOLD  # top byte unmasked
    assert chi2_uniform(x + (mask & ((1 << 63) - 1))) > 10 * THRESHOLD  # top bit unmasked
    assert chi2_uniform(x + mask) < THRESHOLD
    partial = mask & ((1 << 56) - 1)
    assert chi2_two_sample(partial + (1 << 60), partial) > 100 * THRESHOLD  # secret-dependent


def _beaver_views(prgs: list[Prg], secret: int, broken: bool = False) -> list[torch.Tensor]:
    x, y = torch.full((N,), secret), torch.full((N,), secret + 3)
    xs, ys, transcript = share(x, 2), share(y, 2), Transcript()
    if broken:
        zero = torch.zeros(N, dtype=torch.int64)
        triple = BeaverTriple(zero, zero, zero)
        run_local([BeaverParty("mul", i, 2, xs[i], ys[i], triple) for i in range(2)], transcript)
    else:
        run_local_beaver("mul", xs, ys, prgs, b"mul", transcript)
    return views(transcript, {0})


def test_beaver_openings(prgs2: list[Prg]) -> None:
    assert_uniform_and_secret_independent([_beaver_views(prgs2, s) for s in SECRETS])
    assert chi2_uniform(_beaver_views(prgs2, 1 << 40, broken=True)[1]) > THRESHOLD


def _truncation_views(prgs: list[Prg], secret: int, broken: bool = False) -> list[torch.Tensor]:
    xs, transcript = share(torch.full((N,), secret), 2), Transcript()
    if broken:
        corr = deal_truncation(prgs, 1, (N,), 1000)
        mats = [party_truncation(prgs[i], 1, i, 2, (N,), 1000, corr if i else None) for i in (0, 1)]
        mats = [TruncationMaterial(torch.zeros_like(m.r), m.r_div, m.r_top) for m in mats]
        parties = [TruncationParty(i, 2, xs[i], mats[i], 1000) for i in (0, 1)]
        run_local(parties, transcript)
    else:
        run_local_truncation(xs, prgs, b"trunc", 1000, transcript)
    return views(transcript, {0})


def test_truncation_opening(prgs2: list[Prg]) -> None:
    assert_uniform_and_secret_independent([_truncation_views(prgs2, s) for s in SECRETS])
    assert chi2_uniform(_truncation_views(prgs2, 1 << 40, broken=True)[1]) > THRESHOLD


def _fixed_product_views(prgs: list[Prg], secret: int) -> list[torch.Tensor]:
    x, y = torch.full((N,), secret), torch.full((N,), 3000)
    transcript = Transcript()
    run_local_fixed_product("mul", share(x, 2), share(y, 2), prgs, b"fixed", 1000, transcript)
    return views(transcript, {0, 1})


def test_fixed_product_openings(prgs2: list[Prg]) -> None:
    """The triple's c is folded into the truncation mask: the second opening must still be
    uniform, whatever the product."""
    assert_uniform_and_secret_independent([_fixed_product_views(prgs2, s) for s in SECRETS])


def _comparison_views(
    prgs: list[Prg], name: str, secret: int, numel: int
) -> list[torch.Tensor]:
    """Per round, the views of N elements compared in ops of ``numel`` elements (which
    picks the borrow tree)."""
    per_op = []
    for k in range(N // numel):
        inputs = [share(torch.full((numel,), secret), 2)]
        if name == "relu_backward":
            inputs.insert(0, share(torch.full((numel,), 7 * secret + 1), 2))
        transcript = Transcript()
        run_local_comparison(name, inputs, prgs, f"{name}.{k}", transcript)
        assert len(transcript.rounds) == comparison_rounds(numel)
        per_op.append(views(transcript, {0}))
    return [torch.cat(round_views) for round_views in zip(*per_op, strict=True)]


@pytest.mark.parametrize("numel", [RADIX_FOUR_MAX, N], ids=["radix4", "binary"])
def test_comparison_openings_all_rounds(prgs2: list[Prg], numel: int) -> None:
    for name in ("relu", "relu_with_mask", "relu_backward", "eqz"):
        assert_uniform_and_secret_independent(
            [_comparison_views(prgs2, name, s, numel) for s in SECRETS])


@pytest.mark.parametrize("numel", [RADIX_FOUR_MAX, N], ids=["radix4", "binary"])
def test_comparison_without_masks_is_detected(prgs2: list[Prg], numel: int) -> None:
    xs = share(torch.zeros(numel, dtype=torch.int64), 2)
    corr = deal_comparison(prgs2, 1, "relu", (numel,))
    mats = [party_comparison(prgs2[i], 1, i, 2, "relu", (numel,), corr if i else None)
            for i in (0, 1)]
    mats = [
        dataclasses.replace(
            m,
            r=torch.zeros_like(m.r),
            tree=dataclasses.replace(m.tree, levels=tuple(
                (torch.zeros_like(a), torch.zeros_like(b), *rest) for a, b, *rest in m.tree.levels
            )),
        )
        for m in mats
    ]
    transcript = Transcript()
    run_local([ComparisonParty("relu", i, 2, [xs[i]], mats[i]) for i in (0, 1)], transcript)
    opened = views(transcript, {0})[1::2]
    assert chi2_uniform(opened[0]) > THRESHOLD  # c = x without r
    assert chi2_uniform(opened[1]) > THRESHOLD  # first AND level without a, b
