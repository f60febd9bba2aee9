"""How one aten op on pointers becomes one command to a worker.

1. Refuse ops that would reveal remote data implicitly (`item()`, `bool()`, `torch.equal`).
2. Check all pointer arguments live at the same worker.
3. Infer the outputs' shapes and dtypes by running the op on meta tensors, so result pointers
   exist at once and the command is pipelined (no reply awaited). Ops whose output shape
   depends on the data (`nonzero`, `unique`, boolean indexing) cannot be inferred: they run
   synchronously and the worker replies with the outputs' metadata.
4. Choose result ids, send `Command(op, args with refs, result ids)`, return result pointers.
   In-place ops return the pointer they wrote into; `detach`/`alias` make a new wrapper around
   the same remote object without any message.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from zsyft.errors import PointerUsageError
from zsyft.remote.node import callsite
from zsyft.remote.refs import RemoteRef
from zsyft.runtime.allowlist import allowed_ops, refusal
from zsyft.tensors._torch_compat import (
    decomposes,
    functional_of,
    restride_wrapper,
    return_aliases,
)
from zsyft.tensors.pointer import MAYBE_SAVED, PointerTensor

aten = torch.ops.aten

ALIAS_OPS = frozenset({aten.detach.default, aten.alias.default})
CHECKING_OPS = frozenset({aten._linalg_check_errors.default})
"""Ops that return nothing and raise depending on the data (`torch.linalg.cholesky` of a
matrix that is not positive-definite checks its result with one): run synchronously, so the
error is raised at the user's call and its result is never assigned, as in torch."""
REVEALING_OPS = frozenset(
    {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default,
     aten.allclose.default}
)


def _meta(value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    shape, stride, offset = value.shape, value.stride(), value.storage_offset()
    if offset == 0:
        return torch.empty_strided(shape, stride, dtype=value.dtype, device="meta")
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) if all(shape) else 0
    base = torch.empty(offset + extent, dtype=value.dtype, device="meta")
    return base.as_strided(shape, stride, offset)


def _map(fn: Any, obj: Any) -> Any:
    """Apply `fn` to every leaf of nested lists/tuples/dicts (aten arguments are shallow)."""
    if isinstance(obj, list | tuple):
        return [_map(fn, item) for item in obj]
    if isinstance(obj, dict):
        return {key: _map(fn, item) for key, item in obj.items()}
    return fn(obj)


def _prepare(obj: Any, key: list[Any], pointers: list[PointerTensor]) -> Any:
    """One pass over an argument: its wire form, its part of the metadata-cache key, and the
    pointers in it. Lists keep their boundaries in the key so different nestings differ."""
    kind = type(obj)
    if kind is int or kind is float or kind is bool or obj is None:
        key.append((kind, obj))  # 1, 1.0 and True are equal keys but promote differently
        return obj
    if isinstance(obj, PointerTensor):
        pointers.append(obj)
        meta = obj.meta_key
        if meta is None:
            meta = obj.meta_key = (obj.shape, obj.stride(), obj.dtype, obj.storage_offset())
        key.append(meta)
        return obj.ref.id
    if isinstance(obj, torch.Tensor):
        if obj.requires_grad and torch.is_grad_enabled():
            raise PointerUsageError(
                "an op mixes a pointer with a local tensor that requires grad (a parameter of "
                "a model that is still here?): its gradient would be a pointer at the worker "
                "and could not update it here; send it first (model.send(x.location)), or "
                "use it detached"
            )
        key.append((obj.shape, obj.stride(), obj.dtype, obj.storage_offset(), "local"))
        return obj
    if isinstance(obj, list | tuple):
        key.append(("[", len(obj)))
        return [_prepare(item, key, pointers) for item in obj]
    if isinstance(obj, dict):
        key.append(("{", len(obj)))
        wire = {}
        for name, item in obj.items():
            key.append(name)
            wire[name] = _prepare(item, key, pointers)
        return wire
    key.append((type(obj), obj))  # 1, 1.0 and True are equal keys but promote differently
    return obj


