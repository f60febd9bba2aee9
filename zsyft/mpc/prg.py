"""Cryptographic randomness for secret sharing: fresh entropy and a seeded CSPRNG.

Every share, mask and piece of correlated randomness in ``zsyft.mpc`` comes from this
module; torch's default generator is never used for anything secret.

Two sources are offered:

* :func:`random_tensor` draws fresh operating-system entropy (``os.urandom``); it is used
  when a value must be unpredictable to everybody, e.g. the shares of a new secret.
* :class:`Prg` expands a 32-byte seed into as many bytes as needed, deterministically for a
  given ``(op_id, purpose)`` label.  The crypto provider hands each party one seed at setup;
  afterwards the provider and that party derive the same pseudo-random shares for every
  operation without any communication, so only a single correction tensor per operation
  has to travel (to the last party).

The expansion is SHAKE-128 used as a keyed extendable-output function: the absorbed input
is an unambiguous, length-prefixed encoding of a domain tag, the seed, the op id and the
purpose.  Distinct labels therefore give independent streams, and without the seed a
stream is indistinguishable from uniform (keyed SHAKE as a PRF, 128-bit security).
SHAKE-128 was chosen after measuring the hashlib candidates on 1-64 MiB outputs: about
420 MB/s for SHAKE-128, 360 MB/s for SHAKE-256 and 75 MB/s for BLAKE2b in counter mode
(one Python-level call per 64-byte block).  hashlib does not release the GIL while
squeezing, so streams are generated on the calling thread.

Scheme ``shake128+aes128ctr`` (the default where OpenSSL's libcrypto is usable,
:mod:`.aes_ctr`): a stream longer than :data:`AES_MIN_BYTES` is the AES-128-CTR keystream
under a 16-byte key and a 16-byte initial counter squeezed from the same keyed SHAKE, after
one more label component (so they are independent of every pure-SHAKE stream); shorter
streams stay SHAKE.  AES-CTR under a fresh pseudo-random key per label is a standard PRG
(128-bit security) and runs ~6x faster than SHAKE-128 here.  Both sides of a protocol must
use the same scheme: the crypto provider names its scheme with each party's seed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from collections.abc import Sequence

import torch

from . import aes_ctr

__all__ = ["AES_MIN_BYTES", "SCHEMES", "OpId", "Prg", "default_scheme", "fresh_seed",
           "random_tensor"]

OpId = int | bytes | str
"""Identifier of one operation; the provider and all parties must use the same value."""

SHAKE = "shake128"
SHAKE_AES = "shake128+aes128ctr"
SCHEMES = (SHAKE, SHAKE_AES)
AES_MIN_BYTES = 4096
"""Streams longer than this come from AES-128-CTR under scheme ``shake128+aes128ctr``."""
_AES_KEY_LABEL = b"aes128-ctr key and counter"

SEED_BYTES = 32
_MIN_SEED_BYTES = 16
_DOMAIN = b"zsyft.mpc.prg/shake128/v1"


def fresh_seed() -> bytes:
    """Return a new 32-byte seed drawn from the operating system's CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


