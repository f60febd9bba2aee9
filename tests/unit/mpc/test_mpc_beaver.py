"""Beaver multiplication: exact ring products for mul (broadcasting) and matmul."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc import (
    BeaverParty,
    Prg,
    Transcript,
    beaver_message_bytes,
    deal_triple,
    party_triple,
    reconstruct,
    run_local,
    run_local_beaver,
    share,
)
from zsyft.mpc.ring import INT64_MAX, INT64_MIN


def _full_range(*shape: int) -> torch.Tensor:
    return torch.randint(INT64_MIN, INT64_MAX, shape)


@pytest.mark.parametrize(
    ("x_shape", "y_shape"),
    [((1,), (1,)), ((4, 5), (4, 5)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((), (6,))],
)
def test_mul_is_exact_in_the_ring(prgs: list[Prg], x_shape, y_shape) -> None:
    n = len(prgs)
    x, y = _full_range(*x_shape), _full_range(*y_shape)  # products wrap mod 2^64
    z = reconstruct(run_local_beaver("mul", share(x, n), share(y, n), prgs, "mul-op"))
    assert torch.equal(z, x * y)


@pytest.mark.parametrize(
    ("x_shape", "y_shape"),
    [
        ((5, 7), (7, 3)),
        ((2, 5, 7), (7, 3)),  # batched @ shared weight
        ((2, 5, 7), (2, 7, 3)),  # batched @ batched
        ((4, 1, 5, 7), (3, 7, 2)),  # broadcast batch dims
        ((7,), (7, 3)),
        ((5, 7), (7,)),
    ],
)
def test_matmul_is_exact_in_the_ring(prgs: list[Prg], x_shape, y_shape) -> None:
    n = len(prgs)
    x, y = _full_range(*x_shape), _full_range(*y_shape)
    z = reconstruct(run_local_beaver("matmul", share(x, n), share(y, n), prgs, 11))
    assert torch.equal(z, torch.matmul(x, y))


def test_last_party_masks_its_inputs_before_the_correction_arrives(prgs2: list[Prg]) -> None:
    x, y = torch.tensor([3, -4]), torch.tensor([5, 6])
    xs, ys = share(x, 2), share(y, 2)
    correction = deal_triple(prgs2, "deferred", "mul", (2,), (2,))
    asked: list[str] = []

    def arrives() -> torch.Tensor:
        asked.append("correction")
        return correction

    parties = [
        BeaverParty("mul", i, 2, xs[i], ys[i],
                    party_triple(prgs2[i], "deferred", i, 2, "mul", (2,), (2,),
                                 arrives if i == 1 else None))
        for i in range(2)
    ]
    messages = [p.first_message() for p in parties]
    assert asked == [], "round 1 needs only the seeded masks"
    for party in parties:
        assert party.receive(messages) is None
    assert asked == ["correction"]
    assert torch.equal(reconstruct([p.output() for p in parties]), x * y)


def test_fixed_point_values(prgs2: list[Prg]) -> None:
    x = torch.tensor([1500, -2250, 0, 1000])  # 1.5, -2.25, 0, 1 at scale 1000
    y = torch.tensor([2000, 4000, 7, -1000])
    z = reconstruct(run_local_beaver("mul", share(x, 2), share(y, 2), prgs2, 1))
    assert z.tolist() == [3_000_000, -9_000_000, 0, -1_000_000]


def test_step_functions_and_message_size(prgs2: list[Prg]) -> None:
    x, y = torch.randint(-100, 100, (3, 4)), torch.randint(-100, 100, (4, 2))
    xs, ys = share(x, 2), share(y, 2)
    corr = deal_triple(prgs2, b"op", "matmul", x.shape, y.shape)
    assert corr.shape == (3, 2) and corr.dtype == torch.int64
    parties = [
        BeaverParty(
            "matmul",
            i,
            2,
            xs[i],
            ys[i],
            party_triple(prgs2[i], b"op", i, 2, "matmul", x.shape, y.shape, corr if i else None),
        )
        for i in range(2)
    ]
    transcript = Transcript()
    z = reconstruct(run_local(parties, transcript))
    assert torch.equal(z, x @ y)
    assert len(transcript.rounds) == BeaverParty.rounds == 1
    assert transcript.bytes_sent(0) == beaver_message_bytes(x.shape, y.shape) == 8 * (12 + 8)


def test_shape_mismatch_and_unknown_kind(prgs2: list[Prg]) -> None:
    triple = party_triple(prgs2[0], 1, 0, 2, "mul", (3,), (3,))
    with pytest.raises(ValueError):
        BeaverParty("mul", 0, 2, torch.zeros(4, dtype=torch.int64), triple.b, triple)
    with pytest.raises(ValueError):
        deal_triple(prgs2, 1, "conv", (3,), (3,))
    with pytest.raises(ValueError):
        deal_triple(prgs2, 1, "matmul", (3, 4), (5, 2))
