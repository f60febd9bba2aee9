"""AES-128 in counter mode from OpenSSL's libcrypto: the fast keystream behind large PRG outputs.

Python's ``hashlib`` is built on OpenSSL and has already loaded ``libcrypto``, but the standard
library exposes no cipher; this module binds the five EVP functions a keystream needs with
``ctypes``.  With AES-NI, OpenSSL's AES-128-CTR produces about 3.3 GB/s on one core of the
2-core machines zsyft is measured on, against about 0.5 GB/s for SHAKE-128 (measured with
1 MiB outputs): a 128x128 Beaver matmul draws nine 128 KiB streams at the provider.

Nothing here is secret-dependent in its control flow, and a missing or unusable libcrypto is
reported by :func:`available` (callers then stay on SHAKE-128) rather than failing at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any

__all__ = ["available", "keystream"]

KEY_BYTES = 16
IV_BYTES = 16


def _library_path() -> str | None:
    """Where libcrypto is: the copy hashlib loaded (Linux), else the linker's search."""
    import _hashlib  # noqa: F401  (loads libcrypto into this process)

    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    if "libcrypto" in line:
                        return line.split()[-1]
        except OSError:
            pass
    return ctypes.util.find_library("crypto")


@functools.cache
def _lib() -> Any:
    """The bound libcrypto, or None when it cannot be loaded or lacks AES-128-CTR."""
    path = _library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        lib.EVP_aes_128_ctr.restype = ctypes.c_void_p
        lib.EVP_EncryptInit_ex.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p
        ]
        lib.EVP_EncryptUpdate.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p,
            ctypes.c_int,
        ]
    except (OSError, AttributeError):
        return None
    # Known answer (FIPS-197 / SP 800-38A): AES-128 of the zero block under the zero key.
    try:
        ok = _run(lib, bytes(KEY_BYTES), bytes(IV_BYTES), 16).hex() == (
            "66e94bd4ef8a2c3b884cfa59ca342b2e"
        )
    except RuntimeError:
        ok = False
    return lib if ok else None


def available() -> bool:
    """Whether this process can produce AES-128-CTR keystreams."""
    return _lib() is not None


_CHUNK = 1 << 30  # EVP_EncryptUpdate takes an int length


def _run(lib: Any, key: bytes, iv: bytes, nbytes: int) -> bytearray:
    out = bytearray(nbytes)
    ctx = lib.EVP_CIPHER_CTX_new()
    if not ctx:
        raise RuntimeError("libcrypto could not allocate a cipher context")
    try:
        if lib.EVP_EncryptInit_ex(ctx, lib.EVP_aes_128_ctr(), None, key, iv) != 1:
            raise RuntimeError("libcrypto refused to set up AES-128-CTR")
        done = ctypes.c_int(0)
        for start in range(0, nbytes, _CHUNK):  # encrypt zeros in place: the keystream
            size = min(_CHUNK, nbytes - start)
            window = (ctypes.c_char * size).from_buffer(out, start)
            if lib.EVP_EncryptUpdate(ctx, window, ctypes.byref(done), window, size) != 1:
                raise RuntimeError("libcrypto failed to produce the keystream")
            if done.value != size:
                raise RuntimeError("libcrypto produced a short keystream")
    finally:
        lib.EVP_CIPHER_CTX_free(ctx)
    return out


def keystream(key: bytes, iv: bytes, nbytes: int) -> bytearray:
    """``nbytes`` of AES-128-CTR keystream for a 16-byte ``key`` and initial counter ``iv``."""
    if len(key) != KEY_BYTES or len(iv) != IV_BYTES:
        raise ValueError("AES-128-CTR needs a 16-byte key and a 16-byte counter block")
    lib = _lib()
    if lib is None:
        raise RuntimeError(
            "AES-128-CTR is not available: OpenSSL's libcrypto could not be loaded"
        )
    return _run(lib, key, iv, nbytes) if nbytes else bytearray()
