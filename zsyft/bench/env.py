"""Everything a benchmark run starts, and the guarantee that all of it is stopped again.

`BenchEnv` hands out zsyft workers (`worker(name, transport)`) and bare pyzmq servers
(`bare(transport)`) on first use and remembers each one; `close()` (or leaving the `with`
block, also on errors and Ctrl-C) stops every process it started and removes their private
directories. Rows that need more processes later (pointer chains across workers, encrypted
ops) ask the same object.

Workers on "ipc" are `sy.VirtualWorker`s, exactly what users create (so, as with any
VirtualWorker, one replaces a worker of the same name in this process). Workers on "tcp" listen
on a free loopback port, like those of `zsyft launch`; they are not registered with the local
node, so `sy.sync()` in the ipc rows keeps talking to one worker only. For the same reason, ipc
workers that only the last rows use (pointer chains) can be started with the others but kept
out of the local node's registry until a case first asks for them with `worker()`.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from zsyft.bench.bare import BareClient, BareServer

TRANSPORTS = ("ipc", "tcp")


class BenchEnv:
    """The zsyft workers and bare servers of one run, started on demand."""

    def __init__(self) -> None:
        import torch

        import zsyft as sy

        self.sy = sy
        self.hook = sy.TorchHook(torch)
        self._pending: dict[tuple[str, str], Any] = {}  # started, not yet known to be ready
        self._workers: dict[tuple[str, str], Any] = {}
        self._bare: dict[tuple[str, bool, bool], tuple[BareServer, BareClient]] = {}
        self._unlisted: set[tuple[str, str]] = set()  # ready, not yet registered

    def start_workers(
        self, needs: list[tuple[str, str]], later: list[tuple[str, str]] | None = None
    ) -> None:
        """Start the (name, transport) workers together, so their startups overlap.

        The `later` ones are started and waited for too (a worker importing torch would slow
        down the rows measured meanwhile), but an ipc worker among them joins the local node's
        registry only when a case first asks for it with `worker()`: `sy.sync()` and the error
        check of every sync point visit each registered worker, which would add work to the
        rows before that their bare baselines do not do.
        """
        from zsyft.remote.node import local_node

        registry = local_node().workers
        first = list(dict.fromkeys(needs))
        unlisted = [need for need in dict.fromkeys(later or []) if need not in first]
        for need in [*first, *unlisted]:
            known = need in self._workers or need in self._pending
            self._spawn(*need)
            name, transport = need
            if need in unlisted and not known and transport == "ipc":
                if registry.get(name) is self._pending[need]:  # a VirtualWorker registers itself
                    del registry[name]
                self._unlisted.add(need)
        for need in [*first, *unlisted]:
            self._ready(*need)

    def _spawn(self, name: str, transport: str) -> None:
        key = (name, transport)
        if key in self._workers or key in self._pending:
            return
        if transport == "ipc":
            self._pending[key] = self.sy.VirtualWorker(self.hook, id=name)
        elif transport == "tcp":
            from launcher.spawn import spawn

            directory = Path(tempfile.mkdtemp(prefix="zsyft-bench-"))
            self._pending[key] = spawn(
                name, "tcp://127.0.0.1:*", directory / f"{name}.log", owned_dir=directory
            )
        else:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")

    def worker(self, name: str, transport: str = "ipc") -> Any:
        """The zsyft worker `name` on `transport` (a `WorkerHandle`), started and ready."""
        handle = self._ready(name, transport)
        if (name, transport) in self._unlisted:
            from zsyft.remote.node import local_node

            self._unlisted.discard((name, transport))
            local_node().add_worker(handle)
        return handle

    def _ready(self, name: str, transport: str) -> Any:
        """The worker's handle once the worker answered a ping (started now if needed)."""
        key = (name, transport)
        if key in self._workers:
            return self._workers[key]
        self._spawn(name, transport)
        started = self._pending.pop(key)
        try:
            if transport == "ipc":
                handle = started
                handle.process.wait_ready()
            else:
                from zsyft.remote.handle import WorkerHandle
                from zsyft.remote.node import local_node

                address = started.wait_ready()
                handle = WorkerHandle(
                    local_node(), name, address, started.pid, started,
                    public_key=started.public_key,
                )
            self._workers[key] = handle
        except BaseException:
            if transport == "ipc":
                started.close()
            else:
                started.stop()
            raise
        handle.ping()
        return handle

    def bare(self, transport: str = "ipc", curve: bool = True, awake: bool = False) -> BareClient:
        """A client connected to a bare pyzmq server on `transport` ("ipc" or "tcp"),
        encrypted with CURVE like zsyft's sockets unless `curve=False`; with `awake`, both wait
        for messages awake first, as zsyft does (see `bare`)."""
        key = (transport, curve, awake)
        if key not in self._bare:
            server = BareServer(transport, curve, awake)
            try:
                address = server.start()
                public = server.keys.public if server.keys else None
                client = BareClient(address, public, spin_s=server.spin_s)
            except BaseException:
                server.stop()
                raise
            self._bare[key] = (server, client)
        return self._bare[key][1]

    def pids(self) -> list[int]:
        """The process ids of everything started so far (for checks that nothing is left)."""
        found = [h.pid for h in self._workers.values() if h.pid is not None]
        found += [p.pid for p in self._pending.values() if p.pid is not None]
        found += [s.pid for s, _ in self._bare.values() if s.pid is not None]
        return found

    def close(self) -> None:
        """Stop every process this run started (all at once) and remove their directories."""
        from zsyft.remote.node import local_node

        registry = local_node().workers
        stoppers: list[Callable[[], None]] = []
        for (name, _), started in [*self._pending.items(), *self._workers.items()]:
            if registry.get(name) is started:
                del registry[name]
            if hasattr(started, "close"):  # a handle: close its socket here, in this thread
                started.link.close()
                stoppers.append(started.close)
            else:  # a tcp worker process that never got a handle
                stoppers.append(started.stop)
        for server, client in self._bare.values():
            client.close()
            stoppers.append(server.stop)
        self._pending.clear()
        self._workers.clear()
        self._unlisted.clear()
        self._bare.clear()
        errors: list[BaseException] = []

        def attempt(stop: Callable[[], None]) -> None:
            try:
                stop()
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=attempt, args=(stop,)) for stop in stoppers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def __enter__(self) -> BenchEnv:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
