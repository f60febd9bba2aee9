"""Every private PyTorch API zsyft relies on, in one place, so a torch upgrade touches one file.

- `make_wrapper_subclass`: a tensor subclass instance with metadata but no storage.
- `restride_wrapper`: give such an instance new sizes and strides in place.
- `data_property`: a subclass's `.data`, whose assignment also takes over the payload.
- `unreferenced_base`: the base of a view when nothing but torch's view tracking holds it.
- `disabled_torch_function`: opts a subclass out of `__torch_function__` so every op reaches
  `__torch_dispatch__` with plain aten semantics (the recipe of torch's own subclasses).
- `tree_flatten`/`tree_map`/`tree_unflatten`: torch's pytree utilities.
- `OpOverload`/`OpOverloadPacket`: the types of `torch.ops.aten.add.Tensor` (one overload,
  what `__torch_dispatch__` receives) and `torch.ops.aten.add` (all its overloads), used by
  the op tables to register handlers.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

disabled_torch_function = torch._C._disabled_torch_function_impl
OpOverload = torch._ops.OpOverload
OpOverloadPacket = torch._ops.OpOverloadPacket

__all__ = [
    "OpOverload",
    "OpOverloadPacket",
    "data_property",
    "disabled_torch_function",
    "make_wrapper_subclass",
    "restride_wrapper",
    "return_aliases",
    "tree_flatten",
    "tree_map",
    "tree_unflatten",
    "unreferenced_base",
]


def make_wrapper_subclass(
    cls: type,
    shape: Any,
    stride: Any,
    dtype: torch.dtype,
    storage_offset: int = 0,
    requires_grad: bool = False,
) -> torch.Tensor:
    """An instance of `cls` that reports this metadata on the CPU device and owns no data."""
    return torch.Tensor._make_wrapper_subclass(
        cls,
        shape,
        strides=stride,
        storage_offset=storage_offset,
        dtype=dtype,
        device=_CPU,  # a device object: the string "cpu" is parsed on every call (~1 µs)
        requires_grad=requires_grad,
    )


def restride_wrapper(tensor: torch.Tensor, shape: Any, stride: Any, storage_offset: int) -> None:
    """Change a wrapper subclass instance's sizes, strides and offset, keeping the Python object
    (its attributes and autograd identity): what an in-place view op such as `t_` does to a
    real tensor. `.data =` copies the metadata of a stand-in wrapper, with the subclass's
    dispatch off so the stand-in (which has none of the subclass's attributes) is not handled."""
    with torch._C._DisableTorchDispatch():
        _TENSOR_DATA.__set__(tensor, make_wrapper_subclass(
            type(tensor), shape, stride, tensor.dtype, storage_offset, False
        ))


_CPU = torch.device("cpu")
_TENSOR_DATA = torch._C.TensorBase.data  # torch's own `.data` (a C getset descriptor)


def data_property(adopt: Any) -> property:
    """`.data` for a wrapper subclass. Reading it is torch's (a detached alias); torch's
    assignment copies only sizes and strides, which would leave the old payload (shares,
    encoding, remote reference) in place: `t.data = value` here first calls `adopt(t, value)`,
    which refuses a value of another kind (before anything changes) and takes over its payload,
    then copies the metadata."""

    def get(self: torch.Tensor) -> torch.Tensor:
        return _TENSOR_DATA.__get__(self)

    def set(self: torch.Tensor, value: Any) -> None:
        adopt(self, value)
        with torch._C._DisableTorchDispatch():
            _TENSOR_DATA.__set__(self, value)

    return property(get, set, doc="The tensor's data without autograd history (as in torch).")


def _base_references(view: torch.Tensor) -> int:
    base = view._base
    return sys.getrefcount(base)


class _Probe(torch.Tensor):
    """A bare wrapper subclass whose ops return new wrappers: calibrates `unreferenced_base`."""

    __torch_function__ = disabled_torch_function

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # type: ignore[override]
        src = args[0]
        meta = torch.empty_strided(src.shape, src.stride(), dtype=src.dtype, device="meta")
        out = func(meta, *args[1:], **(kwargs or {}))
        return make_wrapper_subclass(cls, out.shape, out.stride(), out.dtype,
                                     out.storage_offset())


@functools.cache
def _references_of_a_dropped_base() -> int:
    view = make_wrapper_subclass(_Probe, (4,), (1,), torch.float32).view(2, 2)
    return _base_references(view)  # the temporary is gone: only the view tracking holds it


def unreferenced_base(view: torch.Tensor) -> torch.Tensor | None:
    """`view._base` if no Python code holds it any more (it was a temporary, as in
    `(x + y).view(-1)`): torch keeps a view's base alive for autograd, so without this its
    resources would live as long as the view. Else None. The count is calibrated on a probe
    subclass, so it does not depend on interpreter details."""
    if view._base is None or _base_references(view) > _references_of_a_dropped_base():
        return None
    return view._base


@functools.cache
def return_aliases(func: torch._ops.OpOverload) -> tuple[int | None, ...]:
    """For each return of `func`, the index of the argument it writes into (in-place), or None."""
    schema = func._schema
    result: list[int | None] = []
    for ret in schema.returns:
        info = ret.alias_info
        index = None
        if info is not None and info.is_write:
            for i, arg in enumerate(schema.arguments):
                if arg.alias_info is not None and arg.alias_info.before_set == info.before_set:
                    index = i
                    break
        result.append(index)
    return tuple(result)


@functools.cache
def decomposes(func: torch._ops.OpOverload) -> bool:
    """Whether torch decomposes `func` into other ops before a tensor subclass sees it
    (CompositeImplicitAutograd: `reshape`, `linear`, `conv2d`, ...). Such an op reaches
    `__torch_dispatch__` only where autograd is off (`torch.inference_mode()`); then
    `func.decompose(...)` runs the same decomposition."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")


@functools.cache
def functional_of(func: torch._ops.OpOverload) -> tuple[torch._ops.OpOverload, str] | None:
    """For an `out=` overload with one output (`maximum.out`), the overload that returns its
    result instead (`maximum.default`) and the name of the out argument; else None."""
    outs = [a.name for a in func._schema.arguments if a.is_out]
    if len(outs) != 1:
        return None
    wanted = [(a.name, str(a.type)) for a in func._schema.arguments if not a.is_out]
    candidate = _returning_overload(func.overloadpacket, wanted)
    return None if candidate is None else (candidate, outs[0])


def _returning_overload(packet: Any, wanted: list[tuple[str, str]]) -> Any:
    """The overload of `packet` that takes exactly the arguments `wanted` (name, type) and
    writes into none of them, or None."""
    for name in packet.overloads():
        candidate = getattr(packet, name)
        schema = candidate._schema
        if not schema.is_mutable and [(a.name, str(a.type)) for a in schema.arguments] == wanted:
            return candidate
    return None


@functools.cache
def out_of_place_of(func: torch._ops.OpOverload) -> torch._ops.OpOverload | None:
    """For an in-place overload (`pow_.Scalar`), the overload of the op without the
    underscore that takes the same arguments and returns its result (`pow.Tensor_Scalar`);
    else None."""
    name = func.overloadpacket.__name__
    packet = getattr(torch.ops.aten, name[:-1], None) if name.endswith("_") else None
    if packet is None:
        return None
    return _returning_overload(packet, [(a.name, str(a.type)) for a in func._schema.arguments])


class WithoutOwnMemory:
    """Mixin of zsyft's wrapper tensors: their values live elsewhere (at a worker, with the
    parties, in an inner encoding), so they have no memory of their own to hand out. torch
    would hand out a null pointer and crash the process; these raise `memory_error` instead.
    """

    def memory_error(self, what: str) -> Exception:
        raise NotImplementedError

    def share_memory_(self) -> Any:
        raise self.memory_error("share_memory_()")

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.memory_error("DLPack export")

    def __dlpack_device__(self) -> Any:
        raise self.memory_error("DLPack export")

    def apply_(self, callable: Any) -> Any:
        raise self.memory_error("apply_()")
