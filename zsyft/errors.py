"""Every exception zsyft raises on purpose, in one tree.

    ZsyftError
    ├── ProtocolError          a frame or message that breaks the wire format (bad version, limits)
    ├── WorkerError            something went wrong at or with a named worker
    │   ├── RemoteError        an op raised inside the worker; carries the op and remote traceback
    │   │   └── ObjectNotFoundError   the id is not (or no longer) in the worker's store
    │   │       └── ObjectLostError   ... because the worker crashed and was restarted
    │   ├── OpNotAllowedError  the worker refused an op before running it (allowlist, limits)
    │   └── WorkerUnavailableError    the worker did not answer (never reachable, died, frozen)
    │       ├── WorkerLostError       the connection to a worker that was up has gone
    │       ├── WorkerBusyError       its queue is full: the message was refused (retry later)
    │       └── AuthenticationError   the CURVE handshake failed (unknown client key, wrong
    │                                 server key, or a peer that does not speak CURVE)
    ├── PointerUsageError      an operation that would reveal remote data implicitly (bool(),
    │                          item()) or mixes locations; the message names the alternative
    ├── UnsupportedOpError     an aten op a fixed-precision or shared tensor does not implement
    │   └── ProtocolUnavailableError   an op on shared values whose protocol is not there yet
    ├── LaunchError            a worker process could not start (name clash, port in use, crash)
    ├── ClusterFileError       the cluster file written by `zsyft launch` is missing or invalid
    └── KeyFileError           a CURVE key file or key directory is missing, bad, or not private

`WorkerUnavailableError` also subclasses `TimeoutError` so generic timeout handling catches it;
`UnsupportedOpError` subclasses `NotImplementedError`. Encoding a value too large for fixed
point raises `zsyft.mpc.encoding.EncodingOverflowError` (a `ValueError`; the mpc layer imports
nothing from zsyft).
This module imports nothing from zsyft so that every layer may raise these.
"""

from __future__ import annotations

import sys
from typing import Any


class ZsyftError(Exception):
    """Base class of every error zsyft raises on purpose."""


class ProtocolError(ZsyftError):
    """A message that does not follow the zsyft wire format."""


class WorkerError(ZsyftError):
    """An error tied to one worker; `worker` names it."""

    def __init__(self, message: str, *, worker: str | None = None) -> None:
        super().__init__(message)
        self.worker = worker


class RemoteError(WorkerError):
    """An op failed inside a worker process.

    `op` is the command that failed, `remote_type` the exception class name raised there,
    `remote_traceback` the worker-side traceback text, `path` the chain of workers the
    command travelled (for pointer chains), and `callsite` where the user issued it.
    """

    def __init__(
        self,
        message: str,
        *,
        worker: str | None = None,
        op: str | None = None,
        remote_type: str | None = None,
        remote_traceback: str | None = None,
        path: list[str] | None = None,
        callsite: str | None = None,
    ) -> None:
        super().__init__(message, worker=worker)
        self.op = op
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        self.path = path or ([worker] if worker else [])
        self.callsite = callsite

    def __str__(self) -> str:
        text = super().__str__()
        where = " -> ".join(self.path) if self.path else self.worker
        head = f"[{where}] {self.op}: " if self.op else f"[{where}] "
        tail = f"\n  issued at {_in_notebook_terms(self.callsite)}" if self.callsite else ""
        if self.remote_traceback:
            tail += "\n--- remote traceback ---\n" + self.remote_traceback.rstrip()
        return head + text + tail


