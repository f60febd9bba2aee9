"""Reading what a worker recorded with `ZSYFT_RECORD_FRAMES` (see `runtime.process`)."""

from __future__ import annotations

from pathlib import Path

from zsyft.errors import ProtocolError
from zsyft.wire.batching import unbatch
from zsyft.wire.codec import decode
from zsyft.wire.messages import Kind


def read_frames(path: str | Path) -> list[list[bytes]]:
    """Every message a worker recorded: a list of frames (header first) per message. A BATCH
    counts as the messages it carries (its own header holds only their frame counts)."""
    data = Path(path).read_bytes()
    messages, offset = [], 0
    while offset < len(data):
        count = int.from_bytes(data[offset:offset + 4], "little")
        offset += 4
        frames = []
        for _ in range(count):
            size = int.from_bytes(data[offset:offset + 8], "little")
            offset += 8
            frames.append(data[offset:offset + size])
            offset += size
        messages.extend(_opened(frames))
    return messages


def _opened(frames: list[bytes]) -> list[list[bytes]]:
    try:
        msg = decode(frames)
        if msg.kind == Kind.BATCH:
            return unbatch(frames, msg.body)
    except ProtocolError:
        pass  # recorded as received: garbage stays one message
    return [frames]
