"""A worker that receives garbage answers with an error and keeps serving."""

from __future__ import annotations

import os
import socket

import msgpack
import pytest
import torch

from tests import helpers
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import PROTOCOL_VERSION, Kind

GARBAGE = [
    [b""],
    [b"\xff\xfe\xfd"],
    [msgpack.packb("not a list")],
    [msgpack.packb([999, Kind.PING, 1, None])],  # wrong protocol version
    [msgpack.packb([PROTOCOL_VERSION, 42, 1, None])],  # unknown kind
    [msgpack.packb([PROTOCOL_VERSION, Kind.COMMAND, 1, [1, "save.default", [], {}, [], True]])],
    [msgpack.packb([PROTOCOL_VERSION, Kind.COMMAND, 1, "oops"])],
    [msgpack.packb([PROTOCOL_VERSION, Kind.FETCH, 1, [b"short", True]])],
    [b"\x91" * 5000 + b"\xc0"],  # nesting bomb
    [msgpack.packb([PROTOCOL_VERSION, Kind.STORE, 1, [b"x" * 16, msgpack.ExtType(1, b"\x93")]])],
    [msgpack.packb([PROTOCOL_VERSION, Kind.STORE, 1,
                    [b"x" * 16, msgpack.ExtType(1, msgpack.packb([1, 8, [1000]]))]]), b"\0" * 8],
    [msgpack.packb([PROTOCOL_VERSION, Kind.COMMAND, 1,
                    [1, "add.Tensor", [b"\0" * 16, 1], {}, [b"\1" * 16], True]])],
]


@pytest.fixture
def raw_dealer(bob):
    sock = helpers.raw_dealer(bob.address, bob.public_key)
    yield sock
    sock.close(0)


@pytest.mark.parametrize("frames", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_gets_an_error_reply_and_worker_keeps_serving(bob, raw_dealer, frames):
    raw_dealer.send_multipart(frames)
    reply = decode(raw_dealer.recv_multipart())
    assert reply.kind == Kind.ERROR
    assert reply.body["worker"] == "bob" and reply.body["message"]
    raw_dealer.send_multipart(encode(Kind.PING, 7, None))
    pong = decode(raw_dealer.recv_multipart())
    assert pong.kind == Kind.PONG and pong.rid == 7


def test_refused_op_names_the_allowlist(bob, raw_dealer):
    raw_dealer.send_multipart(encode(Kind.COMMAND, 3, [1, "save.default", [], {}, [], True]))
    reply = decode(raw_dealer.recv_multipart())
    assert reply.body["type"] == "OpNotAllowedError" and "allowlist" in reply.body["message"]


def test_raw_tcp_garbage_does_not_disturb_a_launched_worker(tmp_path):
    from launcher.spawn import spawn

    process = spawn("tcpbob", "tcp://127.0.0.1:*", tmp_path / "tcpbob.log")
    try:
        address = process.wait_ready()
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        for payload in (b"GET / HTTP/1.0\r\n\r\n", b"\x00" * 64, bytes(range(256)) * 4):
            with socket.create_connection((host, int(port)), timeout=2) as raw:
                raw.sendall(payload)
        sock = helpers.raw_dealer(address, process.public_key)
        sock.send_multipart(encode(Kind.PING, 1, None))
        assert decode(sock.recv_multipart()).body["name"] == "tcpbob"
        sock.close(0)
    finally:
        process.stop()


def _batch_of(*messages, body=None):
    body = body if body is not None else [[len(m[0]) for m in messages],
                                          [len(m) - 1 for m in messages]]
    header = msgpack.packb([PROTOCOL_VERSION, Kind.BATCH, 0, body])
    joined = b"".join(m[0] for m in messages)
    return [header, joined, *(frame for message in messages for frame in message[1:])]


def test_a_batch_runs_its_messages_in_order_and_answers_each_request(bob, raw_dealer):
    x_id, y_id = os.urandom(16), os.urandom(16)
    raw_dealer.send_multipart(_batch_of(
        encode(Kind.STORE, 0, [x_id, torch.tensor([1.0, 2.0])]),
        encode(Kind.COMMAND, 0, [1, "mul.Tensor", [x_id, 3.0], {}, [y_id], False]),
        encode(Kind.FETCH, 5, [y_id, True]),
        encode(Kind.FETCH, 6, [x_id, True]),
    ))
    replies = [decode(raw_dealer.recv_multipart()) for _ in range(2)]
    assert [(r.kind, r.rid) for r in replies] == [(Kind.DATA, 5), (Kind.DATA, 6)]
    assert replies[0].body.tolist() == [3.0, 6.0] and replies[1].body.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("frames, reason", [
    (lambda: _batch_of(encode(Kind.PING, 1, None), body=[[99], [0]]), "announces 99 bytes"),
    (lambda: _batch_of(encode(Kind.PING, 1, None), body=[[5], [2]]), "buffer frames"),
    (lambda: _batch_of(encode(Kind.PING, 1, None), body="x"), "header lengths"),
    (lambda: _batch_of(_batch_of(encode(Kind.PING, 1, None), encode(Kind.PING, 2, None))),
     "cannot carry another BATCH"),
], ids=["header bytes miscounted", "buffers miscounted", "not counts", "nested"])
def test_a_malformed_batch_gets_an_error_naming_it_and_the_worker_keeps_serving(
    bob, raw_dealer, frames, reason
):
    raw_dealer.send_multipart(frames())
    reply = decode(raw_dealer.recv_multipart())
    assert reply.kind == Kind.ERROR and reason in reply.body["message"]
    raw_dealer.send_multipart(encode(Kind.PING, 7, None))
    assert decode(raw_dealer.recv_multipart()).rid == 7