def _location_of(pointers: list[PointerTensor], op: str) -> Any:
    location = None
    for value in pointers:
        value.ref.check_live()
        where = value.ref.location
        if location is None:
            location = where
        elif where is not location and where.id == location.id:
            raise PointerUsageError(
                f"{op} mixes tensors at two different workers both named {where.id} (one "
                "re-created under the same name, say, by running sy.VirtualWorker(hook, "
                f"id={where.id!r}) again); send the tensor again to the worker you mean"
            )
        elif where is not location:
            raise PointerUsageError(
                f"{op} mixes tensors at {location.id} and {where.id}; move one to the "
                f"other first, e.g. y.move({location.id}){_optimizer_hint(op)}"
            )
    return location


def _into_out(functional: Any, out_name: str, args: tuple, kwargs: dict) -> Any:
    """An `out=` op (never run by a worker, see `allowlist`) as its functional op and a copy
    into `out` (`torch.maximum(a, b, out=a)` in Adam with amsgrad)."""
    out = kwargs[out_name]
    result = functional(*args, **{k: v for k, v in kwargs.items() if k != out_name})
    if result.shape != out.shape:
        raise PointerUsageError(
            f"{functional.__name__} with out= of shape {tuple(out.shape)} for a result of shape "
            f"{tuple(result.shape)}: a pointer's out= tensor must have the result's shape"
        )
    return out.copy_(result)


_OPTIM_DIR = os.path.dirname(torch.optim.__file__)


def _in_optimizer_step() -> bool:
    """Whether torch.optim code is on the stack (an optimizer's step issued the op)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(_OPTIM_DIR):
            return True
        frame = frame.f_back
    return False


def _optimizer_hint(op: str) -> str:
    """For an in-place op that an optimizer's step runs: where optimizer state lives."""
    if not op.split(".")[0].endswith("_") or not _in_optimizer_step():
        return ""
    return (" (in an optimizer's step: its state, such as momentum or Adam's moments, stays "
            "where it was made when the model moves; make a new optimizer after model.send() "
            "or model.get(), or one per worker)")


_REVEALED_BY = {
    "_local_scalar_dense": ("item(), float(), int() or bool() (an `if` on a pointer, or "
                            "indexing with a 0-dim pointer: index with p.reshape(1) instead)"),
    "is_nonzero": "bool() (an `if` on a pointer)",
    "equal": "torch.equal",
    "allclose": "torch.allclose",
}


def _revealing(func: Any) -> PointerUsageError:
    packet = func.__name__.split(".")[0]
    name = _REVEALED_BY.get(packet, packet.lstrip("_"))
    return PointerUsageError(
        f"{name} on a PointerTensor would copy remote data here implicitly; call .get() "
        "first to bring the tensor back (or keep computing remotely, e.g. (x == y).all())"
    )


SYNC = object()  # cache marker: the op's output shape depends on data
_META_CACHE: dict[Any, Any] = {}
META_CACHE_SIZE = 8192


def infer_outputs(func: Any, args: tuple, kwargs: dict, key: tuple) -> Any:
    """The op's outputs as meta tensors (cached by argument metadata), or `SYNC`."""
    try:
        cached = _META_CACHE.get(key)
    except TypeError:  # an unhashable argument: infer without the cache
        key, cached = None, None
    if cached is not None:
        return cached
    try:
        result = func(*_map(_meta, args), **_map(_meta, kwargs))
    except NotImplementedError:
        result = SYNC
    if key is not None:
        if len(_META_CACHE) >= META_CACHE_SIZE:
            _META_CACHE.clear()
        _META_CACHE[key] = result
    return result


