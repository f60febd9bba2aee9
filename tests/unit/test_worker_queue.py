"""A worker busy with a nested request refuses messages beyond its queue bound, saying so."""

from __future__ import annotations

import uuid

import zmq

from zsyft.errors import WorkerUnavailableError
from zsyft.runtime import worker as worker_module
from zsyft.runtime.worker import Worker
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import Kind


def test_messages_beyond_the_deferred_bound_get_a_busy_error(monkeypatch):
    monkeypatch.setattr(worker_module, "MAX_DEFERRED", 3)
    ctx = zmq.Context.instance()
    worker = Worker("queue", f"inproc://queue-{uuid.uuid4().hex}", ctx)
    client = ctx.socket(zmq.DEALER)
    client.setsockopt(zmq.ROUTING_ID, b"client")
    client.setsockopt(zmq.RCVTIMEO, 2000)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(worker.address)
    try:
        client.send_multipart(encode(Kind.PING, 1, None))
        worker.serve_one()  # the worker now knows the client's connection
        assert decode(client.recv_multipart()).kind == Kind.PONG
        worker._busy.append(b"client")  # as while it waits on a peer for this client
        for rid in range(2, 7):
            worker.handle(b"client", encode(Kind.PING, rid, None))
        assert len(worker._deferred) == 3
        refused = [decode(client.recv_multipart()) for _ in range(2)]
        assert all(r.kind == Kind.ERROR and r.body["type"] == "WorkerBusyError" for r in refused)
        assert "busy" in refused[0].body["message"]
        worker._busy.pop()
        worker._run_deferred()  # the queued ones still run, in order
        assert [decode(client.recv_multipart()).rid for _ in range(3)] == [2, 3, 4]
    finally:
        client.close(0)
        worker.close()


class _PeerThatDied:
    """A worker's link to a peer that died with messages queued for it: flushing raises."""

    def attach(self, *args):
        pass

    def set_origin(self, origin, principal=None):
        pass

    def call(self, op, args, kwargs):
        raise AssertionError("no pointer is stored here")

    def sockets(self):
        return []

    def flush(self):
        raise WorkerUnavailableError("worker 'alice' ... its send queue stayed full",
                                     worker="alice")


def test_a_peer_lost_while_forwarding_is_reported_and_the_worker_keeps_serving():
    ctx = zmq.Context.instance()
    worker = Worker("carol", f"inproc://carol-{uuid.uuid4().hex}", ctx, peer=_PeerThatDied())
    client = ctx.socket(zmq.DEALER)
    client.setsockopt(zmq.RCVTIMEO, 2000)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(worker.address)
    try:
        client.send_multipart(encode(Kind.PING, 1, None))
        worker.serve_one()
        replies = [decode(client.recv_multipart()) for _ in range(2)]
        assert replies[0].kind == Kind.PONG
        assert replies[1].kind == Kind.ERROR and replies[1].body["worker"] == "alice"
        assert replies[1].body["type"] == "WorkerUnavailableError"
        client.send_multipart(encode(Kind.PING, 2, None))
        worker.serve_one()  # still serving
        assert decode(client.recv_multipart()).kind == Kind.PONG
    finally:
        client.close(0)
        worker.close()
