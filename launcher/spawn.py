"""Start worker processes and know when they are ready.

Each worker is `python launcher/bin/zsyft-worker NAME --address ADDR --key-file PATH
--parent-pid PID`: `ps` shows it as `zsyft-worker NAME`. The spawner creates the worker's
CURVE key pair in the key directory (`$ZSYFT_HOME/keys` by default) and removes it when the
worker stops; pairs of spawners killed with -9 are swept at the next spawn. Its stderr goes to
a log file; its stdout carries one JSON readiness line with the address it actually bound (so
port 0 picks a free port without races) and its public key. With `die_with_parent` (the
default) the worker exits when the spawning process does, even after `kill -9` of that process.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zsyft
from zsyft.errors import LaunchError
from zsyft.transport import keys

WORKER_SCRIPT = Path(__file__).with_name("bin") / "zsyft-worker"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 3.0
KILL_WAIT_S = 1.0  # after SIGKILL: the kernel reaps at once unless the host is swamped
EXIT_GRACE_S = 2.0  # a worker that closed its output without starting exits within this
_PROJECT_ROOT = str(Path(zsyft.__file__).resolve().parent.parent)


@dataclass
class WorkerProcess:
    """A worker process this process started: its name, pid, log file and (once ready) address."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    address: str | None = None
    public_key: str | None = None
    key_dir: Path | None = None
    key_stem: str | None = None
    owned_dir: Path | None = None
    argv: list[str] = field(default_factory=list, repr=False)
    incarnation: int = 1
    ready: bool = False
    startup_error: str | None = None  # what it announced instead of starting ("" if nothing)
    log_offset: int = 0  # where this run's lines start in the (appended) log file
    _ready_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines this run of the worker wrote to its log (its stderr); earlier runs'
        lines in the same file are not this run's story."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _log_note(self) -> str:
        tail = self.log_tail()
        return f"; its log ({self.log_path})" + (f":\n{tail}" if tail else " is empty")

    def diagnose(self) -> str | None:
        """Why the worker may not answer: its exit status, the error it announced instead of
        starting (if any) and its log tail, if it exited."""
        code = self.popen.poll()
        if code is None:
            return None
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        if self.startup_error is None and self.popen.stdout and not self.popen.stdout.closed:
            line = _read_line(self.popen, 0.1)  # it exited: what it wrote is all there
            self.startup_error = str(_announcement(line).get("error") or "")
        if self.startup_error:
            how += f" without starting: {self.startup_error}"
        return f"worker process {self.name} (pid {self.pid}) {how}" + self._log_note()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Block until the worker printed its readiness line; return its bound address."""
        with self._ready_lock:
            if self.ready:
                return self.address
            started = time.monotonic()
            line = _read_line(self.popen, timeout)
            if not line:
                try:  # its output closed: it is exiting (or it is stuck, and we stop it)
                    self.popen.wait(EXIT_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
                why = self.diagnose()  # before terminate(): its own exit, not our SIGKILL
                if why is None:  # still running: stuck, or its output closed early
                    waited = time.monotonic() - started
                    why = (f"no readiness line within {timeout:.0f} s" if waited >= timeout
                           else f"it closed its output after {waited:.1f} s without a readiness "
                           "line") + " (its process was stopped)" + self._log_note()
                self.terminate()
                raise LaunchError(f"worker {self.name!r} failed to start: {why}")
            announced = _announcement(line)
            if "error" in announced:
                self.terminate()
                raise LaunchError(f"worker {self.name!r} failed to start: {announced['error']}")
            if not isinstance(announced.get("address"), str):
                self.terminate()
                raise LaunchError(
                    f"worker {self.name!r} failed to start: it printed {line[:200]!r} instead "
                    f"of its readiness line (something in it writes to stdout at start-up)"
                    + self._log_note()
                )
            if announced.get("public_key") != self.public_key:
                self.terminate()
                raise LaunchError(f"worker {self.name!r} announced a key it was not given")
            self.address = announced["address"]
            self.ready = True
            self.popen.stdout.close()
            return self.address

    def respawn(self) -> None:
        """Start the worker again after it died: same name, address and key pair, so clients
        reconnect by themselves (their old objects are gone: the new worker says so)."""
        if self.alive() or self.address is None:
            raise LaunchError(f"worker {self.name!r} can only be restarted after it ran and died")
        self.incarnation += 1
        argv = list(self.argv)
        argv[argv.index("--address") + 1] = self.address
        self.log_offset = _size(self.log_path)
        self.popen = _popen([*argv, "--incarnation", str(self.incarnation)], self.log_path)
        self.ready = False

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Terminate it; remove its key pair and its private directory if any."""
        self.terminate(timeout)
        if self.key_stem is not None and self.key_dir is not None:
            keys.remove_pair(self.key_dir, self.key_stem)
            self.key_stem = None
        if self.owned_dir is not None:
            for path in self.owned_dir.iterdir():
                path.unlink(missing_ok=True)
            self.owned_dir.rmdir()
            self.owned_dir = None

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL after `timeout` (files stay: it may be started again)."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(max(timeout, 0.0))
            except subprocess.TimeoutExpired:
                self.popen.kill()  # also ends a stopped (SIGSTOP) or still-importing worker
                self.popen.wait(KILL_WAIT_S)
            except ProcessLookupError:
                pass
        if self.popen.stdout and not self.popen.stdout.closed:
            self.popen.stdout.close()


