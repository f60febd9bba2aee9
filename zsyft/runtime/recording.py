"""Reading what a worker recorded with `ZSYFT_RECORD_FRAMES` (see `runtime.process`)."""

from __future__ import annotations

from pathlib import Path


def read_frames(path: str | Path) -> list[list[bytes]]:
    """Every message a worker recorded: a list of frames (header first) per message."""
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
        messages.append(frames)
    return messages
