"""The local node "me": the registry of worker handles, error collection and sync points.

Pipelined commands do not wait for replies, so an op that fails inside a worker is reported
later, at a *sync point*: `get()`, `_objects`, an op whose result shape depends on data
(`nonzero`, `unique`, ...), `sy.sync()` or one worker's `bob.sync()`. Exactly: an error is
raised at the first sync point that starts after its worker reported it; `sy.sync()` waits
for every worker and therefore always raises errors of every op issued before it. Fetching a
value that was computed from a failed op raises that op's error directly. An error never
makes a sync point discard data: a `get()` that succeeds returns its tensor, and the error
comes at the next one.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from zsyft.errors import WorkerError, WorkerUnavailableError
from zsyft.remote.handle import WorkerHandle

_SKIP_DIRS = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    os.path.dirname(os.path.abspath(torch.__file__)),
)


RAISED_MEMORY = 256  # failed commands remembered as raised (`LocalNode.raised_failures`)
_INSIDE: dict[Any, bool] = {}  # code object -> whether it is zsyft's or torch's own


def _inside(code: Any) -> bool:
    inside = _INSIDE.get(code)
    if inside is None:
        if len(_INSIDE) > 4096:
            _INSIDE.clear()
        inside = _INSIDE[code] = code.co_filename.startswith(_SKIP_DIRS)
    return inside


def callsite(depth: int = 2) -> str | None:
    """ "file:line" of the innermost frame outside zsyft and torch (the user's line)."""
    frame = sys._getframe(depth)
    known = _INSIDE.get  # per op, through the frames of autograd or an optimizer: keep it lean
    while frame is not None:
        inside = known(frame.f_code)
        if inside is None:
            inside = _inside(frame.f_code)
        if not inside:
            break
        frame = frame.f_back
    if frame is None:
        return None
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def user_stacklevel() -> int:
    """The `stacklevel` at which `warnings.warn`, called by the caller of this function, names
    the innermost line outside zsyft and torch (the user's line)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and _inside(frame.f_code):
        frame, level = frame.f_back, level + 1
    return level


class LocalNode:
    """The process's own node ("me"): owns pointers, knows every worker handle by name."""

    def __init__(self, name: str = "me") -> None:
        self.id = name
        self.workers: dict[str, WorkerHandle] = {}
        self.extra_handles: list[WorkerHandle] = []  # same name as a registered worker
        # (address, key) of the worker processes this node stopped: never dialled again
        self.retired: set[tuple[str, str | None]] = set()
        self._errors: list[WorkerError] = []
        # Workers whose loss was raised to the user: later reports of it (a peer relaying
        # that it lost that worker too) are dropped rather than raised at the next sync point.
        self.gone: set[str] = set()
        # The commands whose failure was raised to the user lately (`raised_failures`).
        self._raised: OrderedDict[Any, None] = OrderedDict()
        self._lock = threading.Lock()
        # Set inside a worker process (pointer chains): keep serving while waiting, send
        # errors of forwarded commands to the client that caused them.
        self.serve_while_waiting: tuple[Any, Callable[[], None]] | None = None
        self.error_sink: Callable[[dict, Any], None] | None = None
        self.origin: Any = None
        # In a worker process: the client whose message is being handled. Messages this node
        # sends meanwhile say they act on its behalf, so the next worker checks that client's
        # ownership, not this worker's (no confused deputy).
        self.principal: str | None = None
        # Whether ops issued here come from a user's code, whose line an error names (in a
        # worker process they come from a client's message: the error names that client).
        self.user_facing = True
        # Workers this node gave pointers to: they forward ops to other workers (`settle`).
        self.forwarders: set[WorkerHandle] = set()

    def settle(self, target: WorkerHandle) -> None:
        """Before posting to `target`: wait until every other worker that forwards ops ran
        what this node posted to it. An op forwarded to `target` travels on another
        connection than ours, so without this `target` could run our next message first:
        `x.get()` would miss `pointer_to_a_view_of_x.add_(1)` made through a chain."""
        for handle in list(self.forwarders):
            if handle.link.socket.closed:
                self.forwarders.discard(handle)
            elif handle is not target and handle.dirty and not handle.in_flight:
                handle.barrier()

    @property
    def _objects(self) -> dict:
        """The local node keeps no registry of local tensors: always empty."""
        return {}

    def all_handles(self) -> list[WorkerHandle]:
        return [*self.workers.values(), *self.extra_handles]

    def add_worker(self, handle: WorkerHandle) -> WorkerHandle:
        """Register `handle` under its name, closing any older handle of that name."""
        old = self.workers.get(handle.id)
        self.workers[handle.id] = handle
        self.gone.discard(handle.id)
        if old is not None and old is not handle:
            old.close()
        return handle

    def record_error(
        self, error: WorkerError, body: dict | None = None, origin: Any = None
    ) -> None:
        """Keep a worker's error for the next sync point (or relay it, inside a worker)."""
        if self.error_sink is not None and body is not None:
            self.error_sink(body, origin)
            return
        if self._known_gone(error):
            return
        with self._lock:
            self._errors.append(error)

    def _known_gone(self, error: WorkerError) -> bool:
        return isinstance(error, WorkerUnavailableError) and error.worker in self.gone

    def raising(self, error: WorkerError) -> WorkerError:
        """`error`, about to be raised to the user: a lost worker it names is noted, so that
        later reports of the same loss are not raised again."""
        if isinstance(error, WorkerUnavailableError) and error.worker:
            self.gone.add(error.worker)
        issued = getattr(error, "issued", None)
        if issued is not None:
            self._raised[issued] = None
            if len(self._raised) > RAISED_MEMORY:
                self._raised.popitem(last=False)
        return error

    def raised_failures(self) -> set[Any]:
        """The commands whose failure was raised to the user lately (their `issued`):
        values computed from them raise it again; a gradient need not, see `get()`."""
        return set(self._raised)

    def discard_error(self, error: WorkerError) -> None:
        """Forget pending errors of the command `error` reports (it is being raised now)."""
        issued = getattr(error, "issued", None)
        if issued is None:
            return
        with self._lock:
            self._errors = [e for e in self._errors if getattr(e, "issued", None) != issued]

    def raise_pending(self) -> None:
        """Raise the first error reported by a worker since the last sync point, if any."""
        for handle in list(self.workers.values()):
            if not handle.link.socket.closed:
                handle.drain_notices()
        with self._lock:
            errors = [e for e in self._errors if not self._known_gone(e)]  # raised meanwhile
            self._errors.clear()
        if not errors:
            return
        first, more = self.raising(errors[0]), len(errors) - 1
        first.add_note("(reported now, at a sync point: an op sent earlier failed at "
                       f"{first.worker or 'a worker'}; ops are pipelined)")
        if more:
            first.add_note(f"({more} more pipelined op(s) failed after this one)")
        raise first

    def sync(self) -> None:
        """Wait for every worker to run everything sent so far; raise the first error.

        A worker that is gone is passed over (its own pointers raise when used), unless
        something was sent to it since its last reply and its loss was not raised yet.
        """
        for handle in list(self.workers.values()):
            posted = self.unconfirmed(handle)
            try:
                handle.barrier()
            except WorkerUnavailableError as exc:
                if posted or exc.worker != handle.id:  # lost ops, or another worker's loss
                    raise
        self.raise_pending()

    def unconfirmed(self, handle: WorkerHandle) -> bool:
        """Whether `handle`'s worker may not have run commands this node posted to it, so that
        its loss loses them and a sync must fail with it. Not once its loss was raised: what
        is posted since then is deletes, which cannot be lost."""
        return handle.dirty and handle.id not in self.gone

    def shutdown(self) -> None:
        """Close every handle (stopping worker processes this node started); at a worker it
        only connected to, delete what this program holds there first (`release_all`)."""
        for handle in self.all_handles():
            if handle.process is None:
                handle.release_all()
            handle.close()
        self.workers.clear()
        self.extra_handles.clear()

    def __repr__(self) -> str:
        return f"<Worker id:{self.id} #objects:0>"


_local_node: LocalNode | None = None


def local_node() -> LocalNode:
    """The process-wide local node, created on first use."""
    global _local_node
    if _local_node is None:
        _local_node = LocalNode()
    return _local_node