def _in_notebook_terms(callsite: str) -> str:
    """"Cell In[3], line 1" for a line of a Jupyter/IPython cell, as IPython's own tracebacks
    name it (each cell is compiled under a temporary file name that says nothing), else
    `callsite` ("file:line") as it is."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return callsite
    filename, _, line = callsite.rpartition(":")
    try:
        shell = ipython.get_ipython()
        cell = shell.compile._filename_map.get(filename) if shell is not None else None
    except Exception:  # another IPython version: its file names are still right
        cell = None
    return f"Cell In[{cell}], line {line}" if cell is not None else callsite


_BUILTIN_KINDS = {
    kind.__name__: kind
    for kind in (RuntimeError, NotImplementedError, TypeError, ValueError, IndexError, KeyError,
                 LookupError, ZeroDivisionError, OverflowError, ArithmeticError, AssertionError)
}
_remote_kinds: dict[str, type[RemoteError]] = {}


def _torch_kind(name: str) -> type[Exception] | None:
    """torch's own exception classes a worker's op may raise (all RuntimeErrors)."""
    import torch

    return {"_LinAlgError": torch.linalg.LinAlgError, "LinAlgError": torch.linalg.LinAlgError,
            "OutOfMemoryError": torch.OutOfMemoryError}.get(name)


def remote_error_class(remote_type: str | None) -> type[RemoteError]:
    """`RemoteError`, made also an instance of the built-in (or torch's own) exception class
    the worker raised (torch raises RuntimeError for most bad ops): `except RuntimeError` or
    `except torch.linalg.LinAlgError` catches an op that failed remotely as it would the same
    op failing here."""
    kind = _BUILTIN_KINDS.get(remote_type or "") or _torch_kind(remote_type or "")
    if kind is None:
        return RemoteError
    if remote_type not in _remote_kinds:
        _remote_kinds[remote_type] = type(
            f"Remote{remote_type.lstrip('_')}", (RemoteError, kind),
            {"__module__": __name__, "__doc__": f"A {remote_type} raised inside a worker."},
        )
    return _remote_kinds[remote_type]


class ObjectNotFoundError(RemoteError):
    """The object id is not in the worker's store (retrieved, deleted, or the worker restarted)."""


class ObjectLostError(ObjectNotFoundError):
    """The worker crashed and was restarted: objects it held before are gone."""


class OpNotAllowedError(WorkerError):
    """The worker refused to run an op (not on the allowlist, or over a limit)."""


class WorkerUnavailableError(WorkerError, TimeoutError):
    """The worker did not answer in time: not started, unreachable, frozen or dead."""


class WorkerBusyError(WorkerUnavailableError):
    """The worker's queue is full: the message was refused, not run; retry later."""


class WorkerLostError(WorkerUnavailableError):
    """The connection to a worker that had answered before is gone (process died or froze)."""


class PointerUsageError(ZsyftError, RuntimeError):
    """A local use of a remote value that zsyft will not do implicitly."""


def formatting_refused(advice: str) -> Any:
    """`__format__` for a tensor type whose value is not here (a pointer, shares, an
    encoding): `f"{x}"` prints it as `str(x)` does; `f"{x:.3f}"` needs the number and raises
    `PointerUsageError` with `advice`, as `item()` does, instead of Python's bare TypeError."""

    def __format__(self: Any, spec: str) -> str:
        if not spec:
            return str(self)
        raise PointerUsageError(
            f"formatting a {type(self).__name__} with {spec!r} needs its value; {advice}"
        )

    return __format__


class UnsupportedOpError(ZsyftError, NotImplementedError):
    """An aten op that a zsyft tensor type does not implement; `op` names it."""

    def __init__(self, message: str, *, op: str) -> None:
        super().__init__(message)
        self.op = op


class ProtocolUnavailableError(UnsupportedOpError):
    """An op on secret-shared values that zsyft does not build from its protocols yet
    (`exp`, `log`, `reciprocal`, ...)."""


class LaunchError(ZsyftError):
    """A worker process could not be started."""


class ClusterFileError(ZsyftError):
    """The cluster file is missing, unreadable, or does not name the requested worker."""


class KeyFileError(ZsyftError):
    """A CURVE key file or key directory is missing, malformed, or readable by other users."""


class AuthenticationError(WorkerUnavailableError):
    """The worker refused this client's key, or is not the worker the client's key names."""
