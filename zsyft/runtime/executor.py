"""Run one allowlisted aten op on stored objects and store its results under client-chosen ids.

The executor resolves object ids (16-byte `bin`) in the arguments to stored objects, refuses
ops that are not on the allowlist before touching any argument, refuses ops whose outputs
would exceed the allocation cap (`allocation`, sized on meta tensors), calls the op, and stores each
tensor output under the id the client chose for it (`None` for outputs that alias an input,
such as in-place ops).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from zsyft.runtime.allocation import check_allocation, default_cap_bytes
from zsyft.runtime.allowlist import allowed_ops, refusal
from zsyft.runtime.store import Failed, ObjectStore
from zsyft.wire.messages import is_object_id

UNINITIALIZED_OPS = frozenset(
    ("empty_like.default", "new_empty.default", "new_empty_strided.default")
)
"""Ops whose output memory torch leaves uninitialized: it may hold what an earlier op (of any
client) freed, so the executor zeroes it before anyone can read it."""


class FailedInput(Exception):
    """An argument is the result of an earlier failed op; carries that op's error body."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "an earlier op failed"))
        self.error = error


def tensor_meta(value: Any) -> Any:
    """What a client needs to build a pointer to `value`: [shape, stride, dtype] or None."""
    if isinstance(value, torch.Tensor):
        return [list(value.shape), list(value.stride()), value.dtype]
    return None


def flatten_outputs(out: Any) -> list[Any]:
    """An op's result as a flat list: one element per returned tensor (or None)."""
    if isinstance(out, tuple | list):
        return list(out)
    return [out]


def as_inferred(outputs: list[Any], layouts: tuple) -> None:
    """Copy into the strides meta inference gives (`layouts`, see `allocation`) each new
    output whose strides differ from them. The client infers a result's metadata on meta
    tensors too, and torch's CPU kernels sometimes choose another memory format than their
    meta kernels (a convolution of a channels-last input): the pointer would describe
    another layout than the data's, so a `view` the client allows would fail here, and an
    `as_strided` would read other elements. Strides of size-1 dimensions do not matter."""
    if len(outputs) == 1:  # most ops: one tensor, whose strides are the inferred ones
        layout, out = layouts[0], outputs[0]
        if layout is None or not isinstance(out, torch.Tensor) or out.stride() == layout[1]:
            return
    tensors = [i for i, out in enumerate(outputs) if isinstance(out, torch.Tensor)]
    if len(tensors) != len(layouts):
        return
    for i, layout in zip(tensors, layouts, strict=True):
        out = outputs[i]
        if layout is None or out.layout is not torch.strided or out.shape != layout[0]:
            continue
        shape, stride = layout
        if any(a != b for n, a, b in zip(shape, out.stride(), stride, strict=True) if n > 1):
            outputs[i] = torch.empty_strided(shape, stride, dtype=out.dtype).copy_(out)


class Executor:
    """Runs commands against one store, with the worker's name for error messages."""

    def __init__(self, store: ObjectStore, worker: str) -> None:
        self.store = store
        self.worker = worker
        self.ops = allowed_ops()
        self.max_alloc_bytes = default_cap_bytes()  # per-op output cap, see `allocation`
        self._stored: list[Any] = []  # the stored objects the running command names
        # How an op on stored pointers runs (set by a worker with pointer support): it goes
        # where they point, without torch's dispatcher and without sizing it here.
        self.forward: Callable[[torch._ops.OpOverload, list, dict], Any] | None = None

    def lookup(self, op_name: Any) -> torch._ops.OpOverload:
        """The aten overload for a wire name; refuses anything not allowlisted."""
        op = self.ops.get(op_name) if isinstance(op_name, str) else None
        if op is None:
            raise refusal(op_name, self.worker)
        return op

    def resolve(self, value: Any) -> Any:
        """Replace every object id in `value` (lists and dicts included) by the stored object."""
        kind = type(value)
        if kind is int or kind is float or kind is bool or value is None:
            return value
        if isinstance(value, bytes):
            obj = self.store.get(value)
            if isinstance(obj, Failed):
                raise FailedInput(obj.error)
            self._stored.append(obj)
            return obj
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        return value

    def run(self, op_name: Any, args: Any, kwargs: Any, result_ids: Any) -> list[Any]:
        """Run the op and store its outputs; returns the flat list of outputs."""
        op = self.lookup(op_name)
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise TypeError("command arguments must be a list and keyword arguments a dict")
        if not all(isinstance(key, str) for key in kwargs):
            raise TypeError("keyword argument names must be strings")
        if not isinstance(result_ids, list):
            raise TypeError("result ids must be a list")
        self._stored = []
        try:
            args = [self.resolve(arg) for arg in args]
            kwargs = self.resolve(kwargs) if kwargs else kwargs
            forwarded = self._keep_stored_data_here(op_name)
        finally:
            self._stored = []  # holding them would keep deleted objects (and chains) alive
        if forwarded and self.forward is not None:
            outputs = flatten_outputs(self.forward(op, args, kwargs))
        else:
            layouts = check_allocation(op, args, kwargs, self.max_alloc_bytes, self.worker)
            outputs = flatten_outputs(op(*args, **kwargs))
            if layouts:
                as_inferred(outputs, layouts)
        if op_name in UNINITIALIZED_OPS:
            for output in outputs:
                output.zero_()
        for object_id, output in zip(result_ids, outputs, strict=False):
            if isinstance(output, torch.Tensor) and is_object_id(object_id):
                self.store.put(object_id, output)
        return outputs

    def _keep_stored_data_here(self, op_name: Any) -> bool:
        """Whether the op names a stored pointer (to another worker). Refuses one that
        combines a stored pointer with a tensor stored here: running it would send this
        worker's data along the pointer's chain, which nobody asked for (values that came
        with the command are the client's own)."""
        stored = self._stored
        pointers = any(type(v) is not torch.Tensor for v in stored)
        if pointers and any(type(v) is torch.Tensor for v in stored):
            raise TypeError(
                f"{op_name} mixes a pointer held at {self.worker} with data stored at "
                f"{self.worker}: the data would leave {self.worker} along the pointer's chain; "
                "move one of them to the other's worker first"
            )
        return pointers

    def fail(self, result_ids: Any, error: dict[str, Any]) -> None:
        """Mark the results of a failed command so later uses report the original error."""
        if not isinstance(result_ids, list):
            return
        for object_id in result_ids:
            if is_object_id(object_id) and object_id not in self.store:
                self.store.put(object_id, Failed(error))
