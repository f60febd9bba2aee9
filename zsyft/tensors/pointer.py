"""`PointerTensor`: a `torch.Tensor` that stands for a tensor stored at a worker.

The pointer carries only metadata (shape, stride, dtype) and a `RemoteRef` (location + id).
Because it is a wrapper subclass with `__torch_dispatch__`, torch's own autograd, `nn` and
`optim` run unchanged on top of it, and every aten op that reaches it becomes one command to
the worker (see `remote_ops`). The client never sees the data until `.get()`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from zsyft.errors import (
    PointerUsageError,
    RemoteError,
    WorkerUnavailableError,
    formatting_refused,
)
from zsyft.remote.node import LocalNode, local_node
from zsyft.remote.refs import RemoteRef, new_id
from zsyft.tensors._torch_compat import (
    WithoutOwnMemory,
    data_property,
    disabled_torch_function,
    make_wrapper_subclass,
    unreferenced_base,
)
from zsyft.wire.messages import Kind, id_number


def _run_remote(func: Any, args: tuple, kwargs: dict) -> Any:
    """`remote_ops.run_remote`, bound on first use (that module imports this one): an import
    statement in `__torch_dispatch__` would cost every op on a pointer ~0.5 µs."""
    global _run_remote
    from zsyft.tensors.remote_ops import run_remote

    _run_remote = run_remote
    return run_remote(func, args, kwargs)


class PointerTensor(WithoutOwnMemory, torch.Tensor):
    """A pointer to a tensor at `location` under `id_at_location`.

    Attributes follow PySyft: `location` (the worker handle), `id_at_location`, `id` (this
    pointer's own random id) and `owner` (the local node, "me").
    """

    ref: RemoteRef
    # (shape, stride, dtype, storage offset) as an op's metadata-cache key: reading them off a
    # wrapper subclass costs ~1.5 µs per op and argument. None until first used, and again
    # after anything of ours changes the metadata in place (`.data =`, `remote_ops._restrided`).
    meta_key: tuple | None

    @staticmethod
    def __new__(
        cls,
        ref: RemoteRef,
        shape: Any,
        stride: Any,
        dtype: torch.dtype,
        storage_offset: int = 0,
        requires_grad: bool = False,
    ) -> PointerTensor:
        tensor = make_wrapper_subclass(cls, shape, stride, dtype, storage_offset, requires_grad)
        tensor.ref = ref
        tensor.meta_key = None
        ref.hold(tensor)
        return tensor

    __torch_function__ = disabled_torch_function

    def _adopt(self, value: Any) -> None:
        if not isinstance(value, PointerTensor):
            raise TypeError(
                f"the .data of a pointer can be set only to a pointer, got "
                f"{type(value).__name__}; send the value first, e.g. value.send(bob)"
            )
        self.ref.drop(self)
        self.ref = value.ref
        self.ref.hold(self)
        self.meta_key = None  # the metadata is copied from `value` next

    data = data_property(_adopt)

    def _set_grad(self, value: Any) -> None:
        """A pointer's `.grad` is a pointer (or None): autograd accumulates into it at the
        worker, where a local tensor cannot be written."""
        if value is not None and not isinstance(value, PointerTensor):
            raise TypeError(
                f"the .grad of a pointer can be set only to a pointer or None, got "
                f"{type(value).__name__}; send the value first, e.g. value.send(bob)"
            )
        torch.Tensor.grad.__set__(self, value)

    grad = property(torch.Tensor.grad.__get__, _set_grad, torch.Tensor.grad.__delete__,
                    doc="The gradient: a pointer at this pointer's worker, or None.")

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # type: ignore[override]
        return _run_remote(func, args, kwargs or {})

    # -- PySyft's pointer attributes ------------------------------------------------------
    @property
    def location(self) -> Any:
        """The worker handle holding the data."""
        return self.ref.location

    @property
    def id_at_location(self) -> int:
        """The id of the data in the worker's store."""
        return id_number(self.ref.id)

    @property
    def id(self) -> int:
        """This pointer's own id (random 64-bit, allocated on first use; it names the pointer
        object, while the data is addressed by the 128-bit `id_at_location`)."""
        own = self.__dict__.get("_zsyft_id")
        if own is None:
            own = self.__dict__["_zsyft_id"] = id_number(new_id()[:8])
        return own

    @property
    def owner(self) -> LocalNode:
        """The node that owns this pointer: the local worker "me"."""
        return local_node()

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # type: ignore[override]
        return (
            f"(Wrapper)>[PointerTensor | {self.owner.id}:{self.id} -> "
            f"{self.location.id}:{self.id_at_location}]"
        )

    __str__ = __repr__
    __format__ = formatting_refused("call .get() first to bring the tensor back")

    # -- moving data ----------------------------------------------------------------------
    def get(self) -> torch.Tensor:
        """Bring the object back and delete it at the worker.

        With `requires_grad`, the returned tensor requires grad too, and a gradient computed
        remotely (`x.grad` is then a pointer) comes back as its `.grad`. If the worker held a
        pointer (a chain), that pointer comes back: `p2p.get().get()` walks the chain home.
        """
        from zsyft.tensors.fetching import get_many

        return get_many([self])[0]

    def _received(self, value: Any) -> torch.Tensor:
        """What `get()` returns for the fetched `value` (a tensor, or a pointer descriptor)."""
        from zsyft.tensors.transfer import import_pointer, is_descriptor

        if is_descriptor(value):
            value = import_pointer(self.owner, value)
        if not isinstance(value, torch.Tensor):
            raise PointerUsageError(f"the object at {self.location.id} is not a tensor: {value!r}")
        if self.requires_grad and value.is_floating_point():
            value.requires_grad_(True)
        grad = self.grad if self.is_leaf else None
        if isinstance(grad, PointerTensor):
            if not grad.ref.released:  # else the user already fetched it with x.grad.get()
                # Part of this get(), whose end raises the errors reported meanwhile.
                from zsyft.tensors.fetching import get_many

                raised = self.owner.raised_failures()
                try:
                    value.grad = get_many([grad], sync_point=False)[0]
                except RemoteError as error:
                    # The backward that made it failed: no gradient, as torch leaves none
                    # after a failed backward. Raised unless it was before this get()
                    # (model.get() run again after a failed training step); get() again
                    # returns the value.
                    self.grad = None
                    if getattr(error, "issued", None) not in raised:
                        raise
        elif grad is not None:
            value.grad = grad
        return value

    def send(self, worker: Any, *more: Any) -> PointerTensor:
        """Send this pointer to `worker`: the data stays where it is, `worker` now holds the
        pointer to it, and the returned pointer points at `worker` (a pointer chain)."""
        from zsyft.tensors.transfer import send

        refuse_several_workers(more)
        return send(self, worker, self.owner.id)

    def move(self, worker: Any) -> PointerTensor:
        """Move the data from its current worker straight to `worker` (not through here).

        The old copy is deleted and the returned pointer points at `worker`, its `.grad` moved
        along. A leaf pointer (data sent with `send()`, a parameter) is that pointer itself,
        changed in place as in PySyft: `x.move(alice)` and `x = x.move(alice)` both leave `x`
        at alice. A tensor an op made under autograd (an activation) moves as a copy that
        stays in the graph: its gradient comes back here (`zsyft.tensors.carry`). Moving to
        where the data already is changes nothing, and moving to the local worker is `get()`.
        A chain pointer's data comes from the chain's end, hop by hop, each hop's pointer
        deleted: `worker` then holds the data itself.
        """
        if isinstance(worker, LocalNode):
            return self.get()
        if self.location is worker:  # the data, or the start of a chain to it, is there
            for pointer in (self, self.grad):
                if isinstance(pointer, PointerTensor) and pointer.location is worker:
                    worker.request(Kind.REMOTE_GET, [pointer.ref.id, True])  # data: a no-op
            return self
        from zsyft.tensors.carry import carried, in_graph

        if in_graph(self):  # an activation (split learning): the graph follows, as with .to()
            return carried(self, worker)
        claims = [self.ref, *([self.grad.ref] if isinstance(self.grad, PointerTensor) else [])]
        moved = self.send(worker)  # the gradient too: a chain through `worker`, like the data
        try:
            for pointer in (moved, moved.grad):
                if isinstance(pointer, PointerTensor):  # every hop of a chain to the data
                    pointer.location.request(Kind.REMOTE_GET, [pointer.ref.id, True])
        except WorkerUnavailableError as exc:
            if exc.worker == worker.id:  # it never took the data: this pointer keeps it
                for claim in claims:
                    claim.reclaim()
            raise
        if not self.is_leaf:  # a view or a result outside autograd: a new pointer
            return moved
        self._adopt(moved)
        self.grad = moved.grad
        return self

    def remote_get(self) -> PointerTensor:
        """Make the worker this pointer points at fetch what its own pointer points at: one
        hop, as PySyft's `remote_get` (`mid_get`) does.

        For `p2p` (me -> alice -> bob): alice fetches the tensor from bob, bob deletes it, and
        alice now holds the tensor itself (its gradient too, if it has one). On a longer chain
        (me -> carol -> alice -> bob) carol then holds alice's pointer to bob; `move(carol)`
        brings the data itself to carol. Returns this pointer.
        """
        self.ref.check_live()
        self.location.request(Kind.REMOTE_GET, [self.ref.id])
        if (grad := self._remote_grad()) is not None:
            grad.remote_get()  # the gradient comes along, as with remote_send()
        return self

    def remote_send(self, worker: Any) -> PointerTensor:
        """Make the worker holding the data send it on to `worker`, keeping a pointer to it.

        For `x` (me -> bob): bob sends the tensor to alice and holds a pointer to it, so the chain
        becomes me -> bob -> alice; its gradient, if it has one, goes along the same way.
        Returns this pointer.
        """
        from zsyft.remote.handle import WorkerHandle
        from zsyft.remote.refs import new_id

        if not isinstance(worker, WorkerHandle):
            raise TypeError(
                f"remote_send() sends the data on to another worker, got "
                f"{type(worker).__name__}; to bring the data here, call .get()"
            )
        if worker is self.location:
            raise PointerUsageError(
                f"the data is already at {worker.id}; remote_send() to where it is would "
                "leave it a pointer to itself"
            )
        self.ref.check_live()
        self.location.request(Kind.REMOTE_SEND, [self.ref.id, worker.endpoint(), new_id()])
        self.location.node.forwarders.add(self.location)  # it holds a pointer now
        if (grad := self._remote_grad()) is not None:
            grad.remote_send(worker)  # the gradient goes along, as with send() and move()
        return self

    def _remote_grad(self) -> PointerTensor | None:
        """This leaf's gradient, if it is a pointer still in use (it follows the data)."""
        grad = self.grad if self.is_leaf else None
        if isinstance(grad, PointerTensor) and not grad.ref.released:
            return grad
        return None

    def backward(  # type: ignore[override]
        self, gradient: Any = None, retain_graph: Any = None, create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """`torch.Tensor.backward`; a local `gradient` is sent where this tensor is first. Else
        a gradient that does not depend on remote data (that of `x * 2`) would be computed
        here, and the remote leaf's `.grad` would be a local tensor."""
        if type(gradient) is torch.Tensor:
            gradient = gradient.send(self.location)
        super().backward(gradient, retain_graph, create_graph, inputs)

    def mid_get(self) -> PointerTensor:
        """PySyft's other name for `remote_get()`: the middle worker of a chain gets the data."""
        return self.remote_get()

    def new_tensor(  # type: ignore[override]
        self, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
        **_layout: Any,
    ) -> PointerTensor:
        """A new tensor from `data` where this one's data is, like `new_zeros` (in torch: on
        this tensor's device, with its dtype unless `dtype` is given). Made with a copy into
        a `new_empty` tensor, so that along a chain it lands at the chain's end too."""
        made = torch.as_tensor(data, dtype=dtype or self.dtype).detach().clone()
        with torch.no_grad():
            result = self.new_empty(made.shape, dtype=made.dtype).copy_(made)
        return result.requires_grad_(requires_grad)

    def new(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """torch's legacy constructor, where this tensor's data is: `x.new(2, 3)` (or a
        `torch.Size`) an uninitialized tensor (zeroed at the worker), `x.new([1., 2.])` one
        from data, `x.new()` an empty one. torch's own would build them here."""
        sizes = args[0] if len(args) == 1 and isinstance(args[0], torch.Size) else args
        if all(type(n) is int for n in sizes) and not (set(kwargs) - {"device"}):
            return self.new_empty(tuple(sizes) or (0,), device=kwargs.get("device"))
        if len(args) == 1 and isinstance(args[0], list | tuple) and not kwargs:
            return self.new_tensor(args[0])
        return super().new(*args, **kwargs)

    def copy(self) -> PointerTensor:
        """A pointer to a copy of the data, made at the same worker (PySyft's `ptr.copy()`)."""
        return self.clone()

    def __deepcopy__(self, memo: dict) -> PointerTensor:
        """`copy.deepcopy` (of a sent model too): a copy of the data at the same worker."""
        return deepcopy_by_clone(self, memo, internal=("ref", "_zsyft_id"))

    # -- refusing implicit data movement --------------------------------------------------
    def memory_error(self, what: str) -> Exception:
        return PointerUsageError(
            f"{what} needs the data here; this tensor is at {self.location.id}: call .get() "
            "to bring it here first"
        )

    def numpy(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise PointerUsageError(
            f"this tensor is at {self.location.id}; call .get() to bring it here first"
        )

    def tolist(self) -> Any:  # type: ignore[override]
        return self.numpy()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise PointerUsageError("pointers cannot be pickled; send the data with .get() first")


def refuse_several_workers(more: Sequence[Any]) -> None:
    """`send()` takes one worker: PySyft's `x.send(bob, alice)` (one pointer to copies at
    several workers) is refused with what to use instead."""
    if more:
        raise TypeError(
            "send() takes one worker; to split a tensor among several workers use "
            ".share(bob, alice, crypto_provider=james), or send a copy to each: "
            "x.send(bob), x.send(alice)"
        )


MAYBE_SAVED = "_zsyft_maybe_saved"  # an input of an op autograd recorded: it may keep it


def release_dropped_base(pointer: PointerTensor) -> None:
    """After `(x + y).view(-1).get()`, delete the temporary `x + y` at the worker too (as
    PySyft did when the temporary was dropped): torch keeps it alive as the view's `_base`.
    Only a base no code holds and autograd does not track: none that requires grad, none
    that was an input of an op autograd recorded (it may be saved for the backward, where
    Python cannot see it), and none whose remote object another pointer shares (`detach()`,
    `.data`); other views of it keep working, since each is its own object at the worker."""
    base = unreferenced_base(pointer)
    if (isinstance(base, PointerTensor) and not base.requires_grad
            and MAYBE_SAVED not in base.__dict__ and not base.ref.shared_beyond(base)):
        base.ref.release()


def deepcopy_by_clone(tensor: torch.Tensor, memo: dict, internal: Sequence[str]) -> Any:
    """`copy.deepcopy` of a zsyft tensor: `clone()` it where its data lives (the data never
    comes here), then deep-copy the Python attributes users and `nn` set on it (such as a
    parameter's marker), leaving out the `internal` ones the clone has of its own."""
    if id(tensor) in memo:
        return memo[id(tensor)]
    with torch.no_grad():
        result = tensor.clone()
    if tensor.requires_grad:
        result.requires_grad_(True)
    memo[id(tensor)] = result
    for name, value in tensor.__dict__.items():
        if name not in internal:
            setattr(result, name, copy.deepcopy(value, memo))
    if tensor.grad is not None:
        result.grad = copy.deepcopy(tensor.grad, memo)
    return result