def run_remote(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> Any:
    """Execute `func` where its pointer arguments live; returns pointers to the results."""
    if func in REVEALING_OPS:
        raise _revealing(func)
    op_name = func.__name__
    key: list[Any] = [func, len(args)]
    pointers: list[PointerTensor] = []
    wire_args = [_prepare(arg, key, pointers) for arg in args]
    wire_kwargs = _prepare(kwargs, key, pointers) if kwargs else {}
    location = _location_of(pointers, op_name)
    if op_name not in allowed_ops():  # refused now, before any pointer's metadata changes
        if decomposes(func):  # e.g. `linear` under inference_mode: run what it is made of
            return func.decompose(*args, **kwargs)
        if (functional := functional_of(func)) is not None:
            return _into_out(*functional, args, kwargs)
        raise refusal(op_name, location.id)
    if func in ALIAS_OPS:
        src = args[0]
        return PointerTensor(src.ref, src.shape, src.stride(), src.dtype, src.storage_offset())

    aliases = return_aliases(func)
    for index in aliases:
        if index is not None and not isinstance(args[index], PointerTensor):
            raise PointerUsageError(
                f"{op_name} would write remote data into a local tensor; call .get() first"
                f"{_optimizer_hint(op_name)}"
            )
    meta_out = SYNC if func in CHECKING_OPS else infer_outputs(func, args, kwargs, tuple(key))
    if meta_out is SYNC:
        return _run_synchronously(func, location, wire_args, wire_kwargs, aliases)

    outs = list(meta_out) if isinstance(meta_out, tuple | list) else [meta_out]
    results: list[Any] = []
    result_ids: list[bytes | None] = []
    for i, out in enumerate(outs):
        alias = aliases[i] if i < len(aliases) else None
        if alias is not None:
            results.append(_restrided(args[alias], out))
            result_ids.append(None)
        elif isinstance(out, torch.Tensor):
            ref = RemoteRef(location)
            results.append(
                PointerTensor(ref, out.shape, out.stride(), out.dtype, out.storage_offset())
            )
            result_ids.append(ref.id)
        else:
            results.append(out)
            result_ids.append(None)
    if torch.is_grad_enabled() and any(p.requires_grad for p in pointers):
        for pointer in pointers:  # autograd may save any of them for the backward
            pointer.__dict__[MAYBE_SAVED] = True
    where = callsite(3) if location.node.user_facing else None
    location.command(op_name, wire_args, wire_kwargs, result_ids, where)
    if isinstance(meta_out, tuple | list):
        return list(results) if isinstance(meta_out, list) else tuple(results)
    return results[0]


def _pointers_outside_autograd(args: tuple) -> bool:
    """Whether `args` hold a pointer and no tensor in them (lists too) requires grad."""
    found = False
    for arg in args:
        for item in arg if isinstance(arg, list | tuple) else (arg,):
            if isinstance(item, torch.Tensor):
                if item.requires_grad:
                    return False
                found = found or isinstance(item, PointerTensor)
    return found


def call_remote(func: torch._ops.OpOverload, *args: Any, **kwargs: Any) -> Any:
    """`func(*args, **kwargs)` on pointers that do not require grad (the shares of a secret),
    as one command: what torch would hand `PointerTensor.__torch_dispatch__`, without the
    round trip through torch's dispatcher, which costs the client about as much as the rest
    of a pipelined op. Ops torch decomposes before they reach a tensor subclass (composite
    ones, such as `reshape`) and pointers under autograd take torch's own way."""
    if decomposes(func) or not _pointers_outside_autograd(args):
        return func(*args, **kwargs)
    return run_remote(func, args, kwargs)


def _restrided(pointer: PointerTensor, meta: Any) -> PointerTensor:
    """`pointer`, with the shape and strides an in-place op gave its remote tensor (`t_`,
    `unsqueeze_`, `as_strided_`, ...); the Python object keeps its `ref` and autograd identity."""
    if isinstance(meta, torch.Tensor) and (
        meta.shape != pointer.shape
        or meta.stride() != pointer.stride()
        or meta.storage_offset() != pointer.storage_offset()
    ):
        restride_wrapper(pointer, meta.shape, meta.stride(), meta.storage_offset())
        pointer.meta_key = None
    return pointer


def _run_synchronously(
    func: torch._ops.OpOverload,
    location: Any,
    wire_args: Any,
    wire_kwargs: Any,
    aliases: list[int | None],
) -> Any:
    returns = func._schema.returns
    if any(isinstance(r.type, torch.ListType) for r in returns) or any(
        a is not None for a in aliases
    ):
        raise PointerUsageError(
            f"{func.__name__} has a result whose shape depends on the remote data and cannot "
            "run on a pointer; call .get() first"
        )
    refs = [RemoteRef(location) for _ in returns]
    metas = location.command_sync(
        func.__name__, wire_args, wire_kwargs, [r.id for r in refs], callsite(4)
    )
    results = []
    for ref, meta in zip(refs, metas, strict=False):
        if meta is None:
            ref.forget()
            results.append(None)
        else:
            shape, stride, dtype = meta
            results.append(PointerTensor(ref, shape, stride, dtype))
    if not returns:
        return None
    return results[0] if len(returns) == 1 else tuple(results)
