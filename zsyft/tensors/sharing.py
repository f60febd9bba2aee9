"""`x.share(bob, alice, crypto_provider=james)`: a tensor split into random int64 shares,
one sent to each party, as a `SharedTensor`.

The shares are drawn here from a cryptographic RNG (`zsyft.mpc.sharing`) and each travels
to its party only: no worker ever holds the plaintext. PySyft 0.2's options are accepted
where they describe what zsyft does (`check_sharing_options`).
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.errors import PointerUsageError
from zsyft.mpc.encoding import FixedPointEncoder
from zsyft.mpc.sharing import share as split
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.node import local_node
from zsyft.tensors.fixed_precision import FixedPrecisionTensor
from zsyft.tensors.ops import is_plain
from zsyft.tensors.pointer import PointerTensor
from zsyft.tensors.shared import REVEAL_FIXED, REVEAL_PLAIN, SharedTensor
from zsyft.tensors.transfer import send

__all__ = ["check_sharing_options", "share"]


def _check_workers(workers: tuple[Any, ...], crypto_provider: Any) -> None:
    if len(workers) < 2:
        raise ValueError(
            f"secret sharing needs at least 2 workers, got {len(workers)}: "
            "x.share(bob, alice, crypto_provider=james)"
        )
    for worker in (*workers, *([crypto_provider] if crypto_provider is not None else [])):
        if not isinstance(worker, WorkerHandle):
            raise TypeError(
                f"share() expects workers such as sy.VirtualWorker(hook, id='bob'), "
                f"got {type(worker).__name__}"
            )
    for i, worker in enumerate(workers):
        if any(worker is other for other in workers[:i]):
            raise ValueError(f"{worker.id} is named twice: every party must be a different worker")
    if crypto_provider is not None and any(crypto_provider is w for w in workers):
        raise ValueError(
            f"the crypto provider {crypto_provider.id} must not be one of the parties"
        )


PYSYFT_PROTOCOLS = ("snn", "fss")
RING_SIZE = 2**64


def check_sharing_options(
    protocol: str | None = None, field: int | None = None, dtype: str | None = None
) -> None:
    """Accept PySyft 0.2's `share()` options that describe what zsyft does; refuse the rest.

    PySyft picks its comparison protocol with `protocol` ("snn": SecureNN, the default;
    "fss": function secret sharing) and its ring with `field`/`dtype` ("long": 2^64,
    "int": 2^32). zsyft shares in Z/2^64 and runs every comparison with its SecureNN-style
    protocol (`zsyft.mpc.comparison`) whichever name is given: the results are the same.
    """
    if protocol is not None and protocol not in PYSYFT_PROTOCOLS:
        raise ValueError(
            f"unknown sharing protocol {protocol!r}: use 'snn' or 'fss' (or leave it out); "
            "zsyft runs its SecureNN-style comparisons for both"
        )
    if field not in (None, RING_SIZE):
        raise ValueError(
            f"zsyft shares in the ring Z/2^64 only; field={field!r} is not supported "
            "(leave it out, or pass field=2**64)"
        )
    if dtype not in (None, "long"):
        raise ValueError(
            f"zsyft shares 64-bit integers only; dtype={dtype!r} is not supported "
            "(leave it out, or pass dtype='long')"
        )


def share(
    value: torch.Tensor,
    *workers: Any,
    crypto_provider: Any = None,
    requires_grad: bool = False,
    protocol: str | None = None,
    field: int | None = None,
    dtype: str | None = None,
) -> SharedTensor:
    """Secret-share `value` among `workers` (party i gets share i); see the module docstring.

    `value` is a FixedPrecisionTensor, or a plain tensor: a floating one is encoded with the
    default precision (base 10, 3 fractional digits) and an integer one exactly. With
    `requires_grad=True` the result is a leaf that autograd tracks. `protocol`, `field` and
    `dtype` are PySyft's options, accepted where they describe what zsyft does
    (`check_sharing_options`).
    """
    check_sharing_options(protocol, field, dtype)
    if isinstance(value, SharedTensor):
        raise TypeError("this tensor is already secret-shared")
    if isinstance(value, PointerTensor):
        raise PointerUsageError("share() of a remote tensor is not supported yet; .get() it first")
    _check_workers(workers, crypto_provider)
    if isinstance(value, FixedPrecisionTensor):
        encoder, encoded, shared_dtype = value.encoder, value.encoded, value.dtype
        reveal = REVEAL_FIXED
    elif is_plain(value):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{value.dtype} tensors cannot be secret-shared")
        integer = not value.is_floating_point()
        encoder = FixedPointEncoder(10, 0) if integer else FixedPointEncoder()
        encoded, shared_dtype = encoder.encode(value.detach()), value.dtype
        reveal = REVEAL_PLAIN
    else:
        raise TypeError(f"share() needs a tensor, got {type(value).__name__}")
    if requires_grad and not shared_dtype.is_floating_point:
        raise TypeError(
            "only floating tensors can require grad; fix_precision() an integer tensor first"
        )
    pointers = send_shares(encoded, workers)
    return SharedTensor(pointers, encoder, crypto_provider, shared_dtype, reveal, requires_grad)


def send_shares(encoded: torch.Tensor, workers: Any) -> list[PointerTensor]:
    """Split an int64 encoding into random shares here and send share i to party i."""
    owner = local_node().id
    pieces = split(encoded.contiguous(), len(workers))
    return [send(piece, worker, owner) for piece, worker in zip(pieces, workers, strict=True)]

