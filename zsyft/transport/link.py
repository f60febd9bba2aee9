"""`Link`: the DEALER side of a connection to one named worker, which knows when it is gone.

A link watches its own connection with a socket monitor and ZMTP heartbeats, which libzmq's
I/O thread answers even while the peer's Python code is busy: a killed peer shows up as a
disconnect at once, a frozen one after the heartbeat timeout. Waiting on a link therefore
fails with a typed error naming the peer within seconds instead of hanging. With the worker's
public key, the link is a CURVE client, so an impostor cannot answer in its place.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Sequence
from errno import EAGAIN
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from zsyft.errors import (
    AuthenticationError,
    WorkerBusyError,
    WorkerLostError,
    WorkerUnavailableError,
)
from zsyft.transport.keys import KeyPair, identity
from zsyft.transport.zmq import (
    SETTINGS,
    awake_wait_s,
    common_options,
    curve_client,
    readable,
    recv_frames,
    send_frames,
    spin_poll,
    unwatch,
    watch,
)

_RCVMORE = int(zmq.RCVMORE)  # not the enum: its Python code would run on every frame
_WATCHED = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


class Link:
    """A DEALER connected to one named peer, with connection state from a socket monitor.

    `state` is "connecting" until the first handshake, "up" while connected, and "lost" after
    a disconnect (until a reconnect succeeds). With `server_key` (the worker's public key) the
    link is a CURVE client identified by `client` (default: this process's identity).
    """

    def __init__(
        self,
        ctx: zmq.Context,
        address: str,
        peer: str,
        server_key: str | None = None,
        client: KeyPair | None = None,
    ) -> None:
        self.address = address
        self.peer = peer
        self.socket = ctx.socket(zmq.DEALER)
        common_options(self.socket, address)
        if server_key is not None:
            curve_client(self.socket, server_key, client or identity())
        elif address.startswith("tcp://"):
            raise ValueError(f"worker {peer!r} at {address}: TCP links need its public key")
        self.reading = False  # see `_read`
        self.socket.setsockopt(zmq.RECONNECT_IVL, SETTINGS.reconnect_ivl_ms)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, SETTINGS.reconnect_ivl_max_ms)
        self._monitor = watch(self.socket, _WATCHED)
        # A link dropped without `close()` is closed in the right order when collected.
        self._closer = weakref.finalize(
            self, _close_in_owner, os.getpid(), self.socket, self._monitor
        )
        self._closer.atexit = False  # the process is ending; its sockets go with it
        self.state = "connecting"
        self.failure: str | None = None
        # Set for a worker process this one started: why it exited, or None while it runs (a
        # worker that dies before the first connection fails the wait at once, with why).
        self.exited: Callable[[], str | None] | None = None
        self._created = time.monotonic()
        self._lost_at = 0.0
        self._accepted = False  # whether anything ever accepted our connection
        self._stalled = False  # whether a handshake timed out (the peer accepted, then froze)
        self.socket.connect(address)
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)

    def send(self, frames: Sequence[Any]) -> None:
        """Queue one message for the peer; `WorkerUnavailableError` if it cannot be queued."""
        try:
            send_frames(self.socket, frames)
        except zmq.Again:
            self._drain_monitor()
            if self.state == "up":
                raise WorkerBusyError(
                    f"worker {self.peer!r} at {self.address} is busy: it took no message for "
                    f"{SETTINGS.send_timeout_ms / 1000:g} s and the queue to it is full; retry "
                    "later", worker=self.peer,
                ) from None
            raise self._unavailable("its send queue stayed full") from None

    def poll_messages(self) -> list[list[Any]]:
        """Every message already waiting on the socket, without blocking."""
        messages = []
        while readable(self.socket):
            messages.append(recv_frames(self.socket))
        return messages

    def recv(
        self,
        deadline: float,
        serve: tuple[zmq.Socket, Callable[[], None]] | None = None,
        awake: bool = True,
        until: Callable[[], bool] | None = None,
    ) -> list[Any] | None:
        """The next message from the peer, or a typed error once the peer is gone or time is up.

        With `serve=(socket, callback)`, `callback()` runs whenever `socket` is readable while
        waiting: a worker keeps answering its own clients while it waits on another worker;
        None once `until()` is true after such a callback (what the caller waits for may have
        come in through it: a nested request on this link read the reply).
        With `awake=False` it blocks at once instead of first waiting awake (`spin_poll`).
        """
        poller = self._poller
        if serve is not None:
            poller = zmq.Poller()
            poller.register(self.socket, zmq.POLLIN)
            poller.register(self._monitor, zmq.POLLIN)
            poller.register(serve[0], zmq.POLLIN)
        if self.state != "up":
            self.check_alive()
        spin_s = awake_wait_s() if awake else 0.0
        if spin_s and self.socket in dict(spin_poll(poller, spin_s)):
            return self._read()
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise WorkerUnavailableError(
                    f"worker {self.peer!r} at {self.address} sent no reply within the deadline; "
                    "it may be busy with a long computation (raise "
                    "zsyft.transport.zmq.SETTINGS.request_timeout_s, in seconds) "
                    "or stuck",
                    worker=self.peer,
                )
            wait_ms = max(1, int(min(deadline - now, 0.25) * 1000))
            events = dict(poller.poll(wait_ms))
            if self.socket in events:  # a reply: the peer is evidently alive
                return self._read()
            if serve is not None and serve[0] in events:
                serve[1]()
                if until is not None and until():
                    return None
            self.check_alive()  # nothing yet: did the connection go?

    def _read(self) -> list[Any]:
        """The next message; `reading` stays true if an interrupt cut its reading short (the
        rest of that message is skipped, so the next read starts at a message's first frame)."""
        self.reading = True
        try:
            frames = recv_frames(self.socket)
        except BaseException:
            while self.socket.getsockopt(_RCVMORE):  # a multipart message arrives whole
                self.socket.recv(copy=False)
            raise
        self.reading = False
        return frames

    def check_alive(self) -> None:
        """Raise if the peer was lost (past the reconnect grace) or never answered in time."""
        self._drain_monitor()
        if self.state == "connecting" and self.exited is not None:
            why = self.exited()
            if why:
                raise WorkerUnavailableError(
                    f"worker {self.peer!r} at {self.address} is not running: {why}",
                    worker=self.peer,
                )
        now = time.monotonic()
        if self.state == "lost" and now - self._lost_at > SETTINGS.lost_grace_s:
            raise WorkerLostError(
                f"lost the connection to worker {self.peer!r} at {self.address}: its process "
                "died (then the objects it held are gone) or stopped answering heartbeats (frozen)",
                worker=self.peer,
            )
        if self.failure is not None:
            raise AuthenticationError(
                f"worker {self.peer!r} at {self.address} refused the connection: {self.failure}",
                worker=self.peer,
            )
        waited = now - self._created
        if self.state != "connecting":
            return
        if self.exited is None and not self._accepted and waited > SETTINGS.refused_grace_s:
            raise self._unavailable(
                f"its address refused connections for {SETTINGS.refused_grace_s:g} s (no "
                "process listens there, or it is still restarting)"
            )
        if waited > SETTINGS.connect_timeout_s:
            raise self._unavailable(
                "it accepted the connection but never completed the handshake: its process "
                "is stopped (frozen) or overloaded" if self._stalled else
                f"it did not accept a connection within {SETTINGS.connect_timeout_s:.0f} s"
            )

    def _unavailable(self, why: str) -> WorkerUnavailableError:
        return WorkerUnavailableError(
            f"worker {self.peer!r} at {self.address} is unavailable: {why}; is it running? "
            "(`zsyft status` shows launched workers)",
            worker=self.peer,
        )

    def _drain_monitor(self) -> None:
        while readable(self._monitor):
            message = recv_monitor_message(self._monitor)
            event = message["event"]
            if event == zmq.EVENT_CONNECTED:
                self._accepted = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.state = "up"
                self.failure = None  # an earlier failed handshake is over
            elif event == zmq.EVENT_DISCONNECTED:
                if self.state == "up":
                    self.state = "lost"
                    self._lost_at = time.monotonic()
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.failure = (
                    "it does not know this client's key (add the client's public key file to "
                    "the worker's key directory)"
                )
            elif self.state != "connecting":
                pass  # a reconnect to a peer that was up broke off: it died (see "lost")
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and message["value"] == EAGAIN:
                self._stalled = True  # it never answered the handshake: frozen, not refusing
            elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self.failure = (
                    "the handshake failed: one side uses CURVE encryption and the other does "
                    "not (give both the worker's key, or neither for inproc://)"
                )
            else:  # the server hung up mid-handshake: it could not decrypt our hello
                self.failure = (
                    "the encrypted handshake broke off: the worker died, or its public key is "
                    "not the one this client was given (an impostor, or a stale cluster file)"
                )

    def close(self) -> None:
        """Close the socket and its monitor; safe to call twice."""
        self._closer()


def _close_in_owner(owner: int, socket: zmq.Socket, monitor: zmq.Socket) -> None:
    """`unwatch` in the process that opened the link; a forked child's copies are not its own
    (their context's threads run in the parent only)."""
    if os.getpid() == owner:
        unwatch(socket, monitor)
