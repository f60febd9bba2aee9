"""`FixedPrecisionTensor`: a float tensor to torch, an int64 fixed-point encoding inside.

Secure computation works on integers, so a real value `x` is held as `round(x * base**p)` in
int64 (the ring Z/2^64; `zsyft.mpc.encoding.FixedPointEncoder`). The wrapper reports the
original float dtype, so torch's autograd, `nn` and `optim` treat it as a float tensor, while
every aten op reaches `__torch_dispatch__` and runs on the encoding through the op table in
`zsyft.tensors.ops` (`fixed_arith` for arithmetic, `fixed_shape` for views and indexing).
Products are rescaled exactly (rounding integer division), and any result that would leave
the encoder's range raises `EncodingOverflowError` instead of wrapping around.

It is a local tensor: the step between a float tensor and a secret-shared one
(`x.fix_precision().share(bob, alice)`), and what `SharedTensor.get()` returns.

Printing follows PySyft: `(Wrapper)>FixedPrecisionTensor>tensor([...])` shows the encoded
integers (`AutogradTensor>` is inserted when autograd tracks the tensor);
`.float_precision()` shows the values.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from zsyft.errors import PointerUsageError, formatting_refused
from zsyft.mpc.encoding import FixedPointEncoder
from zsyft.mpc.ring import check_int64
from zsyft.remote.node import user_stacklevel
from zsyft.tensors._torch_compat import (
    WithoutOwnMemory,
    data_property,
    disabled_torch_function,
    make_wrapper_subclass,
)
from zsyft.tensors.ops import FIXED_OPS, UnsupportedOpError, is_plain
from zsyft.tensors.pointer import PointerTensor

NARROW_PRODUCTS = 1e4  # fix_precision() warns when products must stay smaller than this

__all__ = ["FixedPrecisionTensor", "fix_precision"]


class FixedPrecisionTensor(WithoutOwnMemory, torch.Tensor):
    """A float tensor stored as its fixed-point encoding `encoded` (int64) under `encoder`."""

    encoded: torch.Tensor
    encoder: FixedPointEncoder

    @staticmethod
    def __new__(
        cls,
        encoded: torch.Tensor,
        encoder: FixedPointEncoder,
        dtype: torch.dtype = torch.float32,
        requires_grad: bool = False,
    ) -> FixedPrecisionTensor:
        check_int64("encoded", encoded)
        if not dtype.is_floating_point:
            raise TypeError(f"a FixedPrecisionTensor presents a floating dtype, got {dtype}")
        tensor = make_wrapper_subclass(
            cls, encoded.shape, encoded.stride(), dtype, encoded.storage_offset(), requires_grad
        )
        tensor.encoded = encoded
        tensor.encoder = encoder
        return tensor

    __torch_function__ = disabled_torch_function

    def _adopt(self, value: Any) -> None:
        if not isinstance(value, FixedPrecisionTensor):
            raise TypeError(
                "the .data of a fixed-precision tensor can be set only to a fixed-precision "
                f"tensor, got {type(value).__name__}; encode the value with fix_precision()"
            )
        self.encoded, self.encoder = value.encoded, value.encoder

    data = data_property(_adopt)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # type: ignore[override]
        for kind in types:
            if issubclass(kind, PointerTensor):
                raise PointerUsageError(
                    f"{func.__name__} mixes a fixed-precision tensor with a pointer; .get() "
                    "the pointer first, or share() the fixed-precision tensor"
                )
            if not issubclass(kind, FixedPrecisionTensor):
                return NotImplemented  # e.g. a SharedTensor: its dispatch handles the op
        return FIXED_OPS.lookup(func)(func, args, kwargs or {})

    # -- PySyft's API -----------------------------------------------------------------------
    @property
    def base(self) -> int:
        return self.encoder.base

    @property
    def precision_fractional(self) -> int:
        return self.encoder.precision_fractional

    def memory_error(self, what: str) -> Exception:
        return TypeError(f"{what} on a fixed-precision tensor: call float_precision() first")

    def float_precision(self) -> torch.Tensor:
        """The decoded values as a plain tensor of this tensor's float dtype.

        Decoding is not differentiable: the result is a new tensor. For a leaf that requires
        grad (a parameter), it is a leaf that requires grad too, with the decoded `.grad`.
        """
        value = self.encoder.decode(self.encoded, self.dtype)
        if self.is_leaf and self.requires_grad:
            value.requires_grad_(True)
            grad = self.grad
            if isinstance(grad, FixedPrecisionTensor):
                value.grad = grad.float_precision()
            elif grad is not None:
                value.grad = grad
        return value

    float_prec = float_precision

    def fix_precision(self, *args: Any, **kwargs: Any) -> FixedPrecisionTensor:
        raise TypeError("this tensor already has fixed precision; float_precision() decodes it")

    fix_prec = fix_precision

    def share(
        self,
        *workers: Any,
        crypto_provider: Any = None,
        requires_grad: bool = False,
        **options: Any,
    ) -> torch.Tensor:
        """Secret-share the encoding among `workers` (see `zsyft.tensors.sharing.share`, which
        also takes PySyft's `protocol`, `field` and `dtype` options).

        `.get()` on the result gives a FixedPrecisionTensor back.
        """
        from zsyft.tensors.sharing import share

        return share(
            self, *workers, crypto_provider=crypto_provider, requires_grad=requires_grad,
            **options,
        )

    def send(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOpError(
            "sending a FixedPrecisionTensor is not supported; send the float tensor, or "
            "secret-share this one with share(bob, alice, crypto_provider=james)",
            op="send",
        )

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # type: ignore[override]
        autograd = "AutogradTensor>" if self.requires_grad else ""
        return f"(Wrapper)>{autograd}FixedPrecisionTensor>{self.encoded!r}"

    __str__ = __repr__
    __format__ = formatting_refused("call .float_precision() first to decode it")


def fix_precision(
    tensor: torch.Tensor, base: int = 10, precision_fractional: int = 3
) -> FixedPrecisionTensor:
    """Encode a plain tensor as `round(x * base**precision_fractional)` (PySyft's defaults).

    Floating tensors keep their dtype; integer and bool tensors are encoded as the default
    float dtype (so `torch.tensor([1, 2]).fix_precision()` is a float tensor). Values outside
    the encoder's range raise `EncodingOverflowError`. Encoding is not differentiable: the
    result is a new leaf that requires grad if `tensor` did.
    """
    if isinstance(tensor, FixedPrecisionTensor):
        raise TypeError("this tensor already has fixed precision; float_precision() decodes it")
    if isinstance(tensor, PointerTensor):
        raise PointerUsageError(
            "fix_precision() of a remote tensor is not supported yet; .get() it first"
        )
    if not is_plain(tensor):
        raise TypeError(f"fix_precision() needs a plain tensor, got {type(tensor).__name__}")
    encoder = FixedPointEncoder(base, precision_fractional)
    if encoder.max_product < NARROW_PRODUCTS:
        warnings.warn(
            f"with base={base}, precision_fractional={precision_fractional} a product of two "
            f"values wraps around (a wrong result, not an error) unless |x * y| < "
            f"{encoder.max_product:.3g}: choose a lower precision_fractional",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    dtype = tensor.dtype if tensor.is_floating_point() else torch.get_default_dtype()
    encoded = encoder.encode(tensor.detach())
    return FixedPrecisionTensor(encoded, encoder, dtype, requires_grad=tensor.requires_grad)

