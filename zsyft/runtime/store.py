"""The worker's object store: objects by the 128-bit id their client chose, and their owners.

Values are plain tensors, pointers held on behalf of a client (pointer chains), or `Failed`
markers that stand for the result of a failed op, so that later ops using that result fail
with the original error instead of a confusing "not found".

Every object belongs to the principal that created it (`runtime.clients`). The worker sets
`requester` to the principal of the message it is handling; the store then shows that
principal only its own objects: another client's id reads, writes and deletes exactly like
an id that does not exist, so not even existence leaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zsyft.errors import ObjectLostError, ObjectNotFoundError
from zsyft.wire.messages import id_number


@dataclass(frozen=True)
class Failed:
    """Placeholder for the result of an op that raised; `error` is the ERROR body sent back."""

    error: dict[str, Any]


class ObjectStore:
    """A dict of objects with the error messages users need when an id is missing."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.requester: str | None = None  # the principal whose message is being handled
        self.restarted = 0  # the incarnation, when this worker was restarted after a crash
        self._objects: dict[bytes, Any] = {}
        self._owners: dict[bytes, str | None] = {}
        # Fetched with hand-over: kept aside, uncounted, until the client's next round of
        # fetches or its delete (a reply it lost to an interrupt can be fetched again).
        # {id: (owner, value, round)}
        self._handed: dict[bytes, tuple[str | None, Any, int]] = {}

    def __len__(self) -> int:
        """Every object, whoever owns it (the worker's load, as `zsyft status` shows)."""
        return len(self._objects)

    def __contains__(self, object_id: bytes) -> bool:
        return object_id in self._objects and self._owners[object_id] == self.requester

    def items(self) -> list[tuple[bytes, Any]]:
        """The requester's objects."""
        owners, me = self._owners, self.requester
        return [(oid, value) for oid, value in self._objects.items() if owners[oid] == me]

    def get(self, object_id: bytes) -> Any:
        """The object stored under `object_id`; raises `ObjectNotFoundError` naming the worker."""
        try:
            if self._owners[object_id] == self.requester:
                return self._objects[object_id]
        except KeyError:
            pass
        if self.restarted:
            raise ObjectLostError(
                f"object {id_number(object_id)} is not in {self.worker}'s store: {self.worker} "
                f"crashed and was restarted ({self.restarted - 1} restart(s)), and objects it "
                "held before are lost (or it was retrieved with .get() or deleted since)",
                worker=self.worker,
            )
        raise ObjectNotFoundError(
            f"object {id_number(object_id)} is not in {self.worker}'s store (it was "
            "retrieved with .get(), deleted, or the worker restarted)",
            worker=self.worker,
        )

    def refetchable(self, object_id: bytes, round_: int) -> Any:
        """What a hand-over FETCH of `object_id` in the requester's round `round_` returns: a
        stored object, or one set aside in this round. What earlier rounds set aside is
        freed: their replies arrived."""
        me = self.requester
        for oid in [oid for oid, (owner, _, r) in self._handed.items()
                    if owner == me and r < round_]:
            del self._handed[oid]
        if self._handed_to_requester(object_id):
            return self._handed[object_id][1]
        return self.get(object_id)

    def _handed_to_requester(self, object_id: bytes) -> bool:
        handed = self._handed.get(object_id)
        return handed is not None and handed[0] == self.requester

    def hand_over(self, object_id: bytes, round_: int) -> None:
        """Set a fetched object aside, uncounted, for a FETCH of the same round (see
        `_handed`)."""
        if object_id in self:
            self._handed[object_id] = (self.requester, self._objects[object_id], round_)
            del self._objects[object_id], self._owners[object_id]

    def put(self, object_id: bytes, value: Any) -> None:
        """Store `value`; an id already in use is refused so no object is silently replaced."""
        if object_id in self._objects:
            raise ValueError(f"object id {id_number(object_id)} is already in use at {self.worker}")
        self._objects[object_id] = value
        self._owners[object_id] = self.requester

    def replace(self, object_id: bytes, value: Any) -> None:
        """Swap the object stored under an existing id (a pointer for its data, or back)."""
        self.get(object_id)
        self._objects[object_id] = value

    def discard(self, object_id: bytes) -> None:
        """Delete if present; deleting twice is harmless (garbage collection is batched)."""
        if object_id in self:
            del self._objects[object_id], self._owners[object_id]
        if self._handed_to_requester(object_id):
            del self._handed[object_id]

    def free_owner(self, principal: str | None) -> list[bytes]:
        """Delete every object of `principal` (its lease ran out, or it asked to clear its
        objects); returns their ids."""
        ids = [oid for oid, owner in self._owners.items() if owner == principal]
        for object_id in ids:
            del self._objects[object_id], self._owners[object_id]
        for object_id in [oid for oid, (owner, *_) in self._handed.items() if owner == principal]:
            del self._handed[object_id]
        return ids
