"""The bare pyzmq side of the benchmark: the server process and the client that drives it.

`BareServer.start()` runs `python -m zsyft.bench.bare_server` as its own OS process, listening
like a private zsyft worker on an `ipc://` socket in a fresh 0700 temporary directory (or on
tcp loopback), and waits for its readiness line. `BareClient` is a DEALER connected to it that
sends and receives frames with nothing in between: this is the cost zsyft is compared to.
Both use CURVE unless `curve=False` (as every zsyft worker socket does), so the comparison is
of zsyft's own work. They block in recv as a plain pyzmq program does, unless `awake=True`:
then they first wait for each message awake, for as long as zsyft does (`ZSYFT_SPIN_US`, see
`transport.zmq.spin_poll`), which shows zsyft's own work without the wake-ups both pay. The
`curve-cost` row compares two bare setups to show what the encryption costs.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq

from zsyft.bench.bare_server import CONTROL
from zsyft.transport import keys
from zsyft.transport.zmq import curve_client, spin_poll, spin_setting

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 3.0
RECV_TIMEOUT_MS = 30_000
LARGE_FRAME = 1 << 16  # frames this large are sent without a copy (as zsyft does)
SERVER_MODULE = "zsyft.bench.bare_server"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@functools.cache
def _plain_context() -> zmq.Context:
    """A ZeroMQ context of the bare side's own, as a plain pyzmq program has: not zsyft's,
    whose I/O thread is scheduled differently (`transport.zmq.context`)."""
    return zmq.Context()


class BareServerError(RuntimeError):
    """The bare server could not be started or stopped answering."""


def _read_line(stream: Any, timeout: float) -> str:
    """The first line written to `stream` (a pipe), or "" if none arrives within `timeout`."""
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return ""
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                return ""
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


class BareServer:
    """One bare server process this process started, with its private directory."""

    def __init__(self, transport: str = "ipc", curve: bool = True, awake: bool = False) -> None:
        if transport not in ("ipc", "tcp"):
            raise ValueError(f"transport must be 'ipc' or 'tcp', not {transport!r}")
        self.transport = transport
        self.spin_s = spin_setting() if awake else 0.0
        self.keys = keys.generate() if curve else None
        self.directory: Path | None = None
        self.popen: subprocess.Popen | None = None
        self.address = ""

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def start(self) -> str:
        """Start the process and wait until it listens; returns the address it bound."""
        self.directory = Path(tempfile.mkdtemp(prefix="zsyft-bench-"))
        requested = (
            f"ipc://{self.directory}/bare.sock" if self.transport == "ipc" else "tcp://127.0.0.1:*"
        )
        env = dict(os.environ)
        paths = [_PACKAGE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        log_path = self.directory / "bare.log"
        argv = [sys.executable, "-m", SERVER_MODULE, requested, "--parent-pid", str(os.getpid())]
        argv += ["--spin-us", str(round(self.spin_s * 1e6))]
        if self.keys is not None:
            key_file = self.directory / "bare.key_secret"
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(self.keys.secret)
            argv += ["--key-file", str(key_file)]
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        line = _read_line(self.popen.stdout, READY_TIMEOUT_S)
        self.popen.stdout.close()
        announced = json.loads(line) if line else {}
        if "address" not in announced:
            why = announced.get("error") or log_path.read_text(errors="replace").strip()
            self.stop()
            raise BareServerError(f"the bare pyzmq server did not start: {why or 'no output'}")
        self.address = announced["address"]
        return self.address

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if needed; remove the private directory. Safe to call twice."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT_S)
            except ProcessLookupError:
                pass
        if self.popen is not None and self.popen.stdout and not self.popen.stdout.closed:
            self.popen.stdout.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


class BareClient:
    """A DEALER connected to a bare server: sends and receives frames, nothing else."""

    def __init__(
        self,
        address: str,
        server_key: str | None = None,
        ctx: zmq.Context | None = None,
        spin_s: float = 0.0,
    ) -> None:
        self.socket = (ctx or _plain_context()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
        if server_key is not None:
            curve_client(self.socket, server_key, keys.generate())
        self.socket.connect(address)
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)
        self.spin_s = spin_s  # > 0: wait for each reply awake first, as a zsyft client does

    def send(self, frames: Sequence[Any]) -> None:
        """Send one multipart message; large frames go without a copy."""
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
            self.socket.send(frame, zmq.SNDMORE if i < last else 0, copy=size < LARGE_FRAME)

    def recv(self, copy: bool = True) -> list[Any]:
        """Receive one multipart message (as bytes, or as zmq.Frame without a copy)."""
        if self.spin_s:
            spin_poll(self.poller, self.spin_s)
        try:
            return self.socket.recv_multipart(copy=copy)
        except zmq.Again:
            raise BareServerError(
                f"the bare pyzmq server sent no reply within {RECV_TIMEOUT_MS / 1000:.0f} s"
            ) from None

    def _control(self, *frames: bytes) -> None:
        self.socket.send_multipart([CONTROL, *frames])
        answer = self.recv()
        if answer != [CONTROL, b"ok"]:
            raise BareServerError(f"the bare pyzmq server refused {frames[0]!r}: {answer!r}")

    def reply_after(self, every: int, reply: Sequence[Any]) -> None:
        """From now on the server sends `reply` back after every `every`-th message."""
        frames = [f if isinstance(f, bytes) else bytes(getattr(f, "buffer", f)) for f in reply]
        self._control(b"reply", str(every).encode(), *frames)

    def echo(self) -> None:
        """From now on the server sends every message straight back, without copying."""
        self._control(b"echo")

    def close(self) -> None:
        self.socket.close(0)