def _announcement(line: str) -> dict:
    """A worker's readiness line as a dict ({} if it is not a JSON object)."""
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _read_line(popen: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(popen.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return ""
            chunk = os.read(popen.stdout.fileno(), 4096)
            if not chunk:
                return ""
            buffer += chunk
    finally:
        selector.close()
    return buffer.split(b"\n", 1)[0].decode()


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [_PROJECT_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # With --threads > 1, idle OpenMP threads sleep instead of spinning on shared cores.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def spawn(
    name: str,
    address: str,
    log_path: Path,
    *,
    die_with_parent: bool = True,
    owned_dir: Path | None = None,
    key_dir: Path | None = None,
) -> WorkerProcess:
    """Start one worker process; returns at once (call `wait_ready()` before relying on it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)  # before any key file is written
    key_dir = keys.private_dir(key_dir or keys.default_key_dir())
    keys.sweep_stale_pairs(key_dir)
    stem = f"w{os.getpid()}-{name}-{secrets.token_hex(4)}"
    pair = keys.write_pair(key_dir, stem)
    argv = [sys.executable, str(WORKER_SCRIPT), name, "--address", address,
            "--key-file", str(key_dir / (stem + keys.SECRET_SUFFIX))]
    if die_with_parent:
        argv += ["--parent-pid", str(os.getpid())]
        if threading.current_thread() is not threading.main_thread():
            # Linux's PDEATHSIG fires when the spawning *thread* ends (a thread pool, a
            # notebook's background thread): such a worker watches the parent process instead.
            argv += ["--watch-parent-only"]
    log_offset = _size(log_path)
    try:
        popen = _popen(argv, log_path)
    except BaseException:
        keys.remove_pair(key_dir, stem)
        raise
    return WorkerProcess(
        name, popen, log_path, public_key=pair.public, key_dir=key_dir, key_stem=stem,
        owned_dir=owned_dir, argv=argv, log_offset=log_offset,
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _popen(argv: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=_worker_env(),
            start_new_session=True,  # a Ctrl-C in the parent's terminal is the parent's
        )


PRIVATE_PREFIX = "zsyft-"
"""Private worker directories are `zsyft-<spawning pid>-<random>` in the temp directory."""


def sweep_stale_private_dirs() -> None:
    """Remove the private directories (socket and log) of workers whose spawning process is
    gone: after a `kill -9` of it its workers die too (PDEATHSIG), and nobody is left to."""
    try:
        candidates = list(Path(tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*-*"))
    except OSError:
        return
    uid = os.getuid()
    for path in candidates:
        parts = path.name.split("-")
        if len(parts) != 3 or not parts[1].isdigit() or keys.pid_alive(int(parts[1])):
            continue
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != uid:
                continue
            for child in path.iterdir():
                child.unlink(missing_ok=True)
            path.rmdir()
        except OSError:
            continue  # another process swept it first, or it holds more than we put there


def spawn_private(name: str) -> WorkerProcess:
    """A worker only this process can reach: an ipc:// socket in a fresh 0700 directory.

    Its address is known before it is ready, so callers may connect at once and let the
    first request wait (ZeroMQ connects as soon as the worker binds).
    """
    sweep_stale_private_dirs()
    directory = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-"))
    process = spawn(
        name, f"ipc://{directory}/{name}.sock", directory / f"{name}.log", owned_dir=directory
    )
    process.address = f"ipc://{directory}/{name}.sock"
    return process
