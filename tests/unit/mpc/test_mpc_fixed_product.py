"""Fixed-point products as one op: Beaver product then truncation, two rounds, one correction."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc import FixedPointEncoder, Prg, Transcript, reconstruct, share
from zsyft.mpc.fixed_product import (
    deal_fixed_product,
    fixed_product_party,
    run_local_fixed_product,
)
from zsyft.mpc.truncation import truncation_error_bounds


@pytest.mark.parametrize("kind", ["mul", "matmul"])
def test_product_is_truncated_within_the_bounds(prgs: list[Prg], kind: str) -> None:
    enc = FixedPointEncoder()
    gen = torch.Generator().manual_seed(7)
    shape = (30, 30)
    xf = torch.rand(shape, generator=gen, dtype=torch.float64) * 200 - 100
    yf = torch.rand(shape, generator=gen, dtype=torch.float64) * 200 - 100
    x, y = enc.encode(xf), enc.encode(yf)
    exact = torch.mul(x, y) if kind == "mul" else torch.matmul(x, y)
    z = reconstruct(run_local_fixed_product(kind, share(x, len(prgs)), share(y, len(prgs)),
                                            prgs, b"fixed", enc.scale))
    err = z * enc.scale - exact
    lo, hi = truncation_error_bounds(enc.scale)
    assert int(err.min()) >= lo and int(err.max()) <= hi
    xd, yd = enc.decode(x, torch.float64), enc.decode(y, torch.float64)  # what was shared
    assert torch.allclose(enc.decode(z, torch.float64),
                          xd * yd if kind == "mul" else xd @ yd, atol=0.002)


def test_two_rounds_and_the_bytes_of_mul_plus_truncation(prgs2: list[Prg]) -> None:
    transcript = Transcript()
    x, y = torch.arange(100) * 1000, torch.arange(100) * 1000
    z = reconstruct(run_local_fixed_product("mul", share(x, 2), share(y, 2), prgs2, b"b", 1000,
                                            transcript))
    assert len(transcript.rounds) == 2
    assert transcript.bytes_sent(0) == 16 * 100 + 8 * 100
    assert (z - x * y // 1000).abs().max() <= 2
    correction = deal_fixed_product(prgs2, b"b", "mul", (100,), (100,), 1000)
    assert correction.numel() * 8 == 16 * 100  # (r_div, r_top) of r - a*b: no share of c


def test_last_party_waits_for_the_correction_only_to_finish_the_truncation(
    prgs2: list[Prg],
) -> None:
    x, y = torch.tensor([3000, -4000]), torch.tensor([5000, 6000])
    xs, ys = share(x, 2), share(y, 2)
    correction = deal_fixed_product(prgs2, b"late", "mul", (2,), (2,), 1000)
    asked: list[str] = []

    def arrives() -> torch.Tensor:
        asked.append("correction")
        return correction

    parties = [
        fixed_product_party(prgs2[i], b"late", i, 2, "mul", xs[i], ys[i], 1000,
                            arrives if i == 1 else None)
        for i in range(2)
    ]
    messages = [p.first_message() for p in parties]
    messages = [p.receive(messages) for p in parties]  # both second-round messages are out
    assert asked == [] and all(m is not None for m in messages)
    assert all(p.receive(messages) is None for p in parties)
    assert asked == ["correction"]
    z = reconstruct([p.output() for p in parties])
    assert (z - torch.tensor([15000, -24000])).abs().max() <= 2


def test_the_opened_truncation_value_does_not_carry_the_product_in_the_clear(
    prgs2: list[Prg],
) -> None:
    """The opened value is op(x, y) + 2^62 + r - op(a, b): without shares of c the mask must
    still hide the product (same x and y under two op ids give unrelated openings)."""
    x, y = torch.full((500,), 3000), torch.full((500,), 2000)
    opened = []
    for op_id in (b"o1", b"o2"):
        xs, ys = share(x, 2), share(y, 2)
        correction = deal_fixed_product(prgs2, op_id, "mul", (500,), (500,), 1000)
        parties = [fixed_product_party(prgs2[i], op_id, i, 2, "mul", xs[i], ys[i], 1000,
                                       correction if i == 1 else None) for i in range(2)]
        messages = [p.first_message() for p in parties]
        messages = [p.receive(messages) for p in parties]
        opened.append(messages[0] + messages[1])
        assert all(p.receive(messages) is None for p in parties)
        z = reconstruct([p.output() for p in parties])
        assert (z - 6000).abs().max() <= 2
    assert len(set(opened[0].tolist())) == 500  # looks uniform, not a constant product
    assert not bool((opened[0] == opened[1]).any())


def test_a_correction_of_the_wrong_length_is_refused(prgs2: list[Prg]) -> None:
    xs, ys = share(torch.tensor([1, 2]), 2), share(torch.tensor([3, 4]), 2)
    short = deal_fixed_product(prgs2, b"s", "mul", (2,), (2,), 1000)[:-1]
    parties = [
        fixed_product_party(prgs2[i], b"s", i, 2, "mul", xs[i], ys[i], 1000,
                            short if i == 1 else None)
        for i in range(2)
    ]
    messages = [p.first_message() for p in parties]
    messages = [p.receive(messages) for p in parties]
    parties[0].receive(messages)
    with pytest.raises(ValueError, match="shorter"):
        parties[1].receive(messages)
