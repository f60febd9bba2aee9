"""The worker methods users call on a handle (`bob.ping()`, `bob._objects`,
`bob.clear_objects()`, PySyft's `add_worker`, the repr), built on the handle's requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zsyft.errors import WorkerError
from zsyft.remote.received import listed
from zsyft.wire.messages import Kind, id_number

if TYPE_CHECKING:
    from zsyft.remote.node import LocalNode
    from zsyft.transport.link import Link

RELEASE_TIMEOUT_S = 2.0  # how long a program that ends waits for a worker to free its objects


class WorkerApi:
    """Mixed into `WorkerHandle`, which provides `request()` and the attributes below."""

    id: str
    node: LocalNode
    link: Link
    answered: bool
    unreceived: set[bytes]

    def request(self, kind: int, body: Any, timeout: float | None = None) -> Any:
        raise NotImplementedError  # `WorkerHandle.request`

    def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """The worker's status: name, pid, object count (`objects`: every client's; `mine`:
        this program's, as `_objects` lists them), protocol version, torch threads."""
        return self.request(Kind.PING, None, timeout)

    def sync(self) -> None:
        """Wait until the worker has run every message sent so far; a sync point, like
        `sy.sync()` for one worker: raises the first error a worker reported meanwhile."""
        self.barrier()
        self.node.raise_pending()

    def barrier(self) -> None:
        """Wait until the worker has run every message sent so far, raising nothing else."""
        self.request(Kind.SYNC, None)

    @property
    def _objects(self) -> dict[int, Any]:
        """A snapshot of the worker's store: {id: tensor, or the pointer it holds}.

        Everything issued before (at every worker, including commands forwarded along pointer
        chains) has run when the snapshot is taken.
        """
        self.node.sync()
        listing = self.request(Kind.LIST, None)
        self.node.raise_pending()
        return {id_number(oid): listed(value) for oid, value in listing.items()}

    def clear_objects(self) -> WorkerApi:
        """Delete every object this client holds at the worker, as PySyft's `clear_objects()`
        does; returns this handle. Pointers to them then raise `ObjectNotFoundError` on use.
        Everything issued before runs first (a sync point)."""
        self.node.sync()
        self.request(Kind.CLEAR, None)
        self.unreceived.clear()  # what interrupted get()s left set aside is gone too
        return self

    def add_worker(self, worker: WorkerApi) -> WorkerApi:
        """Accepted for PySyft tutorials (`bob.add_worker(alice)`); returns this handle.

        Nothing to register: a worker learns another's address and key from each message that
        needs it (a pointer sent along a chain, a move, a protocol session) and dials it then.
        """
        if not isinstance(worker, WorkerApi):
            raise TypeError(f"add_worker expects a worker handle, got {type(worker).__name__}")
        return self

    def add_workers(self, workers: Any) -> WorkerApi:
        """`add_worker` for each of `workers`; returns this handle."""
        for worker in workers:
            self.add_worker(worker)
        return self

    def __repr__(self) -> str:
        try:  # a worker still starting up gets the full request timeout, a running one 2 s
            count = self.ping(timeout=2.0 if self.answered else None)["mine"]
        except WorkerError:
            count = "? (unreachable)"
        return f"<Worker id:{self.id} #objects:{count}>"

    def release_all(self, timeout: float = RELEASE_TIMEOUT_S) -> None:
        """Delete every object of this program at the worker, without raising (a program
        that ends: no one could reach them afterwards, as its session key goes with it, and
        the worker's lease would hold them for its whole length). Skipped for a worker
        that is not answering; waits at most `timeout` seconds."""
        if self.link.socket.closed or self.link.state != "up":
            return
        try:
            self.request(Kind.CLEAR, None, timeout=timeout)
        except (WorkerError, KeyboardInterrupt):
            pass
