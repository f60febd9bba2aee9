"""The cluster file: where `zsyft launch` records its workers for `sy.connect` and `zsyft status`.

JSON, written atomically with mode 0600 in a 0700 directory:

    {"version": 2, "launcher_pid": 1234, "key_dir": "/home/me/.zsyft/keys",
     "workers": {"bob": {"pid": 1235, "address": "tcp://...", "public_key": "Z85...",
                         "log": "/path/bob.log"}, ...}}

Its default location is `$ZSYFT_HOME/cluster.json` (`~/.zsyft/cluster.json` when unset).
Clients authenticate with the `client` key pair in `key_dir` and check each worker's
`public_key` during the handshake.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from zsyft.errors import ClusterFileError
from zsyft.transport.keys import default_key_dir, is_public_key, zsyft_home

VERSION = 2


def default_path() -> Path:
    return zsyft_home() / "cluster.json"


@dataclass(frozen=True)
class WorkerRecord:
    """One launched worker as the cluster file records it."""

    name: str
    pid: int
    address: str
    public_key: str
    log: str = ""
    restarts: int = 0
    state: str = "up"  # "up", "restarting", "gave-up" (or "down": exited, no --restart)


@dataclass(frozen=True)
class Cluster:
    launcher_pid: int
    workers: dict[str, WorkerRecord]
    key_dir: Path


def write(
    path: Path, launcher_pid: int, workers: list[WorkerRecord], key_dir: Path | None = None
) -> None:
    """Write the cluster file atomically (readers never see half a file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {
        "version": VERSION,
        "launcher_pid": launcher_pid,
        "key_dir": str(key_dir or default_key_dir()),
        "workers": {
            w.name: {
                "pid": w.pid, "address": w.address, "public_key": w.public_key, "log": w.log,
                "restarts": w.restarts, "state": w.state,
            }
            for w in workers
        },
    }
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)


def read(path: Path | None = None) -> Cluster:
    """The cluster recorded at `path`; raises `ClusterFileError` saying how to create one."""
    path = path or default_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClusterFileError(
            f"no cluster file at {path}: start workers first with `zsyft launch bob alice`"
            " (or pass the file `zsyft launch --cluster-file` wrote)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClusterFileError(f"cannot read the cluster file {path}: {exc}") from None
    try:
        if data["version"] != VERSION:
            raise ClusterFileError(
                f"cluster file {path} has version {data['version']} (this zsyft writes "
                f"{VERSION}): restart the cluster with this version's `zsyft launch`"
            )
        workers = {
            name: WorkerRecord(
                name, int(w["pid"]), str(w["address"]), str(w["public_key"]),
                str(w.get("log", "")), int(w.get("restarts", 0)), str(w.get("state", "up")),
            )
            for name, w in data["workers"].items()
        }
        if not all(is_public_key(w.public_key) for w in workers.values()):
            raise ClusterFileError(f"cluster file {path} has a malformed worker public key")
        return Cluster(int(data["launcher_pid"]), workers, Path(data["key_dir"]))
    except KeyError as exc:
        raise ClusterFileError(
            f"cluster file {path} is malformed: it has no {exc} entry (`zsyft launch` writes it; "
            "launch the cluster again)") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ClusterFileError(
            f"cluster file {path} is malformed ({exc}): it is not what `zsyft launch` writes; "
            "launch the cluster again") from None


def claim_path(path: Path) -> Path:
    """The lock file a running `zsyft launch` holds locked, next to its cluster file."""
    return path.with_name(path.name + ".lock")


def starting_launch(path: Path) -> int | None:
    """The pid of a `zsyft launch` that holds the claim on `path` but has not written the
    cluster file yet (it is starting its workers), if any."""
    if path.exists() or not launch_running(path):
        return None
    try:
        text = claim_path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def launch_running(path: Path) -> bool:
    """Whether a `zsyft launch` still runs for the cluster file at `path` (it holds the claim's
    lock while it runs, whatever pid it had; a pid recorded in a stale file may belong to an
    unrelated process by now)."""
    try:
        fd = os.open(claim_path(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if this took it
    return False


WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "*": "127.0.0.1"}


def dial_address(bound: str) -> str:
    """The address a client on this host dials for a worker bound to `bound`: a worker
    listening on every interface (`--host 0.0.0.0`) is recorded at the loopback address."""
    scheme, sep, rest = bound.partition("://")
    host, colon, port = rest.rpartition(":")
    if sep and colon and host in WILDCARD_HOSTS:
        return f"{scheme}://{WILDCARD_HOSTS[host]}:{port}"
    return bound


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
