"""Moving tensors and pointers between nodes, and pointer descriptors on the wire.

A pointer travels as a descriptor: where its data lives (worker name and address), the id
there, and its metadata. Whoever stores the descriptor's pointer owns the remote object: a
pointer sent on, or fetched back, hands ownership over instead of deleting the object.

Fences: a message to worker A and a message forwarded to A through worker B travel on
different links, so before handing a pointer to A's object to someone else, the sender first
waits until A ran everything the sender posted to it (only if it posted something since its
last answer from A).
"""

from __future__ import annotations

from typing import Any

import torch

from zsyft.errors import PointerUsageError, ProtocolError, WorkerUnavailableError
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.node import LocalNode
from zsyft.remote.refs import RemoteRef
from zsyft.tensors.carry import carried, in_graph
from zsyft.tensors.pointer import PointerTensor
from zsyft.transport.keys import is_public_key
from zsyft.wire.codec import Handover
from zsyft.wire.messages import Kind, is_object_id

ADDRESS_SCHEMES = ("tcp://", "ipc://", "inproc://")


def descriptor(pointer: PointerTensor, owner: str) -> dict[str, Any]:
    """The wire form of a pointer held by `owner`."""
    location = pointer.location
    return {
        "pointer": 1,
        "location": location.id,
        "address": location.address,
        "key": location.public_key,
        "id_at_location": pointer.ref.id,
        "id": pointer.id,
        "owner": owner,
        "shape": list(pointer.shape),
        "stride": list(pointer.stride()),
        "dtype": pointer.dtype,
    }


def is_descriptor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("pointer") == 1


def handle_for(node: LocalNode, name: Any, address: Any, key: Any) -> WorkerHandle:
    """This node's handle on the worker `name` at `address` with public `key`, connecting if
    needed (a worker at a known address but with another key gets a handle of its own)."""
    if not (isinstance(name, str) and isinstance(address, str)):
        raise ProtocolError("a worker is named by a string name and address")
    if not address.startswith(ADDRESS_SCHEMES):
        raise ProtocolError(f"worker address {address!r} must start with tcp://, ipc:// or inproc://")
    if not (key is None or is_public_key(key)) or (key is None and address.startswith("tcp://")):
        raise ProtocolError(f"worker {name!r} at {address} needs a Z85 public key")
    for handle in node.all_handles():
        if handle.address == address and handle.public_key == key and not handle.link.socket.closed:
            return handle
    if (address, key) in node.retired:  # waiting for it to answer would take the full timeout
        raise WorkerUnavailableError(
            f"worker {name!r} at {address} was shut down by this program (a new worker named "
            f"{name!r} may have replaced it); the objects it held are gone",
            worker=name,
        )
    handle = WorkerHandle(node, name, address, public_key=key)
    if name in node.workers:  # another worker of that name: keep both, register the first
        node.extra_handles.append(handle)
        return handle
    return node.add_worker(handle)


def import_pointer(node: LocalNode, desc: Any) -> PointerTensor:
    """A pointer (owning its remote object) built from a descriptor received from a worker.

    Everything is checked before connecting: a malformed descriptor opens no connection."""
    try:
        object_id, shape, stride, dtype = (
            desc["id_at_location"], desc["shape"], desc["stride"], desc["dtype"]
        )
        name, address, key = desc["location"], desc["address"], desc.get("key")
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed pointer descriptor: {exc}") from None
    if not is_object_id(object_id) or not isinstance(dtype, torch.dtype):
        raise ProtocolError("malformed pointer descriptor: bad id or dtype")
    if not all(_is_size(dims) for dims in (shape, stride)) or len(shape) != len(stride):
        raise ProtocolError("malformed pointer descriptor: bad shape or stride")
    location = handle_for(node, name, address, key)
    return PointerTensor(RemoteRef(location, object_id), shape, stride, dtype)


def _is_size(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 62 for d in value
    )


def fence(handle: WorkerHandle) -> None:
    """Wait until `handle`'s worker ran everything this node posted to it, including deletes
    still queued (a delete that cascades along a chain must arrive before the fence's reply).

    Not needed when a request to that worker is already in flight further up the stack: the
    worker runs messages in order, so it already ran everything sent before that request (and
    waiting again would deadlock, because it defers our messages until it answered us).
    """
    while handle.unsynced and not handle.in_flight:  # again if it served a message nested
        handle.barrier()  # and posted to the same worker meanwhile


def send(value: torch.Tensor, worker: Any, owner: str, object_id: bytes | None = None) -> Any:
    """Store `value` at `worker`: a tensor's data, or (pointer chains) a pointer to the data.

    Returns the pointer to the new object. A pointer sent on hands its remote object to the
    receiving worker: the sender's pointer no longer owns (nor can use) it. A leaf's `.grad`
    travels with it, as in PySyft: the returned pointer's `.grad` points at its copy there.
    """
    if not isinstance(worker, WorkerHandle):
        raise TypeError(
            f"send() expects a worker such as sy.VirtualWorker(hook, id='bob'), "
            f"got {type(worker).__name__}"
        )
    if in_graph(value) and object_id is None:
        if isinstance(value, PointerTensor):
            raise PointerUsageError(
                "this pointer is part of an autograd graph at "
                f"{value.location.id}: sending it on would make a chain that cuts the graph; "
                f"use .move({worker.id}) (its gradient comes back), or send .detach()"
            )
        return carried(value, worker)
    grad = value.grad if value.is_leaf else None
    pointer = _send_value(value, worker, owner, object_id)
    if grad is not None:
        pointer.grad = send(grad, worker, owner)
    return pointer


def _send_value(value: torch.Tensor, worker: WorkerHandle, owner: str,
                object_id: bytes | None) -> PointerTensor:
    ref = RemoteRef(worker, object_id)
    if isinstance(value, PointerTensor):
        value.ref.check_live()
        if value.location is worker:
            raise PointerUsageError(
                f"this tensor is already at {worker.id}; a pointer there to itself is useless"
            )
        fence(value.location)
        worker.post(Kind.STORE_POINTER, [ref.id, descriptor(value, owner)])
        worker.node.forwarders.add(worker)  # it now forwards ops to the pointer's location
        value.ref.forget(moved_to=worker.id)
        return PointerTensor(ref, value.shape, value.stride(), value.dtype,
                             requires_grad=value.requires_grad)
    data = value.detach().contiguous()
    # A copy `contiguous` made is ours to hand over; `value` itself its caller may change
    # while the bytes are in flight, so the encoder copies it.
    worker.store(ref.id, Handover(data) if data.data_ptr() != value.data_ptr() else data)
    return PointerTensor(ref, data.shape, data.stride(), data.dtype,
                         requires_grad=value.requires_grad)
