"""Fixed-point encoding of real tensors into Z/2^64.

Secret sharing works over integers, so a real value ``x`` is represented by the integer
``round(x * scale)`` with ``scale = base ** precision_fractional`` (PySyft's defaults are
base 10 with 3 fractional digits, i.e. a resolution of 0.001).  Negative values use the
two's-complement reading of the 64-bit pattern, which is exactly arithmetic modulo 2^64.

Encoded magnitudes are limited to 2^62: that leaves head-room for sums, and it is the
valid input range of the provider-assisted truncation that follows every fixed-point
multiplication.  Note that a product of two encoded values is scaled by ``scale**2`` and
must itself stay below 2^62 before truncation, i.e. ``|x * y| < 2^62 / scale**2`` (about
4.6e12 at the default scale).
"""

from __future__ import annotations

import math

import torch

from .ring import check_int64

__all__ = ["EncodingOverflowError", "FixedPointEncoder"]

_LIMIT = 1 << 62
FACTOR_BITS = 16
"""A public real factor (a learning rate, `x * 0.0004`) keeps this many significant bits."""
_MAX_FACTOR_DIVISOR = 1 << 50


class EncodingOverflowError(ValueError):
    """A value cannot be represented safely in the fixed-point ring encoding."""


class FixedPointEncoder:
    """Encode floats as ``round(x * base**precision_fractional)`` in int64 (Z/2^64).

    ``base`` may be any integer >= 2; base 2 gives binary fixed point (for example
    ``FixedPointEncoder(base=2, precision_fractional=16)``), whose truncation by a power of
    two is slightly more accurate than truncation by a power of ten.
    """

    def __init__(self, base: int = 10, precision_fractional: int = 3) -> None:
        if not isinstance(base, int) or base < 2:
            raise ValueError(f"base must be an integer >= 2, got {base!r}")
        if not isinstance(precision_fractional, int) or precision_fractional < 0:
            raise ValueError(
                f"precision_fractional must be a non-negative integer, got {precision_fractional!r}"
            )
        scale = base**precision_fractional
        if scale >= _LIMIT:
            raise ValueError(f"scale {base}**{precision_fractional} leaves no integer range")
        self.base = base
        self.precision_fractional = precision_fractional
        self.scale = scale

    def __repr__(self) -> str:
        return (
            f"FixedPointEncoder(base={self.base}, precision_fractional={self.precision_fractional})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FixedPointEncoder):
            return NotImplemented
        return (self.base, self.precision_fractional) == (other.base, other.precision_fractional)

    def __hash__(self) -> int:
        return hash((self.base, self.precision_fractional))

    def encode_factor(self, factor: float) -> tuple[int, int]:
        """A public real factor ``c`` as ``(C, D)``, ``C / D`` within a relative
        ``2^-FACTOR_BITS`` of ``c``: ``x * c`` is then ``round(X * C / D)`` (one truncation).

        ``D`` is the scale when ``c * scale`` is that close to an integer (``0.5``, ``0.01``
        at 3 digits), else ``scale * 2^k`` with the ``k`` that gives ``C`` enough bits: at the
        default precision ``lr = 0.0004`` would otherwise encode as 0 (no training at all)
        and ``0.0015`` as ``0.002``. The price is range: ``|X * C|`` must stay below 2^62.
        """
        if not math.isfinite(factor):
            raise self._overflow(f"the factor {factor!r}")
        scaled = factor * self.scale
        nearest = round(scaled)
        if abs(nearest - scaled) <= abs(scaled) * 2.0**-FACTOR_BITS:
            if abs(nearest) >= _LIMIT:
                raise self._overflow(f"the factor {factor!r}")
            return nearest, self.scale
        extra = 2 ** max(0, math.ceil(math.log2(2.0**FACTOR_BITS / abs(scaled))))
        if self.scale * extra > _MAX_FACTOR_DIVISOR:  # so small that x * c rounds to 0 anyway
            return nearest, self.scale
        return round(factor * self.scale * extra), self.scale * extra

    @property
    def max_product(self) -> float:
        """Largest magnitude of a product of two encoded values: ``|x * y| < 2^62 / scale^2``
        (the product of the encodings is scaled twice before its truncation)."""
        return _LIMIT / self.scale**2

    @property
    def max_magnitude(self) -> float:
        """Largest magnitude that can be encoded: values must satisfy ``|x| < 2^62 / scale``."""
        return _LIMIT / self.scale

    def _overflow(self, detail: str) -> EncodingOverflowError:
        return EncodingOverflowError(
            f"{detail}: fixed-point values must be finite with |x| < {self.max_magnitude:.6g} "
            f"(2^62 / {self.scale}) for base={self.base}, "
            f"precision_fractional={self.precision_fractional}; lower precision_fractional "
            "(or rescale the data) to encode larger values"
        )

    def encode(self, x: torch.Tensor | float | int) -> torch.Tensor:
        """Encode to ``torch.int64``, rounding to the nearest representable value.

        Raises :class:`EncodingOverflowError` for NaN, infinities and ``|x * scale| >= 2^62``.
        """
        x = torch.as_tensor(x)
        if x.dtype == torch.bool:
            x = x.to(torch.int64)
        if not x.is_floating_point() and not x.is_complex():
            # Integers are encoded exactly, without a detour through floating point.
            x = x.to(torch.int64)
            bound = (_LIMIT - 1) // self.scale
            if x.numel() and bool((x.abs() > bound).any() | (x == -(1 << 63)).any()):
                raise self._overflow("integer value out of range")
            return x * self.scale
        if x.is_complex():
            raise TypeError("complex tensors cannot be fixed-point encoded")
        scaled = torch.round(x.to(torch.float64) * self.scale)
        if scaled.numel():
            if not bool(torch.isfinite(scaled).all()):
                raise self._overflow("NaN or infinite value")
            worst = float(scaled.abs().max())
            if worst >= _LIMIT:
                raise self._overflow(f"value of magnitude {worst / self.scale:.6g}")
        return scaled.to(torch.int64)

    def decode(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Decode int64 fixed-point values to a floating tensor of ``dtype``.

        The integer and fractional parts are converted separately, so large values keep
        their full fractional resolution in float64.
        """
        check_int64("x", x)
        if not dtype.is_floating_point:
            raise TypeError(f"decode target must be a floating dtype, got {dtype}")
        whole = torch.div(x, self.scale, rounding_mode="floor")
        frac = x - whole * self.scale
        return (whole.to(torch.float64) + frac.to(torch.float64) / self.scale).to(dtype)
