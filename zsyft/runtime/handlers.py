"""The worker's routing table: one handler per request kind.

A handler takes the worker and the decoded message and returns the reply `(kind, body)`, or
None for pipelined messages that need no reply. Pipelined messages that fail answer with an
ERROR notice (request id 0) so the client can raise it at its next sync point; their results
are marked failed so dependent ops report the same error.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from zsyft.errors import WorkerError
from zsyft.runtime.executor import FailedInput, tensor_meta
from zsyft.runtime.store import Failed
from zsyft.wire.codec import Handover
from zsyft.wire.messages import (
    AFTER_RELAY,
    PROTOCOL_VERSION,
    FetchMode,
    Kind,
    Message,
    error_body,
    is_object_id,
)

if TYPE_CHECKING:
    from zsyft.runtime.worker import Worker

Reply = tuple[int, Any] | None
LIST_INLINE_NUMEL = 1 << 20  # `_objects` shows tensors up to this size in full
TRACEBACK_LINES = 30


def exception_body(worker: Worker, exc: BaseException, op: str | None, seq: int | None) -> dict:
    """An ERROR body describing `exc` raised while running `op` at `worker`."""
    if isinstance(exc, FailedInput):
        return exc.error
    lines = traceback.format_exception(exc)
    where, path = worker.name, [worker.name]
    remote = getattr(exc, "worker", None)
    if isinstance(exc, WorkerError) and remote and remote != worker.name:
        where, path = remote, [worker.name, remote]  # it happened further down a chain
    # A zsyft error's own text, without the "[worker]" prefix its str() adds: the client's
    # error names the worker again.
    text = exc.args[0] if isinstance(exc, WorkerError) and exc.args else str(exc)
    return error_body(
        worker=where,
        message=str(text) or type(exc).__name__,
        type_name=type(exc).__name__,
        op=op,
        traceback="".join(lines[-TRACEBACK_LINES:]),
        seq=seq,
        path=path,
    )


def _ref(value: Any) -> bytes:
    if not is_object_id(value):
        raise TypeError(f"expected a 16-byte object id, got {type(value).__name__}")
    return value


def handle_ping(worker: Worker, msg: Message) -> Reply:
    return Kind.PONG, {
        "name": worker.name,
        "pid": os.getpid(),
        "objects": len(worker.store),  # every client's: the worker's load (`zsyft status`)
        "mine": sum(not isinstance(value, Failed) for _, value in worker.store.items()),
        "version": PROTOCOL_VERSION,
        "threads": torch.get_num_threads(),
    }


def handle_command(worker: Worker, msg: Message) -> Reply:
    body = msg.body
    if not (isinstance(body, list) and len(body) == 6):
        raise TypeError("command body must be [seq, op, args, kwargs, result ids, want meta]")
    seq, op, args, kwargs, result_ids, want_meta = body
    try:
        outputs = worker.executor.run(op, args, kwargs, result_ids)
    except Exception as exc:
        error = exception_body(worker, exc, op if isinstance(op, str) else None, seq)
        worker.executor.fail(result_ids, error)
        if isinstance(exc, FailedInput) and not want_meta:
            return None  # the original failure was already reported
        return Kind.ERROR, error
    if want_meta:
        return Kind.META, [seq, [tensor_meta(out) for out in outputs]]
    return None


def handle_store(worker: Worker, msg: Message) -> Reply:
    body = msg.body
    if not (isinstance(body, list) and len(body) == 2 and isinstance(body[1], torch.Tensor)):
        raise TypeError("store body must be [id, tensor]")
    worker.store.put(_ref(body[0]), body[1])
    return None


_FETCH_MODES = {int(mode): mode for mode in FetchMode}  # False and True are 0 and 1


def handle_fetch(worker: Worker, msg: Message) -> Reply:
    body = msg.body
    valid = (isinstance(body, list) and len(body) in (2, 3)
             and all(isinstance(item, int) for item in body[1:]))
    mode = _FETCH_MODES.get(body[1]) if valid else None
    if mode is None:
        raise TypeError("fetch body must be [id, mode] or [id, 2, round] with mode 0 (copy), "
                        "1 (take) or 2 (hand over)")
    object_id, round_ = _ref(body[0]), body[2] if len(body) == 3 else 0
    handing = mode is FetchMode.HAND_OVER
    store = worker.store
    value = store.refetchable(object_id, round_) if handing else store.get(object_id)
    if isinstance(value, Failed):
        store.discard(object_id)
        return Kind.ERROR, value.error
    exported = worker.export(value, transfer=mode is not FetchMode.COPY)
    if mode is FetchMode.TAKE or (handing and exported is not value):
        store.discard(object_id)  # a pointer's ownership went with the reply
    elif handing:
        store.hand_over(object_id, round_)
    if mode is not FetchMode.COPY and isinstance(exported, torch.Tensor):
        exported = Handover(exported)  # nothing here changes it any more: no copy to send it
    return Kind.DATA, exported


def handle_delete(worker: Worker, msg: Message) -> Reply:
    if not isinstance(msg.body, list):
        raise TypeError("delete body must be a list of ids")
    for ref in msg.body:
        worker.store.discard(_ref(ref))
    return None


def handle_clear(worker: Worker, msg: Message) -> Reply:
    """Delete every object the requesting client owns here (held pointers release the objects
    they point at, as when they are deleted one by one)."""
    worker.store.free_owner(worker.store.requester)
    return Kind.OK, None


def describe(value: Any, worker: Worker) -> Any:
    """How one stored object appears in a client's `worker._objects` snapshot."""
    if isinstance(value, torch.Tensor) and type(value) is torch.Tensor:
        if value.numel() <= LIST_INLINE_NUMEL:
            return value
        return {"shape": list(value.shape), "dtype": value.dtype}
    return worker.export(value, transfer=False)


