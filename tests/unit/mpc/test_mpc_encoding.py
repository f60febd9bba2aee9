"""Fixed-point encoding."""

from __future__ import annotations

import math

import pytest
import torch

from zsyft.mpc import EncodingOverflowError, FixedPointEncoder


def test_defaults_match_pysyft() -> None:
    enc = FixedPointEncoder()
    assert (enc.base, enc.precision_fractional, enc.scale) == (10, 3, 1000)


def test_round_trip_and_rounding_to_nearest() -> None:
    enc = FixedPointEncoder()
    x = torch.tensor([0.0, 1.5, -2.25, 3.14159, -0.0004, 0.0006, 123456.789])
    encoded = enc.encode(x)
    assert encoded.dtype == torch.int64
    assert encoded.tolist() == [0, 1500, -2250, 3142, 0, 1, 123456789]
    decoded = enc.decode(encoded, dtype=torch.float64)
    assert torch.allclose(decoded, x.double(), atol=0.5e-3 + 1e-9)
    assert enc.decode(encoded).dtype == torch.float32


def test_base_two() -> None:
    enc = FixedPointEncoder(base=2, precision_fractional=16)
    assert enc.scale == 1 << 16
    x = torch.tensor([1.0, -0.5, 2.0**-16, 3.0 * 2.0**-17, 1000.125])
    assert enc.encode(x).tolist() == [65536, -32768, 1, 2, 65544192]  # 1.5 rounds to even
    assert torch.equal(enc.decode(enc.encode(x[:3]), torch.float64), x[:3].double())


def test_integer_inputs_are_exact() -> None:
    enc = FixedPointEncoder()
    big = ((1 << 62) - 1) // 1000  # largest integer with |big * 1000| < 2^62
    assert enc.encode(torch.tensor([3, -4, big])).tolist() == [3000, -4000, big * 1000]
    with pytest.raises(EncodingOverflowError):
        enc.encode(torch.tensor([big + 1]))


def test_decode_keeps_precision_of_large_values() -> None:
    enc = FixedPointEncoder()
    x = torch.tensor([(1 << 60) + 123, -(1 << 60) - 123])
    out = enc.decode(x, torch.float64)
    assert out[0].item() == pytest.approx(((1 << 60) + 123) / 1000, rel=1e-15)
    assert out[1].item() == pytest.approx(-((1 << 60) + 123) / 1000, rel=1e-15)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 4.7e15, -4.7e15])
def test_overflow_raises_with_actionable_message(bad: float) -> None:
    enc = FixedPointEncoder()
    with pytest.raises(EncodingOverflowError) as info:
        enc.encode(torch.tensor([1.0, bad]))
    message = str(info.value)
    assert "4.61169e+15" in message  # the maximal magnitude 2^62 / 1000
    assert "precision_fractional" in message
    assert isinstance(info.value, ValueError)


def test_limit_is_strict() -> None:
    enc = FixedPointEncoder(base=2, precision_fractional=0)
    assert enc.max_magnitude == 2.0**62
    enc.encode(torch.tensor([2.0**62 - 1024], dtype=torch.float64))
    with pytest.raises(EncodingOverflowError):
        enc.encode(torch.tensor([2.0**62], dtype=torch.float64))


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        FixedPointEncoder(base=1)
    with pytest.raises(ValueError):
        FixedPointEncoder(precision_fractional=-1)
    with pytest.raises(ValueError):
        FixedPointEncoder(base=2, precision_fractional=62)
    with pytest.raises(TypeError):
        FixedPointEncoder().decode(torch.tensor([1.0]))
