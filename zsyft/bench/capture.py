"""Record the frames a zsyft worker handle sends and receives, so a baseline can replay them.

The baseline rows are only fair if bare pyzmq moves exactly what zsyft moves: the frames that
`zsyft.wire.codec.encode` produced for a real operation, with their real sizes. `capture()`
wraps the handle's `Link` for the duration of a `with` block and records every message that
passes through it, in order, without changing what is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack

from zsyft.wire.messages import Kind


def frame_size(frame: Any) -> int:
    """The number of bytes in one frame (bytes, memoryview or zmq.Frame)."""
    if isinstance(frame, memoryview):
        return frame.nbytes
    return len(frame)


def kind_of(frames: list[Any]) -> str:
    """The message kind named in a zsyft header frame, e.g. "COMMAND"."""
    header = frames[0] if isinstance(frames[0], bytes) else bytes(frames[0].buffer)
    kind = msgpack.unpackb(header, ext_hook=lambda code, data: None, strict_map_key=False)[1]
    try:
        return Kind(kind).name
    except ValueError:
        return str(kind)


@dataclass
class Exchange:
    """The messages one block of zsyft code sent (`sent`) and received (`received`)."""

    sent: list[list[Any]] = field(default_factory=list)
    received: list[list[Any]] = field(default_factory=list)

    def describe(self) -> str:
        """Kinds and sizes, e.g. "sent COMMAND 97 B, FETCH 30 B; received DATA 48 B"."""

        def part(messages: list[list[Any]]) -> str:
            return (
                ", ".join(f"{kind_of(m)} {sum(frame_size(f) for f in m):,} B" for m in messages)
                or "nothing"
            )

        return f"sent {part(self.sent)}; received {part(self.received)}"

    def only(self, kind: str) -> list[Any]:
        """The one sent message of `kind`; an error if there is not exactly one."""
        found = [m for m in self.sent if kind_of(m) == kind]
        if len(found) != 1:
            raise AssertionError(f"expected one {kind} message, captured: {self.describe()}")
        return found[0]

    def reply(self) -> list[Any]:
        """The one message received; an error if there is not exactly one."""
        if len(self.received) != 1:
            raise AssertionError(f"expected one reply, captured: {self.describe()}")
        return self.received[0]


@contextmanager
def capture(handle: Any) -> Iterator[Exchange]:
    """Record what `handle` (a `WorkerHandle`) sends and receives inside the `with` block."""
    link = handle.link
    exchange = Exchange()
    send, recv = link.send, link.recv

    def recording_send(frames: Any) -> None:
        exchange.sent.append(list(frames))
        send(frames)

    def recording_recv(deadline: float, *args: Any, **kwargs: Any) -> list[Any] | None:
        frames = recv(deadline, *args, **kwargs)
        if frames is not None:
            exchange.received.append(list(frames))
        return frames

    link.send, link.recv = recording_send, recording_recv
    try:
        yield exchange
        handle.flush()  # pipelined messages wait in the outbox until a burst leaves
    finally:
        del link.send, link.recv  # the class's own methods apply again
