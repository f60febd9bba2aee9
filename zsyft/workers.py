"""Getting worker handles: `sy.VirtualWorker` spawns a private worker, `sy.connect` attaches
to workers started by `zsyft launch`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from launcher import cluster, spawn
from launcher.supervisor import name_problem, process_is
from zsyft.errors import ClusterFileError, WorkerUnavailableError
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.node import local_node
from zsyft.remote.refs import claims_at, collect_dropped
from zsyft.transport.at_exit import at_exit
from zsyft.transport.keys import session_pair

_atexit_registered = False


def _register(handle: WorkerHandle) -> WorkerHandle:
    global _atexit_registered
    if not _atexit_registered:
        at_exit(local_node().shutdown)
        _atexit_registered = True
    return local_node().add_worker(handle)


class VirtualWorker(WorkerHandle):
    """A private worker process named `id`, started now and stopped with this process.

    It listens on a CURVE-encrypted ipc:// socket in a private directory, so only this user
    reaches it, and only with a key from the user's key directory (`$ZSYFT_HOME/keys`).
    The constructor returns at once; the first request waits for the process to be ready.
    Creating a worker with a name already in use replaces (and stops) the older one.
    """

    def __init__(self, hook: Any = None, id: str = "worker", **_ignored: Any) -> None:
        if (problem := name_problem(id)) is not None:
            raise ValueError(f"VirtualWorker id: {problem}")
        _warn_if_replacing_objects(id)
        process = spawn.spawn_private(id)
        super().__init__(
            local_node(), id, process.address, process.pid, process, public_key=process.public_key
        )
        _register(self)


def _warn_if_replacing_objects(name: str, new: str = "VirtualWorker") -> None:
    """Warn (as PySyft did) when a new worker replaces one that still holds objects of ours:
    they go with it (a notebook's setup cell run again, say)."""
    old = local_node().workers.get(name)
    if old is None or old.link.socket.closed:
        return
    collect_dropped()
    held = claims_at(old)
    if held:
        if isinstance(old, VirtualWorker) or not _may_run(old.address, old.pid):
            fate = "are lost with it"
        else:
            fate = "stay at the launched worker until its lease ends, out of this program's reach"
        warnings.warn(
            f"{new} {name!r} replaces the worker of that name, which holds {held} "
            f"object(s) this program still points to (data, shares, a model): they {fate}, "
            f"and later use of them raises WorkerUnavailableError. To keep them, go on using "
            f"the existing handle (sy.local_worker.workers[{name!r}])",
            stacklevel=3,
        )


CONNECT_TIMEOUT_S = 10.0  # a launched worker is ready before it is recorded: it answers fast


def connect(*names: str, cluster_file: str | Path | None = None) -> Any:
    """Handles to workers started by `zsyft launch`, by name (one handle, or a tuple).

    Connecting again (a notebook cell run twice) returns the handle already connected to the
    same worker, so pointers made through it keep working. A worker whose process is gone
    (on this host) or that does not answer within 10 s raises `WorkerUnavailableError`.
    """
    if not names:
        raise TypeError('sy.connect needs the names of the workers, e.g. sy.connect("bob")')
    recorded = cluster.read(Path(cluster_file) if cluster_file else None)
    client = session_pair(recorded.key_dir)
    handles = []
    for name in names:
        record = recorded.workers.get(name)
        if record is None:
            raise ClusterFileError(
                f"no worker named {name!r} in the cluster; launched: "
                f"{', '.join(recorded.workers) or 'none'}"
            )
        _check_running(name, record)  # a handle made before still answers for a dead worker
        known = local_node().workers.get(name)
        if (
            known is not None
            and known.address == record.address
            and known.public_key == record.public_key
            and not known.link.socket.closed
        ):
            handles.append(known)
            continue
        handle = WorkerHandle(
            local_node(), name, record.address, record.pid,
            public_key=record.public_key, client_keys=client,
        )
        try:
            handle.ping(timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            handle.link.close()
            raise
        _warn_if_replacing_objects(name, new="sy.connect to another worker")
        handles.append(_register(handle))
    return handles[0] if len(handles) == 1 else tuple(handles)


def _may_run(address: str, pid: int | None) -> bool:
    """False for a worker on this host (loopback and ipc addresses) whose process is gone;
    a zombie not yet reaped by its launcher has an empty command line: it counts as gone."""
    local = address.startswith(("ipc://", "tcp://127.", "tcp://localhost:", "tcp://[::1]:"))
    return not (local and pid and not process_is(pid, "zsyft-worker"))


def _check_running(name: str, record: Any) -> None:
    """Fail at once for a launched worker that is recorded down, or whose process is gone
    (checked for workers on this host, which loopback and ipc addresses are)."""
    if not _may_run(record.address, record.pid) or record.state in ("down", "gave-up"):
        raise WorkerUnavailableError(
            f"worker {name!r} (pid {record.pid}) is not running (the cluster file says "
            f"{record.state!r}); see `zsyft status`, and launch it again",
            worker=name,
        )