def _encode(part: OpId) -> bytes:
    """Unambiguous, type-tagged and length-prefixed encoding of one label component."""
    if isinstance(part, bool):
        raise TypeError("labels must be int, bytes or str, not bool")
    if isinstance(part, int):
        if part < 0:
            raise ValueError(f"integer labels must be non-negative, got {part}")
        tag, body = b"i", part.to_bytes(max(1, (part.bit_length() + 7) // 8), "big")
    elif isinstance(part, (bytes, bytearray, memoryview)):
        tag, body = b"b", bytes(part)
    elif isinstance(part, str):
        tag, body = b"s", part.encode("utf-8")
    else:
        raise TypeError(f"labels must be int, bytes or str, got {type(part).__name__}")
    return tag + len(body).to_bytes(8, "big") + body


_encode_cached = functools.lru_cache(maxsize=4096, typed=True)(_encode)


def _label(part: OpId) -> bytes:
    """`_encode` for op ids and purposes, cached: an op's labels repeat for every stream."""
    try:
        return _encode_cached(part)
    except TypeError:  # unhashable (bytearray, memoryview), or not a label type at all
        return _encode(part)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for dim in shape:
        if dim < 0:
            raise ValueError(f"invalid shape {tuple(shape)}")
        n *= int(dim)
    return n


def _itemsize(dtype: torch.dtype) -> int:
    return dtype.itemsize


def _bytes_to_tensor(data: bytes, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    if not data:
        return torch.empty(tuple(int(d) for d in shape), dtype=dtype)
    # bytearray: a writable buffer owned by the tensor (bytes would be read-only).
    owned = data if isinstance(data, bytearray) else bytearray(data)
    flat = torch.frombuffer(owned, dtype=dtype)
    # A flat stream is already its 1-d shape; a view costs as much as the draw's hashing.
    return flat if len(shape) == 1 else flat.view(tuple(int(d) for d in shape))


def random_tensor(shape: Sequence[int], dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Fresh uniformly random tensor (every bit pattern equally likely) from ``os.urandom``."""
    nbytes = _numel(shape) * _itemsize(dtype)
    return _bytes_to_tensor(os.urandom(nbytes), shape, dtype)


def default_scheme() -> str:
    """The fastest scheme this process supports."""
    return SHAKE_AES if aes_ctr.available() else SHAKE


class Prg:
    """Seeded CSPRNG: a deterministic function of ``(seed, scheme, op_id, purpose)``.

    The seed is secret; it is never exposed by ``repr`` and not kept in readable form.
    """

    __slots__ = ("_aes", "_base", "scheme")

    def __init__(self, seed: bytes, scheme: str | None = None) -> None:
        if not isinstance(seed, (bytes, bytearray)):
            raise TypeError("seed must be bytes")
        if len(seed) < _MIN_SEED_BYTES:
            raise ValueError(f"seed must have at least {_MIN_SEED_BYTES} bytes")
        scheme = default_scheme() if scheme is None else scheme
        if scheme not in SCHEMES:
            raise ValueError(f"unknown PRG scheme {scheme!r}; known: {', '.join(SCHEMES)}")
        if scheme == SHAKE_AES and not aes_ctr.available():
            raise RuntimeError(
                f"PRG scheme {scheme!r} needs AES-128-CTR from OpenSSL's libcrypto, which this "
                f"process cannot load; run the crypto provider where it cannot either (it then "
                f"uses {SHAKE!r})"
            )
        base = hashlib.shake_128(_encode(_DOMAIN))
        base.update(_encode(bytes(seed)))
        self._base = base
        self._aes = scheme == SHAKE_AES
        self.scheme = scheme

    def __repr__(self) -> str:
        return f"Prg(<secret seed>, {self.scheme!r})"

    def random_bytes(self, op_id: OpId, purpose: str, nbytes: int) -> bytes | bytearray:
        """``nbytes`` pseudo-random bytes of the stream labelled ``(op_id, purpose)``."""
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        h = self._base.copy()
        h.update(_label(op_id))
        h.update(_label(purpose))
        if self._aes and nbytes > AES_MIN_BYTES:
            h.update(_label(_AES_KEY_LABEL))
            key_and_counter = h.digest(aes_ctr.KEY_BYTES + aes_ctr.IV_BYTES)
            return aes_ctr.keystream(key_and_counter[: aes_ctr.KEY_BYTES],
                                     key_and_counter[aes_ctr.KEY_BYTES :], nbytes)
        return h.digest(nbytes) if nbytes else b""

    def tensor(
        self,
        op_id: OpId,
        purpose: str,
        shape: Sequence[int],
        dtype: torch.dtype = torch.int64,
    ) -> torch.Tensor:
        """Tensor whose bit patterns are uniform over all values of ``dtype``."""
        nbytes = _numel(shape) * _itemsize(dtype)
        return _bytes_to_tensor(self.random_bytes(op_id, purpose, nbytes), shape, dtype)

    def int64(self, op_id: OpId, purpose: str, shape: Sequence[int]) -> torch.Tensor:
        """``torch.int64`` tensor uniform over all 2^64 values (an element of Z/2^64)."""
        return self.tensor(op_id, purpose, shape, torch.int64)
