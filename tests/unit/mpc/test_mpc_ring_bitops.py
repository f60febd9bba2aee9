"""Z/2^64 helpers and bit-sliced word utilities."""

from __future__ import annotations

import random

import pytest
import torch

from zsyft.mpc.bitops import (
    dtype_for_width,
    from_bytes,
    packed_nbytes,
    permute_bits,
    split_halves,
    to_bytes,
)
from zsyft.mpc.ring import INT64_MAX, INT64_MIN, top_bit, unsigned_floordiv, wrap

EDGES = [0, 1, -1, 2, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1, 1 << 62, -(1 << 62)]


def _random_words(n: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return EDGES + [rng.getrandbits(64) - (1 << 63) for _ in range(n)]


@pytest.mark.parametrize("divisor", [1, 2, 3, 7, 1000, 1 << 16, 10**6, 999_999_937, 1 << 62])
def test_unsigned_floordiv_matches_python(divisor: int) -> None:
    values = _random_words(2000)
    got = unsigned_floordiv(torch.tensor(values), divisor).tolist()
    assert got == [wrap((v % (1 << 64)) // divisor) for v in values]


def test_unsigned_floordiv_rejects_bad_divisor() -> None:
    with pytest.raises(ValueError):
        unsigned_floordiv(torch.zeros(1, dtype=torch.int64), 0)


def test_wrap_and_top_bit() -> None:
    assert wrap(1 << 63) == INT64_MIN
    assert wrap(-1) == -1
    assert wrap((1 << 64) + 5) == 5
    assert top_bit(torch.tensor([0, -1, INT64_MIN, INT64_MAX])).tolist() == [0, 1, 1, 0]


def _rev6(p: int) -> int:
    return int(f"{p:06b}"[::-1], 2)


def test_permute_bits_is_the_bit_reversal_permutation() -> None:
    values = _random_words(300)
    got = permute_bits(torch.tensor(values)).tolist()
    for v, g in zip(values, got, strict=True):
        u = v % (1 << 64)
        expected = sum(((u >> _rev6(p)) & 1) << p for p in range(64))
        assert g % (1 << 64) == expected
    x = torch.tensor(values)
    assert torch.equal(permute_bits(permute_bits(x)), x)


@pytest.mark.parametrize("width", [64, 32, 16, 8, 4, 2])
def test_split_halves(width: int) -> None:
    half = width // 2
    values = [v % (1 << width) for v in _random_words(100)]
    if width == 64:
        x = torch.tensor([wrap(v) for v in values])
    else:
        x = torch.tensor(values).to(dtype_for_width(width))  # same bit patterns
    hi, lo = split_halves(x, width)
    assert hi.dtype == lo.dtype == dtype_for_width(half)
    mask = (1 << half) - 1
    assert [h & mask for h in hi.tolist()] == [v >> half for v in values]
    assert [v & mask for v in lo.tolist()] == [v & mask for v in values]


@pytest.mark.parametrize("width", [64, 32, 16, 8, 4, 2, 1])
@pytest.mark.parametrize("numel", [0, 1, 7, 8, 13, 1000])
def test_bytes_round_trip(width: int, numel: int) -> None:
    dt = dtype_for_width(width)
    words = torch.randint(0, 256, (numel * 8,), dtype=torch.uint8).view(torch.int64)[:numel]
    x = words.to(dt) if width >= 8 else (words & ((1 << width) - 1)).to(dt)
    buf = to_bytes(x, width)
    assert buf.dtype == torch.uint8 and buf.numel() == packed_nbytes(numel, width)
    assert torch.equal(from_bytes(buf, width, numel), x)
    # A misaligned slice (as received inside a larger message) still decodes.
    padded = torch.cat([torch.zeros(1, dtype=torch.uint8), buf])[1:]
    assert torch.equal(from_bytes(padded, width, numel), x)
    with pytest.raises(ValueError):
        from_bytes(torch.cat([buf, torch.zeros(1, dtype=torch.uint8)]), width, numel)


def test_packed_sizes() -> None:
    assert packed_nbytes(10, 64) == 80
    assert packed_nbytes(10, 1) == 2
    assert packed_nbytes(10, 2) == 3
    assert packed_nbytes(10, 4) == 5
