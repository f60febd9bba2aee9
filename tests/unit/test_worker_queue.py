"""A worker busy with a nested request refuses messages beyond its queue bound, saying so."""

from __future__ import annotations

import uuid

import zmq

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
