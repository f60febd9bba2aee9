"""The wire codec: exact round trips, zero-copy buffers, and limits that reject bad input."""

from __future__ import annotations

import warnings

import msgpack
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zsyft.errors import ProtocolError
from zsyft.wire import codec
from zsyft.wire.batching import batch, unbatch
from zsyft.wire.codec import DTYPES, Handover, decode, encode
from zsyft.wire.messages import PROTOCOL_VERSION, ZERO_COPY_THRESHOLD, Kind, Limits


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_round_trips(dtype):
    x = (torch.arange(6).reshape(2, 3) % 2).to(dtype)
    msg = decode(encode(Kind.STORE, 5, [b"i" * 16, x]))
    assert msg.kind == Kind.STORE and msg.rid == 5
    assert msg.body[1].dtype == dtype and torch.equal(msg.body[1], x)


def test_values_of_every_wire_type_round_trip():
    body = [None, True, 3, -2.5, "s", b"\x01" * 16, [1, [2]], {"k": 1}, torch.float64,
            torch.device("cpu"), torch.strided, torch.channels_last, 1 + 2j]
    assert decode(encode(Kind.COMMAND, 1, body)).body == body


def test_large_tensors_travel_as_zero_copy_views():
    x = torch.randn(ZERO_COPY_THRESHOLD)
    frames = encode(Kind.DATA, 1, x)
    assert isinstance(frames[1], memoryview) and frames[1].nbytes == x.numel() * 4
    del x  # the view keeps the tensor alive
    assert decode(frames).body.shape == (ZERO_COPY_THRESHOLD,)


def test_received_tensors_are_writable_copies():
    x = torch.zeros(3)
    y = decode(encode(Kind.DATA, 1, x)).body
    y.add_(1)
    assert torch.equal(x, torch.zeros(3))


def test_non_contiguous_and_empty_and_scalar_tensors():
    for x in (torch.arange(12.0).reshape(3, 4).t(), torch.empty(0, 3), torch.tensor(7)):
        assert torch.equal(decode(encode(Kind.DATA, 1, x)).body, x)


def test_lazily_conjugated_or_negated_tensors_travel_with_their_values():
    z = torch.tensor([1 + 2j, -3j])
    for x in (z.conj(), torch._neg_view(z), torch._neg_view(z.conj())):
        assert x.is_conj() or x.is_neg()
        got = decode(encode(Kind.DATA, 1, x)).body
        assert not (got.is_conj() or got.is_neg())
        assert torch.equal(got, x.resolve_conj().resolve_neg())


def test_tensors_that_require_grad_travel_as_their_values():
    x = torch.tensor([1.5, -2.0], requires_grad=True)
    got = decode(encode(Kind.DATA, 1, x)).body
    assert not got.requires_grad and torch.equal(got, x.detach())


def test_unsupported_values_are_refused_when_encoding():
    with pytest.raises(ProtocolError, match="object"):
        encode(Kind.DATA, 1, object())
    with pytest.raises(ProtocolError):
        encode(Kind.DATA, 1, 1 << 70)


def header(*items) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


def nested(depth: int) -> list:
    value: list = [0]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([], "empty"),
        ([header(PROTOCOL_VERSION + 1, 1, 0, None)], "version"),
        ([header(PROTOCOL_VERSION, "x", 0, None)], "integers"),
        ([header(PROTOCOL_VERSION, 1, 0)], "header must be"),
        ([b"\xc1"], "msgpack"),
        ([header(PROTOCOL_VERSION, 1, 0, nested(40))], "nesting"),
        ([b"\x91" * 5000 + b"\xc0"], "msgpack"),
        ([header(PROTOCOL_VERSION, 1, 0, msgpack.ExtType(99, b""))], "extension"),
        ([header(PROTOCOL_VERSION, 1, 0, msgpack.ExtType(1, msgpack.packb([1, 8, [4]])))],
         "missing buffer"),
        ([header(PROTOCOL_VERSION, 1, 0, msgpack.ExtType(1, msgpack.packb([1, 8, [4]]))), b"\0"],
         "needs 16 bytes"),
        ([header(PROTOCOL_VERSION, 1, 0, msgpack.ExtType(1, msgpack.packb([1, 77, [1]]))), b"\0"],
         "dtype"),
        ([header(PROTOCOL_VERSION, 1, 0, msgpack.ExtType(1, msgpack.packb([1, 8, [-1]]))), b""],
         "shape"),
        ([header(PROTOCOL_VERSION, 1, 0, msgpack.ExtType(4, b"cuda:0"))], "device"),
        ([header(PROTOCOL_VERSION, 1, 0, [0] * 70000)], "msgpack"),
    ],
)
def test_malformed_frames_raise_protocol_error(frames, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode(frames)


def test_size_limits():
    limits = Limits(max_header_bytes=64, max_frames=2, max_tensor_numel=10)
    with pytest.raises(ProtocolError, match="header of"):
        decode([b"\x90" * 65], limits)
    with pytest.raises(ProtocolError, match="frames"):
        decode([header(1, 1, 0, None), b"", b""], limits)
    with pytest.raises(ProtocolError, match="elements exceeds"):
        decode(encode(Kind.DATA, 1, torch.zeros(11)), limits)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_random_frames_only_ever_raise_protocol_error(frames):
    try:
        decode(frames)
    except ProtocolError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5),
                                                                      children, max_size=5),
    max_leaves=30,
))
def test_plain_bodies_round_trip(body):
    assert decode(encode(Kind.DATA, 9, body)).body == body


