"""The worker's object store: objects by the 128-bit id their client chose.

Values are plain tensors, pointers held on behalf of a client (pointer chains), or `Failed`
markers that stand for the result of a failed op, so that later ops using that result fail
with the original error instead of a confusing "not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zsyft.errors import ObjectNotFoundError
from zsyft.wire.messages import id_number


@dataclass(frozen=True)
class Failed:
    """Placeholder for the result of an op that raised; `error` is the ERROR body sent back."""

    error: dict[str, Any]


class ObjectStore:
    """A dict of objects with the error messages users need when an id is missing."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._objects: dict[bytes, Any] = {}

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, object_id: bytes) -> bool:
        return object_id in self._objects

    def items(self) -> list[tuple[bytes, Any]]:
        return list(self._objects.items())

    def get(self, object_id: bytes) -> Any:
        """The object stored under `object_id`; raises `ObjectNotFoundError` naming the worker."""
        try:
            return self._objects[object_id]
        except KeyError:
            raise ObjectNotFoundError(
                f"object {id_number(object_id)} is not in {self.worker}'s store (it was "
                "retrieved with .get(), deleted, or the worker restarted)",
                worker=self.worker,
            ) from None

    def put(self, object_id: bytes, value: Any) -> None:
        """Store `value`; an id already in use is refused so no object is silently replaced."""
        if object_id in self._objects:
            raise ValueError(f"object id {id_number(object_id)} is already in use at {self.worker}")
        self._objects[object_id] = value

    def replace(self, object_id: bytes, value: Any) -> None:
        """Swap the object stored under an existing id (a pointer for its data, or back)."""
        self.get(object_id)
        self._objects[object_id] = value

    def discard(self, object_id: bytes) -> None:
        """Delete if present; deleting twice is harmless (garbage collection is batched)."""
        self._objects.pop(object_id, None)
