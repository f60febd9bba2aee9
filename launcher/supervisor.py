"""Run a set of named workers in the foreground: start, record, watch, and stop them all.

`Supervisor.start()` spawns every worker in parallel (startup is dominated by importing torch,
so this is what keeps `zsyft launch bob alice james` under 3 s), waits for each readiness
line, and writes the cluster file. `run_until_signal()` then watches the workers until SIGINT
or SIGTERM, and `stop()` stops them all (SIGTERM, then SIGKILL after 3 s) and removes the file.
If any worker fails to start, the ones already started are stopped and `LaunchError` names
the failing worker with its log.

With `restart=True` a worker that dies is started again (same name, address and key pair, so
clients reconnect by themselves; what it held is lost and says so), after a backoff that
doubles from 0.5 s up to 8 s, at most `max_restarts` times; then the supervisor gives up on it.
The cluster file records each worker's restarts and state ("up", "restarting", "gave-up"),
which `zsyft status` shows.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from launcher import cluster
from launcher.spawn import STOP_TIMEOUT_S, WorkerProcess, spawn
from zsyft.errors import ClusterFileError, LaunchError
from zsyft.transport import keys

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def name_problem(name: object) -> str | None:
    """Why `name` cannot name a worker (it names its process, socket, log and key files), or
    None if it can."""
    if isinstance(name, str) and NAME_PATTERN.match(name):
        return None
    return (
        f"worker name {name!r} is not allowed: use 1 to 64 ASCII letters, digits, '_', '.' "
        "or '-' (not '.' or '-' first), e.g. 'bob'"
    )


def validate_names(names: tuple[str, ...] | list[str]) -> None:
    """Refuse empty lists, odd characters and a name used twice, saying which."""
    if not names:
        raise LaunchError("name at least one worker, e.g. `zsyft launch bob alice james`")
    seen: set[str] = set()
    for name in names:
        if (problem := name_problem(name)) is not None:
            raise LaunchError(problem)
        if name in seen:
            raise LaunchError(f"worker name {name!r} is given twice; names must be unique")
        seen.add(name)


def process_is(pid: int, marker: str) -> bool:
    """Whether `pid` is alive and its command line contains `marker` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc: trust the pid
    return marker in cmdline


class Supervisor:
    """Owns the worker processes of one `zsyft launch`."""

    def __init__(
        self,
        names: list[str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        cluster_file: Path | None = None,
        log_dir: Path | None = None,
        key_dir: Path | None = None,
        restart: bool = False,
        max_restarts: int = 5,
    ) -> None:
        validate_names(names)
        self.restart = restart
        self.max_restarts = max_restarts
        self.restarts: dict[str, int] = dict.fromkeys(names, 0)
        self.states: dict[str, str] = dict.fromkeys(names, "up")
        self._due: dict[str, float] = {}  # name -> when to restart it
        self.names = names
        self.host = host
        self.port = port
        self.cluster_file = cluster_file or cluster.default_path()
        # absolute: the cluster file tells clients in other directories where these are
        self.log_dir = (log_dir or keys.zsyft_home() / "logs").absolute()
        self.key_dir = (key_dir or keys.default_key_dir()).absolute()
        self.processes: list[WorkerProcess] = []
        self._stopping = False
        self._claim: int | None = None  # the locked claim on the cluster file, while held

    def _address(self, index: int) -> str:
        port = "*" if self.port is None else str(self.port + index)
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"tcp://{host}:{port}"

    def _claim_cluster_file(self) -> None:
        """Hold a lock on the cluster file's claim for as long as this launch runs, or refuse
        to start: two launches recording into one file would overwrite each other's workers
        (the lock also covers the seconds before the file exists; the system drops it when
        this process exits, however it exits)."""
        path = cluster.claim_path(self.cluster_file)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                running = cluster.read(self.cluster_file)
                what = (f"a cluster launched by pid {running.launcher_pid} is already running "
                        f"({', '.join(running.workers)})")
            except ClusterFileError:
                what = "another `zsyft launch` is starting workers"
            raise LaunchError(
                f"{what} with the cluster file {self.cluster_file}; stop it with `zsyft stop`"
                " or pass another --cluster-file"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())  # `zsyft stop` finds a launch still starting
        self._claim = fd

    def _release_cluster_file(self) -> None:
        if self._claim is not None:
            cluster.remove(self.cluster_file)
            os.close(self._claim)
            self._claim = None

    def start(self) -> list[cluster.WorkerRecord]:
        """Start every worker and write the cluster file; all or nothing."""
        self._claim_cluster_file()
        try:
            for index, name in enumerate(self.names):
                log = self.log_dir / f"{name}.log"
                self.processes.append(
                    spawn(name, self._address(index), log, key_dir=self.key_dir)
                )
            for process in self.processes:
                process.wait_ready()
        except BaseException:
            self.stop()
            raise
        keys.client_pair(self.key_dir)  # so the user can connect at once
        return self._record()

    def _record(self) -> list[cluster.WorkerRecord]:
        records = [
            cluster.WorkerRecord(
                p.name, p.pid, cluster.dial_address(p.address or ""), p.public_key or "",
                str(p.log_path),
                self.restarts[p.name], self.states[p.name],
            )
            for p in self.processes
        ]
        cluster.write(self.cluster_file, os.getpid(), records, self.key_dir)
        return records

    def run_until_signal(self, on_exit: Callable[[str], object] = print) -> None:
        """Block until SIGINT, SIGTERM or SIGHUP (the terminal closed), reporting workers
        that exit on their own."""

        def request_stop(signum: int, frame: object) -> None:
            self._stopping = True

        previous = {s: signal.signal(s, request_stop) for s in STOP_SIGNALS}
        try:
            while not self._stopping:
                time.sleep(0.1)
                for process in self.processes:
                    if self.states[process.name] == "up" and not process.alive():
                        on_exit(process.diagnose() or f"worker {process.name} exited")
                        self._schedule_restart(process, on_exit)
                    elif process.name in self._due and time.monotonic() >= self._due[process.name]:
                        self._restart(process, on_exit)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _schedule_restart(self, process: WorkerProcess, on_exit: Callable[[str], object]) -> None:
        done = self.restarts[process.name]
        if not self.restart or done >= self.max_restarts:
            self.states[process.name] = "gave-up" if self.restart else "down"
            if self.restart:
                on_exit(f"gave up on worker {process.name} after {done} restart(s)")
        else:
            delay = min(0.5 * 2**done, 8.0)
            self.states[process.name] = "restarting"
            self._due[process.name] = time.monotonic() + delay
            on_exit(f"restarting worker {process.name} in {delay:g} s")
        self._record()

    def _restart(self, process: WorkerProcess, on_exit: Callable[[str], object]) -> None:
        del self._due[process.name]
        self.restarts[process.name] += 1
        try:
            process.respawn()
            process.wait_ready()
        except LaunchError as exc:
            on_exit(f"restarting worker {process.name} failed: {exc}")
            self._schedule_restart(process, on_exit)
            return
        self.states[process.name] = "up"
        on_exit(f"worker {process.name} restarted (pid {process.pid})")
        self._record()

    def stop(self) -> None:
        """Stop every worker (in parallel, within one shared grace period: SIGKILL for those
        still running after it) and remove the cluster file."""
        for process in self.processes:
            if process.alive():
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes:
            process.stop(timeout=deadline - time.monotonic())
        self._release_cluster_file()
