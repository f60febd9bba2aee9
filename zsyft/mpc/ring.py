"""The ring Z/2^64 on ``torch.int64`` tensors.

Shares live in Z/2^64: a ``torch.int64`` tensor is read as its 64-bit pattern and
addition, subtraction and multiplication wrap around exactly like arithmetic modulo 2^64.
Some protocols also need the *unsigned* reading of a pattern (0 <= v < 2^64); torch has no
uint64 arithmetic, so this module provides the few unsigned operations they need.
"""

from __future__ import annotations

import torch

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "RING_BITS",
    "RING_SIZE",
    "check_int64",
    "top_bit",
    "unsigned_floordiv",
    "wrap",
]

RING_BITS = 64
RING_SIZE = 1 << RING_BITS
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def wrap(value: int) -> int:
    """The signed int64 representative of the Python integer ``value`` modulo 2^64."""
    value %= RING_SIZE
    return value - RING_SIZE if value > INT64_MAX else value


def check_int64(name: str, tensor: torch.Tensor) -> None:
    """Raise ``TypeError`` unless ``tensor`` is a ``torch.int64`` tensor."""
    if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.int64:
        got = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise TypeError(f"{name} must be a torch.int64 tensor, got {got}")


def top_bit(x: torch.Tensor) -> torch.Tensor:
    """Bit 63 of each 64-bit pattern, as an int64 tensor of 0/1."""
    return (x >> 63) & 1


def unsigned_floordiv(x: torch.Tensor, divisor: int) -> torch.Tensor:
    """``floor(u / divisor)`` where ``u`` in [0, 2^64) is the unsigned reading of ``x``.

    Valid for ``1 <= divisor < 2^63``.  Powers of two use a logical right shift.  Other
    divisors split ``u = top * 2^63 + m`` with ``m < 2^63`` and use
    ``2^63 = A * divisor + B``: then ``floor(u / divisor) = floor(m / divisor) +
    top * (A + [m mod divisor >= divisor - B])``, where every intermediate fits in int64.
    """
    if not 1 <= divisor <= INT64_MAX:
        raise ValueError(f"divisor must be in [1, 2^63), got {divisor}")
    if divisor & (divisor - 1) == 0:
        k = divisor.bit_length() - 1
        if k == 0:
            return x.clone()
        return (x >> k) & ((1 << (RING_BITS - k)) - 1)
    low = x & INT64_MAX
    q = torch.div(low, divisor, rounding_mode="floor")
    rem = low.sub_(q * divisor)
    a, b = divmod(1 << 63, divisor)
    # [rem >= divisor - b] + a, kept where top = 1: sign masks (x >> 63 is 0 or -1) instead
    # of comparisons and torch.where, which cost several times as much per element.
    extra = rem.sub_(divisor - b).bitwise_right_shift_(63).add_(1 + a)
    return q.add_(extra.bitwise_and_(x >> 63))
