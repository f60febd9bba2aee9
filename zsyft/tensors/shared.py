"""`SharedTensor`: a value additively secret-shared in Z/2^64 among worker processes.

`x.fix_precision().share(bob, alice, crypto_provider=james)` (`zsyft.tensors.sharing`)
encodes `x` in fixed point, splits the int64 encoding into random shares with
`zsyft.mpc.sharing.share` (the OS's CSPRNG; any n-1 shares are uniform and independent of
the value) on this machine, and sends share i to party i. Each party then holds one int64
tensor that looks random; only the sum of all shares (mod 2^64) is the encoding. The client
keeps one `PointerTensor` per share.

To torch, a SharedTensor is a float tensor (the dtype that was shared), so autograd, `nn`
and `optim` run on top of it; every aten op reaches `__torch_dispatch__` and its op table
(`zsyft.tensors.ops.shared_linear` and `.shared_shape`):

- Linear ops run share by share *at each party*, as ordinary pipelined pointer commands, so
  no share passes through the client: shared ± shared, shared ± public (only party 0 adds
  the encoded public value), negation, sums, multiplication by a public integer, views,
  indexing, `cat`/`stack`, `clone`, constants such as `ones_like` (party 0 holds the
  encoded constant, the others zeros).
- Ops that need the crypto-provider protocols (a product of two shared values, `matmul`,
  multiplication by a fraction, division, `mean`, ReLU, comparisons) run them with the
  `crypto_provider` given to `share` (`ops.shared_protocols`); without one they raise an
  error saying to pass it. Ops with no protocol yet raise `ProtocolUnavailableError` or
  `UnsupportedOpError` naming the op.
- `bool(x)`, `x.item()` and friends would reveal the value: they raise `PointerUsageError`
  saying to call `.get()`, which reconstructs the value here and deletes the shares.

What `.get()` returns is what was shared: a FixedPrecisionTensor for
`x.fix_precision().share(...)`, a plain tensor of the original dtype for `x.share(...)` on
a plain tensor (PySyft 0.2 refused float tensors here; encoding them with the default
precision and decoding on `.get()` keeps `x.share(...).get()` equal to `x` up to the
precision, like `send`/`get`). Integer tensors are shared exactly (scale 1).

Shares are owned by their pointers: when the last SharedTensor (or view of it) using a share
is garbage-collected, the pointer's delete is queued and reaches the party with the next
message (`RemoteRef`); `.get()` fetches each share with delete.

`torch.optim.SGD`'s step is `param.add_(grad, alpha=-lr)`: with a non-integer `lr` this
multiplies a shared value by a fraction, which needs the provider-assisted truncation
(`ops.shared_protocols`). `optim.SGD(...).fix_precision()` switches plain SGD to torch's
multi-tensor step, whose one `_foreach_add_` truncates every parameter's scaled gradient in
one protocol op.
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.errors import PointerUsageError, formatting_refused
from zsyft.mpc.encoding import FixedPointEncoder
from zsyft.mpc.ring import check_int64
from zsyft.mpc.sharing import reconstruct
from zsyft.tensors._torch_compat import (
    WithoutOwnMemory,
    data_property,
    disabled_torch_function,
    make_wrapper_subclass,
)
from zsyft.tensors.fetching import get_many
from zsyft.tensors.fixed_precision import FixedPrecisionTensor
from zsyft.tensors.ops import SHARED_OPS, UnsupportedOpError
from zsyft.tensors.pointer import PointerTensor, deepcopy_by_clone

__all__ = ["REVEAL_FIXED", "REVEAL_PLAIN", "SharedTensor"]


def _align_party_order(args: Any) -> None:
    """Put the shares of every shared operand in the order of the first one's parties when
    they are the same workers in another order (`share(bob, alice)` with `share(alice,
    bob)`): a share's position only picks its party's role in a protocol, and the sum of the
    shares is the same in any order. Operands at other workers are left for the op to refuse."""
    first: list[Any] | None = None
    for arg in args:
        for item in arg if isinstance(arg, list | tuple) else (arg,):
            if not isinstance(item, SharedTensor):
                continue
            where = item.locations
            if first is None:
                first = where
            elif where != first and len(where) == len(first) and all(
                any(w is f for f in first) for w in where
            ):
                order = [next(i for i, w in enumerate(where) if w is f) for f in first]
                item.shares = [item.shares[i] for i in order]
                if item.positive_mask is not None:
                    item.positive_mask = [item.positive_mask[i] for i in order]
                if item.window_choice is not None:
                    item.window_choice = [item.window_choice[i] for i in order]


def _version(tensor: torch.Tensor) -> int | None:
    """torch's in-place version counter of `tensor` (None for inference tensors, which have
    none)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


