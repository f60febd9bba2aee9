"""ZeroMQ sockets as zsyft uses them: a ROUTER per worker, a DEALER per outbound peer.

Sockets on TCP (and ipc, when keys are given) use CURVE: the ROUTER is a CURVE server whose
ZAP handler (`transport.auth`) admits only known client keys, and a `Link` is a CURVE client
that knows the server's public key, so it cannot be talked to by an impostor. A refused
handshake becomes `AuthenticationError` at the next wait instead of silence. `inproc://`
sockets (in-process unit tests) need no keys.

Every socket has `LINGER=0` and a send timeout; ROUTERs report undeliverable replies
(`ROUTER_MANDATORY`). The DEALER side, which watches its own connection, is `link.Link`. This
module also holds the links' timing (`SETTINGS`), waiting awake for the next message
(`spin_poll`), the I/O threads' scheduling (`context`) and multipart send and receive.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import zmq
from zmq.utils import garbage as zmq_garbage

from zsyft.transport.auth import ZAP_DOMAIN
from zsyft.transport.keys import KeyPair
from zsyft.wire.messages import ZERO_COPY_THRESHOLD


class LinkSettings:
    """Timing of links; tests and `zsyft bench` may tighten these."""

    connect_timeout_s: float = 30.0
    # A worker that is already up (a chain's next hop, a launched worker) and whose address
    # accepts no connection for this long is not running (connects are refused at once).
    refused_grace_s: float = 5.0
    request_timeout_s: float = 120.0
    send_timeout_ms: int = 10_000
    heartbeat_ivl_ms: int = 250
    heartbeat_timeout_ms: int = 3_000
    lost_grace_s: float = 0.1
    reconnect_ivl_ms: int = 100  # a link's first reconnect; each failed one doubles it...
    reconnect_ivl_max_ms: int = 1_000  # ...up to this (a handshake's failure restarts at 100)
    spin_s: float | None = None  # waiting awake for a reply (`spin_poll`); None: `spin_setting`
    # Also while other Python threads run: set in worker processes, whose one other thread
    # (the key checker) works during handshakes only.
    spin_beside_threads: bool = False


SETTINGS = LinkSettings()


# Plain ints, not pyzmq's enums: `zmq.EVENTS & zmq.POLLIN` or passing `zmq.SNDMORE` runs
# Python's enum code on every call, per frame.
_SNDMORE, _RCVMORE = int(zmq.SNDMORE), int(zmq.RCVMORE)
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)

DEFAULT_SPIN_S = 0.0003
SPIN_ENV = "ZSYFT_SPIN_US"


def spin_setting() -> float:
    """How long worker processes and clients wait awake for the next message (`spin_poll`),
    in seconds: `ZSYFT_SPIN_US` (0 turns it off), else 300 µs."""
    text = os.environ.get(SPIN_ENV, "").strip()
    if text and not text.isdigit():
        raise ValueError(f"{SPIN_ENV} must be a whole number of microseconds, got {text!r}")
    return int(text) / 1e6 if text else DEFAULT_SPIN_S


def awake_wait_s() -> float:
    """How long a link waits for a reply awake: only in a process whose one Python thread is
    the caller (a spinning thread would keep the interpreter lock from any other one)."""
    if SETTINGS.spin_s is None:
        SETTINGS.spin_s = spin_setting()
    alone = SETTINGS.spin_beside_threads or _only_python_thread()
    return SETTINGS.spin_s if alone else 0.0


def _only_python_thread() -> bool:
    """Whether no other Python thread may want the interpreter lock. pyzmq's garbage
    collector thread does not count: the first zero-copy send (a large tensor) starts it for
    good, and it sleeps in a socket's recv until ZeroMQ is done with a buffer. Counting it
    made every later round trip of the process wait asleep (~120 → ~200 µs)."""
    threads = threading.active_count()
    if threads == 1:
        return True
    collector = zmq_garbage.gc.thread
    return threads == 2 and collector is not None and collector.is_alive()


def spin_poll(poller: zmq.Poller, spin_s: float) -> list[tuple[Any, int]]:
    """Poll without blocking for up to `spin_s` seconds (giving the CPU to other runnable
    threads between checks); the events as soon as there are any, else [].

    A process that blocks in poll is woken by the kernel when a message arrives, and on a busy
    or virtualised machine that wake-up and the cold caches after it cost tens of µs per
    message. Right after a message, the next one usually follows within a few hundred µs (the
    reply to a request, the rest of a burst, the next protocol round): waiting for it awake
    saves that, for at most `spin_s` of CPU per message.
    """
    deadline = time.perf_counter() + spin_s
    while True:
        events = poller.poll(0)
        if events or time.perf_counter() >= deadline:
            return events
        os.sched_yield()


def poll_awake(poller: zmq.Poller, spin_s: float, timeout_ms: int) -> list[tuple[Any, int]]:
    """`poller.poll(timeout_ms)`, after waiting awake for up to `spin_s` (0: at once)."""
    return (spin_s and spin_poll(poller, spin_s)) or poller.poll(timeout_ms)


IO_BATCH_ENV = "ZSYFT_IO_BATCH"
_TASKS = "/proc/self/task"
_tuned = False


def context() -> zmq.Context:
    """The process-wide ZeroMQ context (one I/O thread serves every socket), its threads
    scheduled so that they do not preempt this process's own (`batch_threads`)."""
    global _tuned
    ctx = zmq.Context.instance()
    if not _tuned:
        _tuned = True
        if os.environ.get(IO_BATCH_ENV, "1").strip() != "0" and os.path.isdir(_TASKS):
            batch_threads(_start_threads(ctx))
    return ctx


