"""Bit-sliced word helpers for boolean (XOR-shared) circuits.

Boolean protocols in ``zsyft.mpc`` process one machine word per element and operate on all
of its bits at once with whole-word AND/XOR/shift.  A word of width W (64, 32, 16, 8, 4, 2
or 1 bits) is held in the smallest torch dtype that fits (int64, int32, int16, uint8) so
that messages and pseudo-random masks carry no wasted bytes for W >= 8; narrower words are
packed several per byte only on the wire.

:func:`permute_bits` applies the bit-reversal permutation to the bit *positions* of 64-bit
words (bit ``p`` moves to position ``rev6(p)``, where ``rev6`` reverses the six bits of the
index).  In that layout, significances ``2k`` and ``2k + 1`` sit in the low and the high
half of the word at the same offset, and the same holds recursively inside each half.  A
binary reduction over adjacent bit groups (carry lookahead) thus becomes "combine the high
half with the low half", and each level halves the word width.
"""

from __future__ import annotations

import sys

import torch

from .ring import wrap

__all__ = [
    "dtype_for_width",
    "from_byte_rows",
    "from_bytes",
    "packed_nbytes",
    "permute_bits",
    "split_halves",
    "to_byte_rows",
    "to_bytes",
    "width_mask",
]

_LO, _HI = (0, 1) if sys.byteorder == "little" else (1, 0)

_DTYPES = {64: torch.int64, 32: torch.int32, 16: torch.int16, 8: torch.uint8}
_VIEW_HALF = {64: torch.int32, 32: torch.int16, 16: torch.uint8}


def _delta_swap_mask(a: int, b: int) -> int:
    """Positions q with index bit a set and index bit b clear (the lower swap partners)."""
    return wrap(sum(1 << q for q in range(64) if (q >> a) & 1 and not (q >> b) & 1))


# Reversing six index bits = swapping index bits (0,5), (1,4) and (2,3).
_SWAPS = tuple(((1 << b) - (1 << a), _delta_swap_mask(a, b)) for a, b in ((0, 5), (1, 4), (2, 3)))


def _unpack_table(width: int) -> torch.Tensor:
    """Row b: the ``8 // width`` words packed in byte b, lowest bits first (uint8)."""
    per_byte = 8 // width
    byte = torch.arange(256, dtype=torch.int64).unsqueeze(1)
    shifts = torch.arange(per_byte, dtype=torch.int64) * width
    return ((byte >> shifts) & ((1 << width) - 1)).to(torch.uint8)


# Narrow words are packed and unpacked by table lookup and one weighted sum: a constant
# number of torch ops per call (per-column shifts cost eight ops for 1-bit words).
_UNPACK = {w: _unpack_table(w) for w in (1, 2, 4)}
_PACK_SHIFTS = {w: torch.arange(8 // w, dtype=torch.uint8) * w for w in (1, 2, 4)}


def dtype_for_width(width: int) -> torch.dtype:
    """Torch dtype holding a word of ``width`` bits (uint8 for widths below 8)."""
    if width not in (1, 2, 4, 8, 16, 32, 64):
        raise ValueError(f"unsupported word width {width}")
    return _DTYPES.get(width, torch.uint8)


def width_mask(width: int) -> int:
    """The integer with the low ``width`` bits set."""
    return (1 << width) - 1


def permute_bits(x: torch.Tensor) -> torch.Tensor:
    """Bit-reversal permutation of the bit positions of int64 words (an involution).

    Output bit ``p`` equals input bit ``rev6(p)``; bits 0 and 63 stay in place.
    """
    for delta, mask in _SWAPS:  # delta swap: exchange bit q with bit q + delta where mask
        t = x >> delta
        t ^= x
        t &= mask
        x = x ^ t
        t <<= delta
        x ^= t
    return x


def split_halves(x: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split flat words of ``width`` bits into (high half, low half) of ``width // 2`` bits.

    For widths >= 16 the halves are zero-copy views; they may be non-contiguous.
    """
    if width in _VIEW_HALF:
        pairs = x.contiguous().view(_VIEW_HALF[width]).view(-1, 2)
        return pairs[:, _HI], pairs[:, _LO]
    if width in (2, 4, 8):
        half = width // 2
        return x >> half, x & width_mask(half)
    raise ValueError(f"cannot split words of width {width}")


def packed_nbytes(numel: int, width: int) -> int:
    """Bytes taken on the wire by ``numel`` words of ``width`` bits."""
    if width >= 8:
        return numel * (width // 8)
    per_byte = 8 // width
    return -(-numel // per_byte)


def to_bytes(x: torch.Tensor, width: int) -> torch.Tensor:
    """Serialize flat words of ``width`` bits into a flat uint8 tensor (packed if < 8)."""
    if width >= 8:
        return x.contiguous().reshape(-1).view(torch.uint8)
    return to_byte_rows(x.reshape(1, -1), width).reshape(-1)


def to_byte_rows(x: torch.Tensor, width: int) -> torch.Tensor:
    """:func:`to_bytes` of each row of a 2-D tensor of words: ``(rows, packed bytes)``. Each
    row is packed on its own (narrow words never share a byte with the next row's)."""
    if width >= 8:
        return x.contiguous().view(torch.uint8)
    rows, per_byte = x.shape[0], 8 // width
    pad = (-x.shape[1]) % per_byte
    if pad:
        x = torch.cat([x, x.new_zeros(rows, pad)], dim=1)
    shifted = x.reshape(rows, x.shape[1] // per_byte, per_byte) << _PACK_SHIFTS[width]
    return shifted.sum(dim=2, dtype=torch.uint8)  # the words' bits do not overlap: sum is OR


def from_bytes(buf: torch.Tensor, width: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`to_bytes`: ``numel`` words of ``width`` bits from uint8 ``buf``."""
    if buf.numel() != packed_nbytes(numel, width):
        raise ValueError(
            f"expected {packed_nbytes(numel, width)} bytes for {numel} words of width "
            f"{width}, got {buf.numel()}"
        )
    if width >= 8:
        itemsize = width // 8
        if buf.storage_offset() % itemsize or not buf.is_contiguous():
            buf = buf.clone()
        return buf.view(_DTYPES[width])
    return _UNPACK[width].index_select(0, buf.to(torch.int32)).reshape(-1)[:numel]


def from_byte_rows(buf: torch.Tensor, width: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`to_byte_rows`: ``(rows, numel)`` words from ``(rows, packed bytes)``
    (contiguous uint8)."""
    if width >= 8:
        if buf.storage_offset() % (width // 8) or not buf.is_contiguous():
            buf = buf.clone()
        return buf.view(_DTYPES[width])
    rows, packed = buf.shape
    words = _UNPACK[width].index_select(0, buf.reshape(-1).to(torch.int32))
    return words.reshape(rows, packed * (8 // width))[:, :numel]
