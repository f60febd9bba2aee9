"""The bare pyzmq server process that zsyft's workers are measured against.

    python -m zsyft.bench.bare_server ADDRESS [--parent-pid PID]

With `--key-file` it is a CURVE server, so that it pays the same encryption as a worker.
It binds one ROUTER socket at ADDRESS (an `ipc://` path or `tcp://127.0.0.1:*`), prints one
JSON line `{"pid", "address"}` on stdout once bound (the address with any `*` port resolved),
and then answers a client with as little work as pyzmq allows. It imports only pyzmq: no
decoding, no object store, no executor, so it shows what the transport alone costs. With
`--spin-us` it waits for each next message awake for that long before it blocks, as zsyft's
workers do (`zsyft.transport.zmq.spin_poll`).

What it does with a message depends on its mode, set by a control message from the client:

- reply mode (`reply`, N, *frames): count incoming messages; after every N-th one send back
  the stored frames. Used to replay a zsyft exchange (N commands, then one reply).
- echo mode (`echo`): send every message straight back, received and sent without copying.

A control message starts with the frame `CONTROL`, which no zsyft message can start with
(zsyft headers are msgpack arrays), and is acknowledged with `[CONTROL, b"ok"]`.

Like a zsyft worker, the server stops on SIGTERM/SIGINT and dies with the process that started
it (Linux PDEATHSIG, plus a parent check whenever the socket has been idle for a moment).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import signal
import sys
import time
from typing import Any

import zmq

CONTROL = b"\x00zsyft-bench-control"
IDLE_CHECK_MS = 200
PROCESS_NAME = b"zsyft-bare"
_POLLIN = int(zmq.POLLIN)
_PR_SET_PDEATHSIG, _PR_SET_NAME = 1, 15


class _Stop(Exception):
    """Raised by the signal handler to leave the serving loop at once."""


def _prctl(option: int, value: int | bytes) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the idle-time parent check still applies


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _control(socket: zmq.Socket, identity: Any, frames: list[Any], state: dict[str, Any]) -> None:
    """Apply one control message (`frames` excludes the identity and the CONTROL frame)."""
    verb = _as_bytes(frames[0]) if frames else b""
    if verb == b"reply":
        state.update(copy=True, echo=False, every=int(_as_bytes(frames[1])), count=0)
        state["reply"] = [_as_bytes(frame) for frame in frames[2:]]
    elif verb == b"echo":
        state.update(copy=False, echo=True, count=0)
    else:
        socket.send_multipart([identity, CONTROL, b"unknown verb " + verb])
        return
    socket.send_multipart([identity, CONTROL, b"ok"])


def _as_bytes(frame: Any) -> bytes:
    return frame if isinstance(frame, bytes) else frame.bytes


def _wait_awake(socket: zmq.Socket, spin_s: float) -> None:
    """Return once a message waits on `socket`, or after `spin_s` seconds (the way zsyft's
    workers wait for the next message before they block, so both pay the same wake-ups)."""
    deadline = time.perf_counter() + spin_s
    while not socket.getsockopt(zmq.EVENTS) & _POLLIN and time.perf_counter() < deadline:
        os.sched_yield()


def serve(socket: zmq.Socket, parent_pid: int, spin_s: float = 0.0) -> None:
    """Answer messages until a signal arrives or the parent process is gone."""
    state: dict[str, Any] = {"copy": True, "echo": False, "every": 1, "count": 0, "reply": []}
    while True:
        if spin_s:
            _wait_awake(socket, spin_s)
        try:
            message = socket.recv_multipart(copy=state["copy"])
        except zmq.Again:
            if parent_pid and os.getppid() != parent_pid:
                return
            continue
        identity = message[0]
        head = message[1]
        if len(head) == len(CONTROL) and _as_bytes(head) == CONTROL:
            _control(socket, identity, message[2:], state)
        elif state["echo"]:
            socket.send_multipart(message, copy=False)
        else:
            state["count"] += 1
            if state["count"] >= state["every"]:
                state["count"] = 0
                socket.send_multipart([identity, *state["reply"]])


def main(argv: list[str] | None = None) -> int:
    """Bind, announce the address, serve until stopped; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m zsyft.bench.bare_server")
    parser.add_argument("address")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--key-file", default=None, help="CURVE secret key file (Z85)")
    parser.add_argument("--spin-us", type=int, default=0, help="wait awake this long first")
    args = parser.parse_args(argv)
    _prctl(_PR_SET_NAME, PROCESS_NAME)
    if args.parent_pid:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != args.parent_pid:
            return 1
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)

    ctx = zmq.Context()
    socket = ctx.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, IDLE_CHECK_MS)
    if args.key_file:  # encrypted like a zsyft worker (no ZAP: it only costs at handshake)
        with open(args.key_file) as key_file:
            socket.setsockopt_string(zmq.CURVE_SECRETKEY, key_file.read().strip())
        socket.setsockopt(zmq.CURVE_SERVER, 1)
    try:
        socket.bind(args.address)
    except zmq.ZMQError as exc:
        sys.stdout.write(json.dumps({"error": f"cannot listen on {args.address}: {exc}"}) + "\n")
        return 2
    address = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    sys.stdout.write(json.dumps({"pid": os.getpid(), "address": address}) + "\n")
    sys.stdout.flush()
    sys.stdout.close()
    try:
        serve(socket, args.parent_pid, args.spin_us / 1e6)
    except _Stop:
        pass
    finally:
        socket.close(0)
        ctx.term()
        if address.startswith("ipc://"):
            try:
                os.unlink(address[len("ipc://") :])
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
