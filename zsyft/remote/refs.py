"""Remote object ids and their lifetime.

Ids are random 128-bit integers chosen by the client (so commands can be pipelined: the client
knows the result's id before the worker ran it). A `RemoteRef` is the client's claim on one
remote object; several pointer tensors may share it (a `detach()` is a new wrapper around the
same remote object). When the last holder drops it, the id goes to its location's
pending-delete list; the deletes travel, batched, in front of the next message to that worker.

A dropped claim is noticed by a weak reference whose callback is a C function (`list.append`
of `_dropped`), not by a `__del__`: Python runs a pending Ctrl-C handler at the start of any
Python function, and a `KeyboardInterrupt` raised inside garbage collection is printed and
swallowed, so in a loop that drops pointers all the time a `__del__` ate many a Ctrl-C.
`collect_dropped()` (called before deletes are sent) queues the dropped claims' deletes.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Protocol

from zsyft.errors import PointerUsageError

_IDS_PER_DRAW = 256
_unused_ids: list[bytes] = []
os.register_at_fork(after_in_child=_unused_ids.clear)  # a forked child must not reuse ours


def new_id() -> bytes:
    """A fresh random 128-bit object id: 16 bytes from the OS's cryptographic RNG, drawn 256
    ids at a time (one system call instead of one per id; `list.pop` is atomic)."""
    try:
        return _unused_ids.pop()
    except IndexError:
        block = os.urandom(16 * _IDS_PER_DRAW)
        _unused_ids.extend([block[i:i + 16] for i in range(0, len(block), 16)])
        return _unused_ids.pop()


class Location(Protocol):
    """What a `RemoteRef` needs from the worker handle it points into."""

    id: str

    @property
    def principal(self) -> str | None:
        """The client this process acts for right now (in a worker process), else None."""

    def release(self, object_id: bytes, principal: str | None) -> None: ...


_dropped: list[weakref.ref] = []  # claims garbage-collected since `collect_dropped` last ran
_claims: dict[weakref.ref, tuple[Location, bytes, str | None]] = {}  # live claims' deletes


def collect_dropped() -> None:
    """Queue the deletes of the claims dropped since the last call (see the module's doc)."""
    while _dropped:
        claim = _claims.pop(_dropped.pop(), None)
        if claim is not None:
            location, object_id, principal = claim
            location.release(object_id, principal)


def claims_at(location: Location) -> int:
    """How many objects at `location` this process still holds pointers to."""
    return sum(1 for claim in list(_claims.values()) if claim[0] is location)


class RemoteRef:
    """The client's claim on object `id` at `location`; deletes it remotely when dropped."""

    __slots__ = ("__weakref__", "_holders", "_watch", "id", "location", "moved_to",
                 "principal", "released")

    def __init__(self, location: Location, object_id: bytes | None = None) -> None:
        self.location = location
        self.id = new_id() if object_id is None else object_id
        self.released = False
        self.moved_to: str | None = None
        # Whose object it is (in a worker: the client it was created for); its delete says so,
        # whenever garbage collection happens to run.
        self.principal = location.principal
        self._holders: list[weakref.ref] = []  # the pointer tensors wrapping this claim
        self._watch: weakref.ref | None = None
        self._claim()

    def _claim(self) -> None:
        """Delete the object remotely once this claim is garbage-collected."""
        self._watch = weakref.ref(self, _dropped.append)
        _claims[self._watch] = (self.location, self.id, self.principal)

    def _unclaim(self) -> None:
        if self._watch is not None:
            _claims.pop(self._watch, None)
            self._watch = None

    def hold(self, holder: Any) -> None:
        """Note one more pointer tensor wrapping this claim (`detach()`, `.data` and `alias`
        wrap the same remote object in a new pointer)."""
        if len(self._holders) >= 8:  # aliases come and go (autograd detaches): drop dead ones
            self._holders = [h for h in self._holders if h() is not None]
        self._holders.append(weakref.ref(holder))

    def drop(self, holder: Any) -> None:
        """`holder` no longer wraps this claim."""
        self._holders = [h for h in self._holders if h() is not None and h() is not holder]

    def shared_beyond(self, holder: Any) -> bool:
        """Whether a live pointer tensor other than `holder` wraps this claim: `holder.get()`
        must then leave the remote object to it."""
        return any(h() is not None and h() is not holder for h in self._holders)

    @classmethod
    def retrieved(cls, location: Location, object_id: bytes) -> RemoteRef:
        """A claim on nothing, for a pointer whose value was retrieved while other pointers
        keep the object: using it raises as after any `get()`."""
        ref = cls(location, object_id)
        ref.forget()
        return ref

    def check_live(self) -> None:
        """Raise a clear error if the remote object was already retrieved or deleted."""
        if self.released and self.moved_to:
            raise PointerUsageError(
                f"this pointer was sent on to {self.moved_to}, which now owns the object; use "
                "the pointer that send() returned"
            )
        if self.released:
            raise PointerUsageError(
                f"the object {int.from_bytes(self.id, 'big')} at {self.location.id} was already "
                "retrieved with .get() (or deleted); this pointer no longer points at anything"
            )

    def forget(self, moved_to: str | None = None) -> None:
        """Stop owning the object: it was fetched with delete, or handed to `moved_to`."""
        self.released = True
        self.moved_to = moved_to
        self._unclaim()

    def reclaim(self) -> None:
        """Own the object again after `forget()` (a hand-over that did not happen)."""
        self.released, self.moved_to = False, None
        if self._watch is None:
            self._claim()

    def __copy__(self) -> RemoteRef:
        raise TypeError(
            "a RemoteRef owns its remote object and cannot be copied; deep-copy the pointer "
            "instead (copy.deepcopy(ptr) copies the data at its worker)"
        )

    def __deepcopy__(self, memo: dict) -> RemoteRef:
        return self.__copy__()

    def release(self) -> None:
        """Give up the object now: its delete is queued (sent with the next message)."""
        if not self.released:
            self.released = True
            self._unclaim()
            self.location.release(self.id, self.principal)
