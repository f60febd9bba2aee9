"""The seeded CSPRNG and fresh randomness."""

from __future__ import annotations

import pytest
import torch

from zsyft.mpc import Prg, aes_ctr, fresh_seed, random_tensor
from zsyft.mpc.prg import AES_MIN_BYTES, SCHEMES, default_scheme


def test_deterministic_per_seed_and_label() -> None:
    seed = fresh_seed()
    a, b = Prg(seed), Prg(seed)
    assert torch.equal(a.int64(7, "triple.a", (3, 4)), b.int64(7, "triple.a", (3, 4)))
    assert a.random_bytes(b"op", "x", 100) == b.random_bytes(b"op", "x", 100)


def test_distinct_labels_and_seeds_give_distinct_streams() -> None:
    seed = fresh_seed()
    p = Prg(seed)
    base = p.int64(1, "a", (64,))
    assert not torch.equal(base, p.int64(2, "a", (64,)))
    assert not torch.equal(base, p.int64(1, "b", (64,)))
    assert not torch.equal(base, Prg(fresh_seed()).int64(1, "a", (64,)))
    # Type-tagged labels: the int 1, the bytes b"\x01" and the str "1" are different ops.
    assert p.random_bytes(1, "a", 32) != p.random_bytes(b"\x01", "a", 32)
    assert p.random_bytes(1, "a", 32) != p.random_bytes("1", "a", 32)


def test_prefix_consistency_across_lengths() -> None:
    p = Prg(fresh_seed())
    assert p.random_bytes(3, "x", 1000)[:16] == p.random_bytes(3, "x", 16)


def test_bits_are_balanced() -> None:
    words = Prg(fresh_seed()).int64(0, "bits", (1 << 16,))
    ones = torch.stack([((words >> k) & 1).sum() for k in range(64)])
    # Each bit position: Binomial(65536, 1/2), sd 128; 10 sd cannot happen by chance.
    assert int((ones - (1 << 15)).abs().max()) < 1280


def test_dtypes_shapes_and_empty() -> None:
    p = Prg(fresh_seed())
    assert p.tensor(0, "u8", (5, 3), torch.uint8).shape == (5, 3)
    assert p.tensor(0, "i32", (4,), torch.int32).dtype == torch.int32
    assert p.int64(0, "empty", (0, 3)).shape == (0, 3)
    assert p.int64(0, "scalar", ()).shape == ()
    t = random_tensor((2, 3))
    assert t.dtype == torch.int64 and t.shape == (2, 3)
    t += 1  # writable buffer
    assert random_tensor((0,)).numel() == 0


def test_fresh_randomness_differs() -> None:
    assert fresh_seed() != fresh_seed()
    assert len(fresh_seed()) == 32
    assert not torch.equal(random_tensor((16,)), random_tensor((16,)))


def test_seed_validation_and_secret_repr() -> None:
    with pytest.raises(ValueError):
        Prg(b"short")
    with pytest.raises(TypeError):
        Prg("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Prg(fresh_seed()).int64(-1, "a", (1,))
    seed = fresh_seed()
    assert seed.hex() not in repr(Prg(seed))


def test_aes_ctr_keystream_matches_the_standard() -> None:
    if not aes_ctr.available():
        pytest.skip("this Python's OpenSSL libcrypto cannot be loaded")
    # NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt): keystream = ciphertext XOR plaintext.
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plain = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    cipher = bytes.fromhex("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff")
    stream = aes_ctr.keystream(key, counter, 32)
    assert bytes(a ^ b for a, b in zip(stream, plain, strict=True)) == cipher
    with pytest.raises(ValueError, match="16-byte key"):
        aes_ctr.keystream(b"short", counter, 16)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_schemes_are_deterministic_and_long_streams_differ(scheme: str) -> None:
    if scheme != "shake128" and not aes_ctr.available():
        pytest.skip("this Python's OpenSSL libcrypto cannot be loaded")
    seed = fresh_seed()
    long = AES_MIN_BYTES + 8
    a, b, shake = Prg(seed, scheme), Prg(seed, scheme), Prg(seed, "shake128")
    assert a.scheme == scheme and scheme in repr(a) and seed.hex() not in repr(a)
    assert a.random_bytes(1, "x", long) == b.random_bytes(1, "x", long)
    assert a.random_bytes(1, "x", 64) == shake.random_bytes(1, "x", 64)  # short: SHAKE
    if scheme != "shake128":  # long: AES-CTR under a key squeezed from the label
        assert a.random_bytes(1, "x", long) != shake.random_bytes(1, "x", long)
        assert a.random_bytes(1, "x", long) != a.random_bytes(1, "y", long)
    words = a.int64(0, "bits", (1 << 16,))
    ones = torch.stack([((words >> k) & 1).sum() for k in range(64)])
    assert int((ones - (1 << 15)).abs().max()) < 1280  # balanced bits, as for SHAKE


def test_unknown_or_unavailable_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown PRG scheme 'rot13'"):
        Prg(fresh_seed(), "rot13")
    monkeypatch.setattr(aes_ctr, "available", lambda: False)
    assert default_scheme() == "shake128"
    with pytest.raises(RuntimeError, match="needs AES-128-CTR"):
        Prg(fresh_seed(), "shake128+aes128ctr")