REVEAL_FIXED = "fixed"  # .get() returns a FixedPrecisionTensor
REVEAL_PLAIN = "plain"  # .get() decodes to a plain tensor of the shared dtype


class SharedTensor(WithoutOwnMemory, torch.Tensor):
    """A fixed-point value secret-shared among `len(shares)` parties (party order = `shares`).

    `shares[i]` points at party i's int64 share, `encoder` is the fixed-point encoding,
    `crypto_provider` the worker that will deal correlated randomness (may be None).
    """

    shares: list[PointerTensor]
    encoder: FixedPointEncoder
    crypto_provider: Any
    reveal: str
    positive_mask: list[PointerTensor] | None = None
    """Shares of ``[value > 0]`` (0/1, unscaled) when the protocol that computed this tensor
    produced them: ReLU in training keeps them so its backward pass is one product."""
    window_choice: list[PointerTensor] | None = None
    """On the indices `max_pool2d` returns under autograd: shares of each window's one-hot
    choice (0/1, unscaled), so the backward pass is one product, not another tournament."""
    known: tuple[torch.Tensor, int] | None = None
    """For a shared *constant* (`ones_like`, and views of it), which this client built from
    public values only: its plaintext and the version it describes (`public_value`)."""

    @staticmethod
    def __new__(
        cls,
        shares: list[PointerTensor],
        encoder: FixedPointEncoder,
        crypto_provider: Any = None,
        dtype: torch.dtype = torch.float32,
        reveal: str = REVEAL_FIXED,
        requires_grad: bool = False,
    ) -> SharedTensor:
        if len(shares) < 2:
            raise ValueError(f"a SharedTensor needs at least 2 shares, got {len(shares)}")
        first = shares[0]
        for index, piece in enumerate(shares):
            if not isinstance(piece, PointerTensor):
                raise TypeError(f"shares[{index}] must be a PointerTensor")
            check_int64(f"shares[{index}]", piece)
            if piece.shape != first.shape:
                raise ValueError(
                    f"share shapes differ: {tuple(first.shape)} vs {tuple(piece.shape)}"
                )
        tensor = make_wrapper_subclass(
            cls, first.shape, first.stride(), dtype, first.storage_offset(), requires_grad
        )
        tensor.shares = list(shares)
        tensor.encoder = encoder
        tensor.crypto_provider = crypto_provider
        tensor.reveal = reveal
        return tensor

    __torch_function__ = disabled_torch_function

    def _adopt(self, value: Any) -> None:
        if not isinstance(value, SharedTensor):
            raise TypeError(
                f"the .data of a shared tensor can be set only to a shared tensor, got "
                f"{type(value).__name__}; share the value first, e.g. "
                "value.fix_precision().share(bob, alice, crypto_provider=james)"
            )
        self.shares = list(value.shares)
        self.encoder, self.crypto_provider = value.encoder, value.crypto_provider
        self.reveal, self.positive_mask = value.reveal, value.positive_mask
        self.window_choice, self.known = value.window_choice, None

    data = data_property(_adopt)  # `p.data = p.data - lr * p.grad` as in torch

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # type: ignore[override]
        for kind in types:
            if issubclass(kind, PointerTensor):
                raise PointerUsageError(
                    f"{func.__name__} mixes a shared tensor with a pointer; share() the "
                    "pointed-at value too (after .get()), or .get() the shared tensor"
                )
            if not issubclass(kind, SharedTensor | FixedPrecisionTensor):
                return NotImplemented
        handler = SHARED_OPS.lookup(func)
        _align_party_order(args)
        target = args[0] if args else None
        if isinstance(target, SharedTensor) and target.positive_mask is not None and (
            func._schema.is_mutable
        ):
            target.positive_mask = None  # its values change in place: the mask goes stale
        return handler(func, args, kwargs or {})

    # -- a shared constant's public value -----------------------------------------------------
    def public_value(self) -> torch.Tensor | None:
        """The plaintext of a shared constant that nothing has written into since, else None.

        Autograd starts `loss.backward()` from `ones_like(loss)`: a product with that
        gradient (or a view of it) needs no protocol, since the client knows its value. Any
        in-place op on this tensor or a view of it bumps torch's version counter, and the
        value no longer counts as known.
        """
        known = self.known
        if known is None or _version(self) != known[1]:
            return None
        return known[0]

    def set_public_value(self, value: torch.Tensor) -> SharedTensor:
        """Record `value` (a plain tensor of this shape) as this tensor's known plaintext."""
        version = _version(self)
        if version is not None and tuple(value.shape) == tuple(self.shape):
            self.known = (value, version)
        return self

    # -- attributes -------------------------------------------------------------------------
    @property
    def locations(self) -> list[Any]:
        """The parties' worker handles, in share order."""
        return [piece.location for piece in self.shares]

    @property
    def base(self) -> int:
        return self.encoder.base

    @property
    def precision_fractional(self) -> int:
        return self.encoder.precision_fractional

    # -- getting the value back -------------------------------------------------------------
    def get(self) -> torch.Tensor:
        """Fetch every share (deleting it at its party) and reconstruct the value here.

        Returns a FixedPrecisionTensor if a FixedPrecisionTensor was shared (so
        `x.get().float_precision()` is the plaintext), else a plain tensor of the shared
        dtype. A leaf that requires grad comes back as a leaf that requires grad, with its
        gradient fetched as `.grad`.
        """
        secret = reconstruct(get_many(self.shares))
        value = self._revealed(secret)
        if self.is_leaf and self.requires_grad:
            value.requires_grad_(True)
            grad = self.grad
            if isinstance(grad, SharedTensor):
                if not any(piece.ref.released for piece in grad.shares):  # not fetched yet
                    value.grad = grad.get()
            elif grad is not None:
                value.grad = grad
        return value

    def _revealed(self, secret: torch.Tensor) -> torch.Tensor:
        if self.reveal == REVEAL_FIXED:
            return FixedPrecisionTensor(secret, self.encoder, self.dtype)
        if self.dtype.is_floating_point:
            return self.encoder.decode(secret, self.dtype)
        return secret.to(self.dtype)

    def refresh(self) -> SharedTensor:
        """This value with fresh shares: a new random sharing of zero (made here, as for
        `share()`) added share by share, as PySyft's `refresh()` does. The parties' new shares
        are independent of their old ones; to autograd it is the identity."""
        from zsyft.tensors.sharing import send_shares

        zero = torch.zeros(self.shape, dtype=torch.int64)
        zeros = SharedTensor(
            send_shares(zero, self.locations), self.encoder, self.crypto_provider, self.dtype,
            self.reveal,
        )
        return self + zeros

    # -- refusing what does not apply -------------------------------------------------------
    def memory_error(self, what: str) -> Exception:
        return self._use_get(what)

    def _use_get(self, what: str) -> PointerUsageError:
        return PointerUsageError(
            f"{what} on a SharedTensor would need the secret value; call .get() first to "
            "reconstruct it here"
        )

    def float_precision(self) -> torch.Tensor:
        raise self._use_get("float_precision()")

    float_prec = float_precision

    def numpy(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise self._use_get("numpy()")

    def tolist(self) -> Any:  # type: ignore[override]
        raise self._use_get("tolist()")

    def fix_precision(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("this tensor is already shared (in fixed precision)")

    fix_prec = fix_precision

    def share(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("this tensor is already secret-shared; .get() it to share it again")

    def send(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOpError(
            "sending a SharedTensor is not supported: its shares already live at "
            + ", ".join(w.id for w in self.locations),
            op="send",
        )

    def move(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOpError(
            "moving a SharedTensor is not supported: its shares live at "
            + ", ".join(w.id for w in self.locations)
            + "; to share it among other workers, .get() it and .share(...) it again",
            op="move",
        )

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise PointerUsageError("shared tensors cannot be pickled; .get() the value first")

    def __deepcopy__(self, memo: dict) -> SharedTensor:
        """`copy.deepcopy` (of a shared model too): new shares of the same value, each party
        copying its own share."""
        return deepcopy_by_clone(
            self, memo, internal=("shares", "encoder", "crypto_provider", "reveal",
                                  "positive_mask", "window_choice", "known"),
        )

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # type: ignore[override]
        chain = "(Wrapper)>" + ("AutogradTensor>" if self.requires_grad else "")
        if self.reveal == REVEAL_FIXED:
            chain += "FixedPrecisionTensor>"
        lines = [chain + "[AdditiveSharingTensor]"]
        lines += [f"\t-> {piece!r}" for piece in self.shares]
        provider = self.crypto_provider
        lines.append(f"\t*crypto provider: {provider.id if provider is not None else None}*")
        return "\n".join(lines)

    __str__ = __repr__
    __format__ = formatting_refused("call .get().float_precision() first to reconstruct it here")
