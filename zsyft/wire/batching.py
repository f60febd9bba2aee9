"""BATCH messages: a burst of messages bound for one peer as one ZeroMQ message.

`batch(messages)` packs them (one wake-up of each side's I/O thread for a whole burst);
`unbatch` takes a BATCH apart again; `peek_kind` reads a message's kind without decoding it.
A BATCH carries its messages' headers joined in one frame, then their buffers: a burst of
small commands is three frames, not one per command (each ZeroMQ frame costs the sender and
the receiver ~1-2 µs of Python, as much as the rest of a pipelined op's handling).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import msgpack

from zsyft.errors import ProtocolError
from zsyft.wire.messages import DEFAULT_LIMITS, PROTOCOL_VERSION, Kind

__all__ = ["batch", "peek_kind", "unbatch"]


def batch(messages: Sequence[list[Any]], max_frames: int = DEFAULT_LIMITS.max_frames) -> list[Any]:
    """`messages` (each `[header, *buffers]`) as what to send, in the same order: runs of them
    packed into BATCH messages of at most `max_frames` headers and buffers together (so that
    the messages unpacked stay within the limits); a message alone stays as it is."""
    packed: list[list[Any]] = []
    run: list[list[Any]] = []
    size = 1  # the batch header
    for message in messages:
        if run and size + len(message) > max_frames:
            packed.append(_pack(run))
            run, size = [], 1
        run.append(message)
        size += len(message)
    if run:
        packed.append(_pack(run))
    return packed


def _pack(run: list[list[Any]]) -> list[Any]:
    """One BATCH: body `[header lengths, buffer counts]`, then a frame of the headers joined,
    then every message's buffers in order."""
    if len(run) == 1:
        return run[0]
    body = [[len(m[0]) for m in run], [len(m) - 1 for m in run]]
    header = msgpack.packb([PROTOCOL_VERSION, Kind.BATCH, 0, body])
    joined = b"".join(m[0] for m in run)
    return [header, joined, *itertools.chain.from_iterable(m[1:] for m in run)]


_HEADER_ARRAYS = (0x94, 0x95)  # msgpack arrays of 4 or 5: [version, kind, rid, body(, on behalf)]


def peek_kind(frames: Sequence[Any]) -> int | None:
    """A message's kind read from its header without decoding it (version and kind are small
    integers, one byte each); None if the header does not start as `encode` writes it."""
    header = frames[0] if frames else b""
    header = header.bytes if hasattr(header, "bytes") else header
    if len(header) > 2 and header[0] in _HEADER_ARRAYS:
        return header[2]
    return None


def unbatch(frames: Sequence[Any], body: Any) -> list[list[Any]]:
    """The messages a BATCH carries, given its frames and its decoded body (see `_pack`)."""
    if not (isinstance(body, list) and len(body) == 2 and all(type(b) is list for b in body)
            and body[0] and len(body[0]) == len(body[1])
            and all(type(n) is int and n >= 0 for n in itertools.chain(*body))):
        raise ProtocolError(
            "a batch body must be [header lengths, buffer counts]: two lists of the same, "
            "non-zero length, of numbers >= 0"
        )
    lengths, counts = body
    joined = frames[1] if len(frames) > 1 else b""
    joined = joined if type(joined) is bytes else bytes(joined)
    if sum(lengths) != len(joined):
        raise ProtocolError(
            f"the batch announces {sum(lengths)} bytes of headers but carries {len(joined)}"
        )
    if sum(counts) != len(frames) - 2:
        raise ProtocolError(
            f"the batch announces {sum(counts)} buffer frames but carries {len(frames) - 2}"
        )
    messages, offset, start = [], 0, 2
    for length, count in zip(lengths, counts, strict=True):
        messages.append([joined[offset:offset + length], *frames[start:start + count]])
        offset += length
        start += count
    return messages