def handle_list(worker: Worker, msg: Message) -> Reply:
    """The requester's objects; results of failed ops are left out (the op stored nothing,
    as in torch; the placeholder only makes later ops on it fail with the original error)."""
    return Kind.DATA, {
        oid: describe(value, worker)
        for oid, value in worker.store.items()
        if not isinstance(value, Failed)
    }


def handle_sync(worker: Worker, msg: Message) -> Reply:
    if worker.peer is not None:
        worker.peer.sync(after_relay=msg.body == AFTER_RELAY)
    return Kind.OK, None


def _peer(worker: Worker) -> Any:
    if worker.peer is None:
        raise TypeError(f"{worker.name} was started without pointer support")
    return worker.peer


def handle_store_pointer(worker: Worker, msg: Message) -> Reply:
    body = msg.body
    if not (isinstance(body, list) and len(body) == 2 and isinstance(body[1], dict)):
        raise TypeError("store-pointer body must be [id, descriptor]")
    worker.store.put(_ref(body[0]), _held_form(worker, body[1]))
    return None


def _held_form(worker: Worker, desc: dict) -> Any:
    """What this worker stores for a pointer descriptor it received: a pointer, or, for a
    pointer to this very worker (a chain moved back to where its data is), the object itself
    taken from under its old id, as PySyft does, rather than a pointer to ourselves."""
    if not _points_here(worker, desc):
        return _peer(worker).import_pointer(desc)
    here = _ref(desc.get("id_at_location"))
    value = worker.store.get(here)
    worker.store.discard(here)
    return value


def _points_here(worker: Worker, desc: dict) -> bool:
    """Whether a pointer descriptor names this worker: its name, and its key (unique to this
    process; in-process test workers without keys compare their address)."""
    if desc.get("location") != worker.name:
        return False
    if worker.public_key is not None:
        return desc.get("key") == worker.public_key
    return desc.get("address") == worker.address


def handle_remote_get(worker: Worker, msg: Message) -> Reply:
    """Fetch the data a stored pointer points at, deleting it there: one hop (`[id]`, PySyft's
    `remote_get`), or hop after hop until the data itself is here (`[id, True]`, for `move`)."""
    if not (isinstance(msg.body, list) and len(msg.body) in (1, 2)):
        raise TypeError("remote-get body must be [id] or [id, all the way]")
    object_id = _ref(msg.body[0])
    walk = len(msg.body) == 2 and msg.body[1] is True
    peer = _peer(worker)
    value = worker.store.get(object_id)
    if isinstance(value, torch.Tensor) and not peer.is_pointer(value):
        return Kind.OK, None  # the data is here already (e.g. a chain moved back home)
    if not peer.is_pointer(value):
        raise TypeError(f"the object at {worker.name} is not a tensor: nothing to fetch")
    while peer.is_pointer(value):
        fetched = peer.fetch(value)
        value = _held_form(worker, fetched) if isinstance(fetched, dict) else fetched
        worker.store.replace(object_id, value)
        if not walk:
            break
    return Kind.OK, None


def handle_remote_send(worker: Worker, msg: Message) -> Reply:
    body = msg.body
    if not (isinstance(body, list) and len(body) == 3 and isinstance(body[1], dict)):
        raise TypeError("remote-send body must be [id, worker descriptor, new id]")
    object_id = _ref(body[0])
    value = worker.store.get(object_id)
    worker.store.replace(object_id, _peer(worker).send(value, body[1], _ref(body[2])))
    return Kind.OK, None


def handle_provider_setup(worker: Worker, msg: Message) -> Reply:
    worker.mpc.setup(msg.body)
    return Kind.OK, None


def handle_seed(worker: Worker, msg: Message) -> Reply:
    worker.mpc.seed(msg.body)
    return None


def handle_deal(worker: Worker, msg: Message) -> Reply:
    worker.mpc.deal(msg.body)
    return None


def handle_deposit(worker: Worker, msg: Message) -> Reply:
    worker.mpc.deposit(msg.kind, msg.body)
    return None


def handle_mpc_run(worker: Worker, msg: Message) -> Reply:
    body = msg.body
    seq = body[0] if isinstance(body, list) and body else None
    name = f"mpc:{body[3]}" if isinstance(body, list) and len(body) > 3 else "mpc"
    try:
        worker.mpc.run(body)
    except Exception as exc:
        error = exception_body(worker, exc, name, seq if isinstance(seq, int) else None)
        if isinstance(body, list) and len(body) == 7:
            worker.executor.fail(body[5] if isinstance(body[5], list) else [body[5]], error)
        return Kind.ERROR, error
    return None


HANDLERS: dict[int, Callable[[Worker, Message], Reply]] = {
    Kind.PING: handle_ping,
    Kind.COMMAND: handle_command,
    Kind.STORE: handle_store,
    Kind.FETCH: handle_fetch,
    Kind.DELETE: handle_delete,
    Kind.LIST: handle_list,
    Kind.CLEAR: handle_clear,
    Kind.SYNC: handle_sync,
    Kind.STORE_POINTER: handle_store_pointer,
    Kind.REMOTE_GET: handle_remote_get,
    Kind.REMOTE_SEND: handle_remote_send,
    Kind.PROVIDER_SETUP: handle_provider_setup,
    Kind.MPC_SEED: handle_seed,
    Kind.DEAL: handle_deal,
    Kind.MPC_RUN: handle_mpc_run,
    Kind.MPC_MSG: handle_deposit,
    Kind.MATERIAL: handle_deposit,
}
