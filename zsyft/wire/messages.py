"""Protocol constants: the message kinds, the version, and the decoder's limits.

A message on the wire is one msgpack header frame followed by zero or more raw buffer frames:

    header = [PROTOCOL_VERSION, kind, request_id, body]

A BATCH carries several messages in one ZeroMQ message: its header lists how many frames each
of them has, and their frames follow, header first, in order.

`request_id` pairs a reply with its request (0 for messages that expect no reply). The body
layout of each kind is documented next to its constant. Tensors inside a body are msgpack
extension values that reference a buffer frame by index (see `codec`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

PROTOCOL_VERSION = 2  # 2: a BATCH joins its messages' headers in one frame
ID_BYTES = 16  # object ids: random 128-bit, sent as msgpack bin
ZERO_COPY_THRESHOLD = 1 << 16  # buffers at least this large are sent without a copy
# A tensor's bytes travel in frames of at most this size. ZeroMQ encrypts (CURVE) and writes
# one frame at a time, and its heartbeats wait behind the frame being written: frames of
# gigabytes kept them waiting past the heartbeat timeout, and a live worker was reported lost.
MAX_FRAME_BYTES = 1 << 26


def is_object_id(value: object) -> bool:
    """Whether `value` has the form of an object id on the wire."""
    return isinstance(value, bytes) and len(value) == ID_BYTES


def id_number(object_id: bytes) -> int:
    """The integer users see for an object id (PySyft printed ids as integers)."""
    return int.from_bytes(object_id, "big")


class Kind(IntEnum):
    """What a message asks for or answers. Requests are < 64, replies and notices >= 64."""

    PING = 1  # body: None                          -> PONG
    COMMAND = 2  # body: [seq, op, args, kwargs, result_ids, want_meta]  -> nothing | META
    STORE = 3  # body: [id, tensor]                 -> nothing (pipelined like a command)
    FETCH = 4  # body: [id, mode(, round)], see `FetchMode` -> DATA
    DELETE = 5  # body: [ids]                        -> nothing
    LIST = 6  # body: None                          -> DATA {id: object description}
    SYNC = 7  # body: None | AFTER_RELAY            -> OK once every earlier message ran,
    #                                                  including what it forwarded to peers
    STORE_POINTER = 8  # body: [id, pointer descriptor] -> nothing (pipelined)
    REMOTE_GET = 9  # body: [id]                    -> OK once the holder fetched the data
    REMOTE_SEND = 10  # body: [id, worker descriptor, new id] -> OK
    PROVIDER_SETUP = 11  # client -> provider: [session, parties] -> OK once parties have seeds
    MPC_SEED = 12  # provider -> party: [session, index, parties, seed] -> nothing
    DEAL = 13  # client -> provider: [session, op id, protocol, params] -> nothing
    MPC_RUN = 14  # client -> party: [seq, session, op id, protocol, inputs, output(s), params]
    MPC_MSG = 15  # party -> party: [session, op id, round, sender index, tensor] -> nothing
    MATERIAL = 16  # provider -> last party: [session, op id, correction] -> nothing
    BATCH = 17  # body: [header lengths, buffer counts]; frames: the headers joined, then the
    #              buffers; handled one by one, in order, as if each had come alone (`batching`)
    CLEAR = 18  # body: None                        -> OK once every object of the sender is
    #                                                  deleted (PySyft's `clear_objects`)
    PONG = 64  # body: {name, pid, objects (all), mine (the sender's), version, threads}
    OK = 65  # body: None
    DATA = 66  # body: the requested value
    META = 67  # body: [seq, result metadata]      (reply to a command run synchronously)
    ERROR = 68  # body: error dict, see `error_body`; reply to a request or notice of a command


AFTER_RELAY = "after-relay"
"""A worker's SYNC body once it relayed errors to the worker it syncs: that worker reads what
came from each of its peers (a round trip each) before it answers, so errors relayed on
through it reach the syncing client before the OK (see `WorkerPeer.sync`)."""


class FetchMode(IntEnum):
    """What a FETCH does with the stored object (False and True mean COPY and TAKE)."""

    COPY = 0  # leave it stored
    TAKE = 1  # delete it as the reply leaves; a pointer hands its ownership over in the reply
    HAND_OVER = 2  # like TAKE, but a tensor is set aside, so that a reply lost on the way (an
    #                interrupted get()) can be fetched again. The body's third item is the
    #                client's round: how many of its get()s at this worker completed. A FETCH
    #                of a later round frees what earlier rounds set aside (so does a DELETE).


class Limits(NamedTuple):
    """Bounds the decoder enforces before and while decoding a message."""

    max_header_bytes: int = 1 << 20
    max_message_bytes: int = 1 << 33  # 8 GiB of buffers in one message
    max_frames: int = 4096
    max_depth: int = 32
    max_container_len: int = 1 << 16
    # An empty list is 1 byte on the wire and ~72 bytes in Python: a 1 MiB header of them would
    # cost ~100 MB to decode. Headers with more containers than this are refused.
    max_containers: int = 1 << 14
    max_str_len: int = 1 << 16
    max_tensor_numel: int = 1 << 32


DEFAULT_LIMITS = Limits()


class Message(NamedTuple):
    """A decoded message: its kind, request id and body (tensors already rebuilt)."""

    kind: int
    rid: int
    body: Any
    on_behalf: str | None = None  # the client a forwarding worker acts for


def error_body(
    *,
    worker: str,
    message: str,
    type_name: str,
    op: str | None = None,
    traceback: str | None = None,
    seq: int | None = None,
    path: list[str] | None = None,
) -> dict[str, Any]:
    """The body of an ERROR message; every field is plain msgpack data."""
    return {
        "worker": worker,
        "message": message,
        "type": type_name,
        "op": op,
        "traceback": traceback,
        "seq": seq,
        "path": path or [worker],
    }
