"""Additive sharing in Z/2^64 and XOR sharing."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc import reconstruct, reconstruct_xor, share, share_xor
from zsyft.mpc.ring import INT64_MAX, INT64_MIN

EDGES = torch.tensor([0, 1, -1, INT64_MAX, INT64_MIN, 12345, -(1 << 62)])


@pytest.mark.parametrize("n_parties", [2, 3, 5])
def test_additive_round_trip_is_exact(n_parties: int) -> None:
    secret = torch.cat([EDGES, torch.randint(INT64_MIN, INT64_MAX, (994,))]).reshape(-1, 7)
    shares = share(secret, n_parties)
    assert len(shares) == n_parties
    assert all(s.shape == secret.shape and s.dtype == torch.int64 for s in shares)
    assert torch.equal(reconstruct(shares), secret)


@pytest.mark.parametrize("n_parties", [2, 3, 5])
def test_xor_round_trip_is_exact(n_parties: int) -> None:
    secret = torch.cat([EDGES, torch.randint(INT64_MIN, INT64_MAX, (500,))])
    shares = share_xor(secret, n_parties)
    assert torch.equal(reconstruct_xor(shares), secret)
    assert not torch.equal(reconstruct(shares), secret)  # XOR shares do not add up


def test_shares_are_fresh_and_hide_the_secret() -> None:
    secret = torch.zeros(256, dtype=torch.int64)
    first, second = share(secret, 2), share(secret, 2)
    assert not torch.equal(first[0], second[0])
    # A single share of an all-zero secret looks random, not zero.
    assert int((first[0] == 0).sum()) == 0
    assert int((share_xor(secret, 2)[0] == 0).sum()) == 0


def test_shares_have_independent_storage() -> None:
    shares = share(torch.zeros(4, dtype=torch.int64), 3)
    shares[0].zero_()
    assert int((shares[1] == 0).sum()) == 0


def test_scalar_and_empty() -> None:
    assert torch.equal(reconstruct(share(torch.tensor(-7), 2)), torch.tensor(-7))
    assert reconstruct(share(torch.zeros(0, 3, dtype=torch.int64), 2)).shape == (0, 3)


def test_validation() -> None:
    with pytest.raises(ValueError):
        share(torch.tensor([1]), 1)
    with pytest.raises(TypeError):
        share(torch.tensor([1.0]), 2)
    with pytest.raises(ValueError):
        reconstruct([torch.tensor([1])])
    with pytest.raises(ValueError):
        reconstruct([torch.tensor([1]), torch.tensor([1, 2])])
