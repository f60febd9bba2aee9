"""What a worker's replies become for the user: typed errors, and the pointers that a worker
holds as they show in its `_objects`."""

from __future__ import annotations

import re
from typing import Any

from zsyft.errors import (
    AuthenticationError,
    ObjectLostError,
    ObjectNotFoundError,
    OpNotAllowedError,
    RemoteError,
    WorkerBusyError,
    WorkerError,
    WorkerLostError,
    WorkerUnavailableError,
    remote_error_class,
)
from zsyft.wire.messages import id_number

_VIA = re.compile(r" \(via ([^()]*)\)$")  # the path a lost worker was reached by


def error_from_body(body: Any, callsite: str | None = None) -> WorkerError:
    """The typed exception for an ERROR body received from a worker."""
    if not isinstance(body, dict):
        return RemoteError(f"malformed error reply: {body!r}")
    worker, message = body.get("worker"), str(body.get("message"))
    if body.get("type") == "OpNotAllowedError":
        return OpNotAllowedError(message, worker=worker)
    unavailable = {
        "WorkerUnavailableError": WorkerUnavailableError,
        "WorkerLostError": WorkerLostError,
        "AuthenticationError": AuthenticationError,
        "WorkerBusyError": WorkerBusyError,
    }.get(body.get("type"))
    if unavailable is not None:
        path = [str(hop) for hop in body.get("path") or []]
        if (inner := _VIA.search(message)) is not None:  # named by a worker further on
            hops = inner.group(1).split(" -> ")
            message, path = message[:inner.start()], [h for h in path if h not in hops] + hops
        return unavailable(f"{message} (via {' -> '.join(path)})", worker=worker)
    cls = {
        "ObjectNotFoundError": ObjectNotFoundError, "ObjectLostError": ObjectLostError
    }.get(body.get("type")) or remote_error_class(body.get("type"))
    return cls(
        message,
        worker=worker,
        op=body.get("op"),
        remote_type=body.get("type"),
        remote_traceback=body.get("traceback"),
        path=body.get("path"),
        callsite=callsite,
    )


class HeldPointer:
    """How a pointer held by a worker shows in its `_objects` (display only, owns nothing)."""

    def __init__(self, descriptor: dict[str, Any]) -> None:
        self.owner = descriptor.get("owner")
        self.location = descriptor.get("location")
        self.id = descriptor.get("id")
        object_id = descriptor.get("id_at_location")
        self.id_at_location = id_number(object_id) if isinstance(object_id, bytes) else None
        self.shape = tuple(descriptor.get("shape") or ())
        self.dtype = descriptor.get("dtype")

    def __repr__(self) -> str:
        return (
            f"(Wrapper)>[PointerTensor | {self.owner}:{self.id} -> "
            f"{self.location}:{self.id_at_location}]"
        )


def listed(value: Any) -> Any:
    if isinstance(value, dict) and value.get("pointer") == 1:
        return HeldPointer(value)
    return value