def _thread_name(tid: str) -> str:
    try:
        with open(f"{_TASKS}/{tid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def _start_threads(ctx: zmq.Context) -> set[str]:
    """libzmq starts its reaper and I/O threads with a context's first socket: make one and
    return the ids of the threads that appeared. None if ZeroMQ threads run already (another
    part of the program started the shared context, as Jupyter's kernel does): those are left
    as they are."""
    before = set(os.listdir(_TASKS))
    if any(_thread_name(tid).startswith("ZMQbg/") for tid in before):
        return set()
    ctx.socket(zmq.PAIR).close(0)
    deadline = time.monotonic() + 0.2
    while True:
        started = set(os.listdir(_TASKS)) - before
        if len(started) >= 2 or time.monotonic() > deadline:
            return started
        time.sleep(0.001)


def batch_threads(thread_ids: set[str]) -> int:
    """Give these threads of this process (ZeroMQ's I/O and reaper threads) Linux's
    SCHED_BATCH policy; returns how many changed.

    Each message a thread sends wakes the I/O thread, which the scheduler would otherwise
    run at once on the sender's core, in the middle of its work: a send then costs two
    context switches (20-60 µs on a busy 2-core machine). A SCHED_BATCH thread still runs at
    once on an idle core, but on a busy one it waits until the sender blocks or yields, which
    it does right after sending (it waits for the reply). Same priority, no privileges needed.
    In alternating `zsyft bench` runs a remote op's round trip went from 259-280 to 196-203 µs
    and a 1-element encrypted mul from 1.4 to 1.2-1.3 ms. Off with `ZSYFT_IO_BATCH=0`.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    changed = 0
    for tid in thread_ids if policy is not None else ():
        try:
            os.sched_setscheduler(int(tid), policy, os.sched_param(0))
            changed += 1
        except OSError:
            continue  # the thread is gone, or the system refuses: keep the default
    return changed


def send_frames(socket: zmq.Socket, frames: Sequence[Any], prefix: bytes | None = None) -> None:
    """Send one multipart message; large buffers go zero-copy, small ones by copy (faster)."""
    last = len(frames) - 1
    if prefix is not None:
        socket.send(prefix, _SNDMORE)
    for i, frame in enumerate(frames):
        size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
        socket.send(frame, _SNDMORE if i < last else 0, copy=size < ZERO_COPY_THRESHOLD)


def recv_frames(socket: zmq.Socket) -> list[Any]:
    """Receive one multipart message: small frames as bytes, large ones as zmq.Frame."""
    frames = [socket.recv()]
    while socket.getsockopt(_RCVMORE):
        frame = socket.recv(copy=False)
        frames.append(frame.bytes if len(frame) < ZERO_COPY_THRESHOLD else frame)
    return frames


def recv_routed(socket: zmq.Socket) -> tuple[bytes, zmq.Frame, list[Any]]:
    """One message on a ROUTER: the sender's routing id, the message's first frame as a
    `zmq.Frame` (its metadata names the sender's key and connection), and all its frames."""
    identity = socket.recv()
    first = socket.recv(copy=False)
    frames = [first.bytes]
    while socket.getsockopt(_RCVMORE):
        frame = socket.recv(copy=False)
        frames.append(frame.bytes if len(frame) < ZERO_COPY_THRESHOLD else frame)
    return identity, first, frames


_monitors = itertools.count()


def watch(socket: zmq.Socket, events: int) -> zmq.Socket:
    """A PAIR socket that receives `socket`'s monitor `events`; close both with `unwatch`.

    libzmq's I/O thread sends each event and blocks while the monitor's queue is full, and
    with it every connection of the process stalls. A link that nobody reads while it
    reconnects to a worker refusing it (~30 events a second against a wrong key) filled
    pyzmq's default queue (2,000 events) within a minute; so this queue has no bound. An event
    is a few dozen bytes, and a link's events are read at its next use.
    """
    address = f"inproc://zsyft-monitor-{os.getpid()}-{next(_monitors)}"
    socket.monitor(address, events)
    reader = socket.context.socket(zmq.PAIR)
    reader.setsockopt(zmq.LINGER, 0)
    reader.setsockopt(zmq.RCVHWM, 0)  # no bound (set before connecting: it sizes the queue)
    reader.connect(address)
    return reader


def unwatch(socket: zmq.Socket, reader: zmq.Socket) -> None:
    """Close `socket` and the monitor `reader` of it (`watch`); safe to call twice.

    The monitor stops first: libzmq's I/O thread blocks for good on an event whose reader is
    closed, stalling every connection of the process (as when garbage collection closed a
    dropped link's reader before its socket).
    """
    if socket.closed:
        reader.close(0)
        return
    try:
        socket.disable_monitor()
    except zmq.ZMQError:
        pass  # the context is already terminated (interpreter exit)
    reader.close(0)
    socket.close(0)


def readable(socket: zmq.Socket) -> bool:
    """Whether a message is waiting on `socket`, without blocking (one option read; cheaper
    than `socket.poll(0)`, which builds a poller per call)."""
    return bool(socket.getsockopt(_EVENTS) & _POLLIN)


def curve_client(socket: zmq.Socket, server_key: str, client: KeyPair) -> None:
    """Make `socket` (before it connects) a CURVE client of the server with `server_key`."""
    socket.setsockopt_string(zmq.CURVE_SERVERKEY, server_key)
    socket.setsockopt_string(zmq.CURVE_PUBLICKEY, client.public)
    socket.setsockopt_string(zmq.CURVE_SECRETKEY, client.secret)


def common_options(socket: zmq.Socket, address: str) -> None:
    if address.startswith("tcp://["):  # an IPv6 address, e.g. tcp://[::1]:5555
        socket.setsockopt(zmq.IPV6, 1)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDTIMEO, SETTINGS.send_timeout_ms)
    socket.setsockopt(zmq.HEARTBEAT_IVL, SETTINGS.heartbeat_ivl_ms)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, SETTINGS.heartbeat_timeout_ms)
    socket.setsockopt(zmq.HEARTBEAT_TTL, SETTINGS.heartbeat_timeout_ms)


def server_socket(
    ctx: zmq.Context, address: str, keys: KeyPair | None = None
) -> tuple[zmq.Socket, str]:
    """A bound ROUTER socket and the endpoint it actually listens on (port 0/`*` resolved).

    With `keys` it is a CURVE server; the caller must have started the ZAP handler
    (`transport.auth.Authenticator`) first. TCP without keys is refused.
    """
    if keys is None and address.startswith("tcp://"):
        raise ValueError(
            f"refusing to listen on {address} without CURVE keys: pass the worker a key file "
            "(`zsyft launch` and sy.VirtualWorker create one), or use an ipc:// address"
        )
    socket = ctx.socket(zmq.ROUTER)
    common_options(socket, address)
    if keys is not None:
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt_string(zmq.CURVE_SECRETKEY, keys.secret)
        socket.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
    socket.setsockopt(zmq.SNDTIMEO, 0)  # never let one slow client block the worker loop
    try:
        socket.bind(address)
    except zmq.ZMQError:
        socket.close(0)
        raise
    return socket, socket.getsockopt_string(zmq.LAST_ENDPOINT)
