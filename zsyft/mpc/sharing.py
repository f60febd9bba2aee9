"""Additive secret sharing in Z/2^64 and XOR sharing of 64-bit words.

A secret ``s`` is split among ``n >= 2`` parties as ``s = s_0 + ... + s_{n-1} (mod 2^64)``
with ``s_0 .. s_{n-2}`` fresh uniform values from the operating system's CSPRNG, so any
``n - 1`` shares are jointly uniform and independent of ``s`` (perfect secrecy).  XOR
sharing is the same construction in the group of 64-bit words under XOR; it is used for
bitwise (boolean) circuits such as secure comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .prg import random_tensor
from .ring import check_int64

__all__ = ["reconstruct", "reconstruct_xor", "share", "share_xor"]


def _check_parties(n_parties: int) -> None:
    if not isinstance(n_parties, int) or n_parties < 2:
        raise ValueError(f"secret sharing needs n_parties >= 2, got {n_parties!r}")


def _check_shares(shares: Sequence[torch.Tensor]) -> None:
    if len(shares) < 2:
        raise ValueError(f"reconstruction needs at least 2 shares, got {len(shares)}")
    for i, s in enumerate(shares):
        check_int64(f"shares[{i}]", s)
        if s.shape != shares[0].shape:
            raise ValueError(f"share shapes differ: {tuple(shares[0].shape)} vs {tuple(s.shape)}")


def share(secret: torch.Tensor, n_parties: int) -> list[torch.Tensor]:
    """Split an int64 tensor into ``n_parties`` additive shares modulo 2^64."""
    check_int64("secret", secret)
    _check_parties(n_parties)
    masks = random_tensor((n_parties - 1, *secret.shape))
    last = secret - masks.sum(dim=0)
    # Independent storage per share: a share may be serialized or sent on its own.
    return [*(m.clone() for m in masks.unbind(0)), last]


def reconstruct(shares: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum additive shares modulo 2^64."""
    _check_shares(shares)
    out = shares[0].clone()
    for s in shares[1:]:
        out += s
    return out


def share_xor(secret: torch.Tensor, n_parties: int) -> list[torch.Tensor]:
    """Split int64 words into ``n_parties`` XOR shares (bitwise secret sharing)."""
    check_int64("secret", secret)
    _check_parties(n_parties)
    masks = [m.clone() for m in random_tensor((n_parties - 1, *secret.shape)).unbind(0)]
    last = secret.clone()
    for m in masks:
        last ^= m
    return [*masks, last]


def reconstruct_xor(shares: Sequence[torch.Tensor]) -> torch.Tensor:
    """XOR together XOR shares of 64-bit words."""
    _check_shares(shares)
    out = shares[0].clone()
    for s in shares[1:]:
        out ^= s
    return out
