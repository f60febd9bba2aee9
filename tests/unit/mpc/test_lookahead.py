"""A radix-4 lookahead level: the shares `combine` gives add up to the group formulas."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc.lookahead import combine, level_plan, masks_word, share_word

N = 4096


def _bit(word: torch.Tensor, k: int) -> torch.Tensor:
    return ((word >> k) & 1).to(torch.uint8)


def _xor_shares(
    value: torch.Tensor, parties: int, gen: torch.Generator, bits: int
) -> list[torch.Tensor]:
    shares = [torch.randint(0, 1 << bits, value.shape, generator=gen)
              for _ in range(parties - 1)]
    last = value.clone()
    for s in shares:
        last ^= s
    return [*shares, last]


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize(("propagate", "zero_test"), [(True, False), (False, False), (True, True)])
def test_combine_computes_the_group_of_four(parties: int, propagate: bool, zero_test: bool) -> None:
    gen = torch.Generator().manual_seed(parties)  # test data only
    p, g = (torch.randint(0, 16, (N,), generator=gen) for _ in range(2))
    a, b = (torch.randint(0, 16, (N,), generator=gen) for _ in range(2))
    r63 = torch.randint(0, 2, (N,), generator=gen)
    plan = level_plan(propagate, zero_test)
    products = plan.product_table[masks_word(a, b, r63 if zero_test else None)]
    opened = ((p ^ a) | ((g ^ b) << 4)).to(torch.uint8)
    mask_shares = _xor_shares(masks_word(a, b, r63 if zero_test else None), parties, gen, 9)
    product_shares = _xor_shares(products, parties, gen, len(plan.products))
    outputs = [
        combine(plan, opened, share_word(int(i == 0), mask_shares[i], product_shares[i]))
        for i in range(parties)
    ]
    got: dict[str, torch.Tensor] = {}
    for name in plan.outputs:
        got[name] = outputs[0][name].clone()
        for out in outputs[1:]:
            got[name] ^= out[name]
    P, G = [_bit(p, k) for k in range(4)], [_bit(g, k) for k in range(4)]
    expected = {
        "G": (P[3] & G[2]) ^ (P[3] & P[2] & G[1]) ^ (P[3] & P[2] & P[1] & G[0]),  # G3 aside
        "P": P[3] & P[2] & P[1] & P[0],
    }
    expected["Z"] = expected["P"] & r63.to(torch.uint8)
    assert plan.outputs == ("G", "P", "Z")[: 1 + propagate + zero_test]
    for name in plan.outputs:
        assert torch.equal(got[name], expected[name]), name
