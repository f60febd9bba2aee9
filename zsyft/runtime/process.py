"""The worker process: command line, process title, parent watch, signals, readiness line.

Started by `launcher.spawn` as `python .../zsyft-worker NAME --address ADDR --key-file PATH
[--parent-pid PID]`. `--key-file` names the worker's secret key file (the key itself never
appears in argv); the worker is a CURVE server with that key, admits the clients whose public
keys are in the key directory (`--key-dir`, default: the key file's directory) and dials its
peers with the same key. Once its socket is bound it prints one JSON line
`{"name", "pid", "address", "public_key"}` on stdout and
closes stdout, so the spawner knows it is ready and where it listens (or `{"name", "error"}`
if it cannot bind, e.g. the port is in use). With `--parent-pid` the
worker dies with that process: the kernel sends SIGKILL when the parent exits (Linux
PDEATHSIG), and the loop also checks the parent every tick where PDEATHSIG is unavailable
(or was not armed: `--watch-parent-only`, for workers spawned by a thread other than the main
one, since PDEATHSIG follows the spawning thread).
SIGTERM and SIGINT stop the loop cleanly. A worker runs torch ops on `--threads` threads
(`ZSYFT_WORKER_THREADS`, default 1), since the workers of a host share its cores.

For privacy audits (and zsyft's own privacy tests), `ZSYFT_RECORD_FRAMES=DIR` makes the worker
append every frame it receives to `DIR/NAME.frames`. It writes shares to disk: never set it
for real data.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zsyft.runtime.clients import DEFAULT_LEASE_S

LEASE_ENV = "ZSYFT_LEASE_S"  # default for --lease
THREADS_ENV = "ZSYFT_WORKER_THREADS"  # default for --threads
RECORD_ENV = "ZSYFT_RECORD_FRAMES"  # audit: record every received frame into this directory
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1


def _prctl(option: int, value: int | bytes) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the tick-based parent check still applies


def _die_with_parent(parent_pid: int) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before PDEATHSIG was armed
        os._exit(1)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zsyft-worker", description="Run one zsyft worker.")
    parser.add_argument("name")
    parser.add_argument("--address", default="tcp://127.0.0.1:*")
    parser.add_argument("--key-file", type=Path, default=None)
    parser.add_argument("--key-dir", type=Path, default=None)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument(
        "--watch-parent-only", action="store_true",
        help="no PDEATHSIG (the spawning thread may end before the parent process does)",
    )
    parser.add_argument("--incarnation", type=int, default=1, help="1 + restarts so far")
    parser.add_argument(
        "--lease", type=float, default=_from_env(parser, LEASE_ENV, float, DEFAULT_LEASE_S),
        help="seconds a disconnected client's objects are kept for it to come back",
    )
    parser.add_argument(
        "--threads", type=int, default=_from_env(parser, THREADS_ENV, int, 1),
        help="torch intra-op threads (default 1: workers on one host share its cores)",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1 (or unset {THREADS_ENV}), got {args.threads}")
    return args


def _from_env(
    parser: argparse.ArgumentParser, name: str, kind: type[int] | type[float], default: Any
) -> Any:
    """A default read from environment variable `name`; a clear usage error if malformed."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        parser.error(f"{name} must be {what}, got {text!r} (unset it for the default)")


def _announce(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    sys.stdout.close()


def main(argv: list[str] | None = None, peer_factory: Callable[[], Any] | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT, or until its parent exits.

    `peer_factory` makes the object that lets this worker hold pointers to other workers.
    """
    args = _parse(argv)
    _prctl(PR_SET_NAME, b"zsyft-worker")
    if args.parent_pid and not args.watch_parent_only:
        _die_with_parent(args.parent_pid)
    logging.basicConfig(level=args.log_level, format=f"%(asctime)s {args.name} %(message)s")

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    import torch
    import zmq

    from zsyft.errors import KeyFileError
    from zsyft.runtime.worker import Worker  # imported after the cheap setup above
    from zsyft.transport import keys
    from zsyft.transport.auth import Authenticator
    from zsyft.transport.zmq import SETTINGS, context, spin_setting

    # Several workers (and the client) usually share one host's cores: a torch pool per worker
    # oversubscribes them, and its spinning threads slow every other process (a shared ReLU
    # on 1e5 elements ran 2.5x slower with torch's default of one thread per core).
    torch.set_num_threads(args.threads)
    authenticator = None
    try:
        pair = None
        if args.key_file is not None:
            pair = keys.read_pair(args.key_file)
            keys.set_identity(pair)
            authenticator = Authenticator(context(), args.key_dir or args.key_file.parent)
        record_dir = os.environ.get(RECORD_ENV)
        record = os.path.join(record_dir, f"{args.name}.frames") if record_dir else None
        peer = peer_factory() if peer_factory else None
        worker = Worker(
            args.name, args.address, peer=peer, record=record, keys=pair,
            authenticator=authenticator, lease_s=args.lease, spin_s=spin_setting(),
        )
        SETTINGS.spin_s, SETTINGS.spin_beside_threads = worker.spin_s, True  # its peer links
        if args.incarnation > 1:
            worker.store.restarted = args.incarnation
    except (zmq.ZMQError, ValueError, KeyFileError) as exc:
        why = f"cannot listen on {args.address}" if isinstance(exc, zmq.ZMQError) else "bad setup"
        _announce({"name": args.name, "error": f"{why}: {exc}"})
        if authenticator is not None:
            authenticator.stop()
        return 2
    _announce({
        "name": args.name,
        "pid": os.getpid(),
        "address": worker.address,
        "public_key": pair.public if pair else None,
    })

    from zsyft.runtime.allocation import warm_up

    warm_up()  # while the client is still starting up, not on its first command

    def should_stop() -> bool:
        return stopping or (args.parent_pid != 0 and os.getppid() != args.parent_pid)

    try:
        worker.serve(should_stop, tick_ms=250)
    finally:
        worker.close()
        if authenticator is not None:
            authenticator.stop()
        if worker.address.startswith("ipc://"):
            try:
                os.unlink(worker.address[len("ipc://") :])
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
