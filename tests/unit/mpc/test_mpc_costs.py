"""Reported rounds and bytes agree with what the protocols actually send."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc import (
    COMPARISONS,
    Prg,
    Transcript,
    comparison_correction_bytes,
    deal_comparison,
    deal_triple,
    deal_truncation,
    protocol_cost,
    protocol_costs,
    run_local_beaver,
    run_local_comparison,
    run_local_truncation,
    share,
)
from zsyft.mpc.comparison_material import RADIX_FOUR_MAX

NUMEL = 64


def _per_element(transcript: Transcript) -> float:
    return transcript.bytes_sent(0) / NUMEL


def test_headline_numbers() -> None:
    assert (protocol_cost("mul").rounds, protocol_cost("mul").bytes_per_element) == (1, 16.0)
    assert protocol_cost("truncation").rounds == 1
    assert protocol_cost("fixed_mul").rounds == 2
    relu = protocol_cost("relu")
    assert (relu.rounds, relu.bytes_per_element) == (4, 13.125)
    assert relu.bytes_per_party(3) == 2 * 13.125
    assert protocol_cost("relu_backward").bytes_per_element == 21.125
    big = protocol_cost("relu", numel=100_000)  # the binary borrow tree
    assert (big.rounds, big.bytes_per_element) == (7, 19.75)
    assert protocol_cost("relu_backward", numel=100_000).bytes_per_element == 27.75
    with pytest.raises(ValueError):
        protocol_cost("sort")


def test_costs_match_transcripts(prgs2: list[Prg]) -> None:
    costs = protocol_costs()
    x = torch.randint(-100, 100, (NUMEL,))
    xs = share(x, 2)

    t = Transcript()
    run_local_beaver("mul", xs, xs, prgs2, 1, t)
    assert (len(t.rounds), _per_element(t)) == (costs["mul"].rounds, costs["mul"].bytes_per_element)
    assert deal_triple(prgs2, 1, "mul", (NUMEL,), (NUMEL,)).numel() * 8 / NUMEL == 8.0

    t = Transcript()
    run_local_truncation(xs, prgs2, 2, 1000, t)
    cost = costs["truncation"]
    assert (len(t.rounds), _per_element(t)) == (cost.rounds, cost.bytes_per_element)
    assert deal_truncation(prgs2, 2, (NUMEL,), 1000).numel() * 8 / NUMEL == 16.0



@pytest.mark.parametrize("numel", [NUMEL, RADIX_FOUR_MAX + NUMEL], ids=["radix4", "binary"])
def test_comparison_costs_match_transcripts(prgs2: list[Prg], numel: int) -> None:
    costs = protocol_costs(numel)
    xs = share(torch.randint(-100, 100, (numel,)), 2)
    for name, spec in COMPARISONS.items():
        t = Transcript()
        run_local_comparison(name, [xs] * spec.arity, prgs2, name, t)
        cost = costs[name]
        assert (len(t.rounds), t.bytes_sent(0) / numel) == (cost.rounds, cost.bytes_per_element)
        dealt = deal_comparison(prgs2, name, name, (numel,)).numel()
        assert dealt == comparison_correction_bytes(name, numel)
        assert dealt / numel == cost.provider_bytes_per_element


@pytest.mark.parametrize("numel", [1, 9, 1000, RADIX_FOUR_MAX, RADIX_FOUR_MAX + 9])
def test_correction_size_formula_for_any_length(prgs2: list[Prg], numel: int) -> None:
    for name in ("ltz", "relu", "relu_backward", "eq"):
        dealt = deal_comparison(prgs2, 0, name, (numel,)).numel()
        assert dealt == comparison_correction_bytes(name, numel)
