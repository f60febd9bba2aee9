"""An in-process worker for unit tests: a real worker loop in a thread on `inproc://`.

The transport layer needs nothing special for this: `inproc://` addresses work with the
process-wide ZeroMQ context that the worker and its clients share, so the same ROUTER/DEALER
code runs as between processes, without spawning any. Use as a context manager:

    with InprocWorker("bob") as address:
        handle = WorkerHandle(node, "bob", address)
"""

from __future__ import annotations

import threading
import uuid
from types import TracebackType

from zsyft.runtime.worker import Worker


class InprocWorker:
    """A `Worker` named `name` serving `inproc://...` from a daemon thread until closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self.worker = Worker(name, f"inproc://zsyft-{name}-{uuid.uuid4().hex}")
        self.address = self.worker.address
        self._thread = threading.Thread(
            target=self.worker.serve, args=(self._stop.is_set, 20), daemon=True,
            name=f"zsyft-inproc-{name}",
        )

    def __enter__(self) -> str:
        self._thread.start()
        return self.address

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.worker.close()
