"""Provider-assisted truncation: bounded error, no failures, any divisor."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc import (
    FixedPointEncoder,
    Prg,
    Transcript,
    reconstruct,
    run_local_truncation,
    share,
    truncation_constants,
    truncation_error_bounds,
    truncation_message_bytes,
)

LIMIT = 1 << 62


def _truncate(x: torch.Tensor, prgs: list[Prg], divisor: int, op_id: object = 1) -> torch.Tensor:
    return reconstruct(run_local_truncation(share(x, len(prgs)), prgs, op_id, divisor))


def _scaled_error(z: torch.Tensor, x: torch.Tensor, divisor: int) -> torch.Tensor:
    """``z * D - x`` exactly (no overflow: |z * D| is about |x| < 2^62)."""
    return z * divisor - x


@pytest.mark.parametrize("divisor", [1000, 1 << 16])
def test_million_elements_bounded_error_no_failures(prgs2: list[Prg], divisor: int) -> None:
    n = 1_000_000
    gen = torch.Generator().manual_seed(divisor)  # test data only; masks come from Prg
    # Magnitudes spread over all scales up to 2^60, both signs ...
    exponents = torch.randint(0, 61, (n // 2,), generator=gen)
    mantissa = torch.randint(0, 1 << 62, (n // 2,), generator=gen)
    spread = (mantissa >> (62 - exponents)) * (
        1 - 2 * torch.randint(0, 2, (n // 2,), generator=gen)
    )
    # ... and products of fixed-point values up to 1e4 at scale 1000 (about 2^47).
    enc = FixedPointEncoder()
    a = enc.encode(torch.rand(n // 2, generator=gen, dtype=torch.float64) * 2e4 - 1e4)
    b = enc.encode(torch.rand(n // 2, generator=gen, dtype=torch.float64) * 2e4 - 1e4)
    x = torch.cat([spread, a * b])
    z = _truncate(x, prgs2, divisor)
    err = _scaled_error(z, x, divisor)
    lo, hi = truncation_error_bounds(divisor)
    assert int(err.min()) >= lo and int(err.max()) <= hi
    assert -2 * divisor < lo and hi < 2 * divisor  # |z - x / D| < 2 units
    if divisor == 1 << 16:
        assert int(err.abs().max()) < divisor  # powers of two: error below 1 unit
    # The error is centred: its mean is within 2% of a unit of zero (a floor loses 0.5).
    assert abs(float(err.double().mean()) / divisor) < 0.02


@pytest.mark.parametrize("divisor", [1000, 1 << 16, 3, 1, 10**6])
def test_edge_values(prgs: list[Prg], divisor: int) -> None:
    edges = torch.tensor([0, 1, -1, LIMIT - 1, -LIMIT + divisor, divisor, -divisor, 12345, -12345])
    x = edges.repeat(2000)  # many independent masks per edge value
    z = _truncate(x, prgs, divisor, op_id=b"edge")
    lo, hi = truncation_error_bounds(divisor)
    err = _scaled_error(z, x, divisor)
    assert int(err.min()) >= lo and int(err.max()) <= hi
    if divisor == 1:
        assert torch.equal(z, x)


@pytest.mark.parametrize("divisor", [1000, 10**6, 3, 7, 1 << 16])
def test_rounding_is_centred_for_typical_values(prgs2: list[Prg], divisor: int) -> None:
    gen = torch.Generator().manual_seed(divisor)
    x = torch.randint(-(1 << 40), 1 << 40, (200_000,), generator=gen)
    mean = float(_scaled_error(_truncate(x, prgs2, divisor), x, divisor).double().mean())
    # within 1% of a unit (the centring is exact up to half a unit of x, i.e. 1/(2D))
    assert abs(mean / divisor) < 0.01 + 0.5 / divisor


def test_fixed_point_product_round_trip(prgs2: list[Prg]) -> None:
    enc = FixedPointEncoder()
    xf = torch.tensor([1.5, -2.25, 3.0, 1e4, -1e4, 0.001])
    yf = torch.tensor([2.0, 4.0, -0.5, 1e4, 1e4, 0.001])
    z = _truncate(enc.encode(xf) * enc.encode(yf), prgs2, enc.scale)
    assert torch.allclose(enc.decode(z, torch.float64), (xf * yf).double(), atol=2.5e-3)


def test_constants_and_bounds() -> None:
    q64, k, shift = truncation_constants(1000)
    assert q64 == (1 << 64) // 1000
    assert shift - k * 1000 == 154  # (2^64 mod 1000) / 4: cancels the wrap term's mean
    assert (1 << 62) - 1000 <= shift <= 1 << 62
    assert truncation_error_bounds(1000) == (-1461, 1153)
    assert truncation_constants(1 << 16) == (1 << 48, 1 << 46, 1 << 62)
    assert truncation_error_bounds(1 << 16) == (-(1 << 16) + 1, (1 << 16) - 1)
    for divisor in (3, 7, 1000, 10**6, 999_999_937, 1 << 40):
        lo, hi = truncation_error_bounds(divisor)
        assert -2 * divisor < lo <= 0 <= hi < 2 * divisor
    with pytest.raises(ValueError):
        truncation_constants(0)
    with pytest.raises(ValueError):
        truncation_constants(LIMIT + 1)


def test_one_round_eight_bytes(prgs2: list[Prg]) -> None:
    transcript = Transcript()
    x = torch.arange(-50, 50)
    run_local_truncation(share(x, 2), prgs2, 0, 1000, transcript)
    assert len(transcript.rounds) == 1
    assert transcript.bytes_sent(1) == truncation_message_bytes(100) == 800