def test_a_header_of_empty_containers_is_refused_before_it_blows_up():
    """1 byte per empty list on the wire, ~72 bytes each in Python: refused past the limit."""
    import tracemalloc

    count = (1 << 16) - 1
    header = b"\x94\x01\x01\x01" + b"\xdc" + count.to_bytes(2, "big") + b"\x90" * count
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="lists and maps"):
            decode([header])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(header) + (2 << 20)  # not the ~128 bytes per input byte of a decode
    many_ids = [bytes([0x90 + i % 16]) * 16 for i in range(4000)]  # marker bytes inside bins
    assert decode(encode(Kind.DELETE, 0, many_ids)).body == many_ids


def test_a_burst_is_packed_into_batches_that_unpack_to_the_same_messages():
    messages = [encode(Kind.COMMAND, 0, [i, "add.Tensor", [], {}, [], False]) for i in range(5)]
    messages.insert(2, encode(Kind.STORE, 0, [b"i" * 16, torch.arange(3)]))  # two frames
    (packed,) = batch(messages)
    assert len(packed) == 3  # the batch header, the six headers joined, the one buffer
    head = decode(packed)
    assert head.kind == Kind.BATCH
    assert head.body == [[len(m[0]) for m in messages], [0, 0, 1, 0, 0, 0]]
    parts = unbatch(packed, head.body)
    assert [decode(p).body for p in parts[:2]] == [decode(m).body for m in messages[:2]]
    assert torch.equal(decode(parts[2]).body[1], torch.arange(3))
    assert [decode(p).body for p in parts[3:]] == [decode(m).body for m in messages[3:]]


def test_a_lone_message_is_not_wrapped_and_batches_respect_the_frame_limit():
    one = encode(Kind.SYNC, 4, None)
    assert batch([one]) == [one]
    messages = [encode(Kind.STORE, 0, [b"s" * 16, torch.ones(2)]) for _ in range(10)]
    packed = batch(messages, max_frames=7)  # a header and at most 3 two-frame messages each
    assert [len(p) for p in packed] == [5, 5, 5, 2]
    assert sum(len(unbatch(p, decode(p).body)) if p[0] != messages[0][0] else 1
               for p in packed) == 10


@pytest.mark.parametrize(
    "body, frames, reason",
    [
        ("3", [b"\x90"], "header lengths, buffer counts"),
        ([], [b"\x90"], "header lengths, buffer counts"),
        ([[], []], [b""], "header lengths, buffer counts"),
        ([[1], [0, 0]], [b"\x90"], "header lengths, buffer counts"),
        ([[1, True], [0, 0]], [b"\x90\x90"], "header lengths, buffer counts"),
        ([[1], [-1]], [b"\x90"], "header lengths, buffer counts"),
        ([[1, 1], [0, 0]], [b"\x90"], "announces 2 bytes of headers but carries 1"),
        ([[1, 1], [1, 1]], [b"\x90\x90", b"x"], "announces 2 buffer frames but carries 1"),
        ([[1]], [], "header lengths, buffer counts"),
        ([[2], [0]], [], "announces 2 bytes of headers but carries 0"),
    ],
)
def test_a_malformed_batch_body_names_the_problem(body, frames, reason):
    packed = [msgpack.packb([PROTOCOL_VERSION, Kind.BATCH, 0, body]), *frames]
    with pytest.raises(ProtocolError, match=reason):
        unbatch(packed, decode(packed).body)


def test_a_tensor_larger_than_a_frame_travels_in_frames_and_decodes_whole(monkeypatch):
    monkeypatch.setattr(codec, "MAX_FRAME_BYTES", 1 << 16)
    tensor = torch.arange(50_000, dtype=torch.float32).reshape(500, 100)  # 200,000 bytes
    frames = encode(Kind.STORE, 0, [b"i" * 16, tensor, torch.tensor([7])])
    assert [bytes(f).__len__() for f in frames[1:]] == [65536, 65536, 65536, 3392, 8]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # frames that arrive as bytes: no "not writable" warning
        body = decode([frames[0], *(bytes(f) for f in frames[1:])]).body
    assert torch.equal(body[1], tensor) and torch.equal(body[2], torch.tensor([7]))
    with pytest.raises(ProtocolError, match="needs 4 frames"):
        decode(frames[:3])
    with pytest.raises(ProtocolError, match="has 3391 bytes, not 3392"):
        decode([*frames[:4], bytes(frames[4])[:-1], frames[5]])


def test_large_tensors_are_copied_unless_handed_over_with_memory_of_their_own():
    """ZeroMQ sends a large frame after `encode` returned: the frame must not change with
    the tensor it came from, unless its sender gave the tensor up (`Handover`)."""
    n = ZERO_COPY_THRESHOLD // 4 + 1
    kept, handed, shared = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    alias = shared[1:]
    frames = [encode(Kind.DATA, 1, value)[1]
              for value in (kept, Handover(handed), Handover(shared))]
    for tensor in (kept, handed, shared):
        tensor.fill_(7)
    assert [bytes(frame[:4]) for frame in frames] == [bytes(4), b"\x00\x00\xe0\x40", bytes(4)]
    del alias
