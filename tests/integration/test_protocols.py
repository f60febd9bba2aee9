"""Secure protocols between real worker processes, driven by the client's control messages."""

from __future__ import annotations

import pytest
import torch

import zsyft as sy
from tests.integration.conftest import settle
from zsyft.mpc.sharing import reconstruct, share
from zsyft.tensors.protocol_client import run_protocol, run_protocol_outputs


def shared(value, parties):
    return [piece.send(p) for piece, p in zip(share(value, len(parties)), parties, strict=True)]


def opened(shares):
    return reconstruct([s.get() for s in shares])


def test_mul_matmul_relu_between_processes(bob, alice, james):
    x = torch.randint(-(2**30), 2**30, (4, 3))
    w = torch.randint(-(2**10), 2**10, (3, 2))
    xs, ws = shared(x, [bob, alice]), shared(w, [bob, alice])
    prod = run_protocol("mul", [xs, xs], james, {"x_shape": [4, 3], "y_shape": [4, 3]}, [4, 3])
    mm = run_protocol("matmul", [xs, ws], james, {"x_shape": [4, 3], "y_shape": [3, 2]}, [4, 2])
    relu = run_protocol("relu", [xs], james, {"shape": [4, 3]}, [4, 3])
    assert torch.equal(opened(prod), x * x)
    assert torch.equal(opened(mm), x @ w)
    assert torch.equal(opened(relu), x.clamp(min=0))
    del xs, ws
    settle(bob, alice, james)


def test_fused_products_and_relu_with_its_mask_between_processes(bob, alice, james):
    x = torch.randint(-(2**20), 2**20, (4, 3))
    w = torch.randint(-(2**20), 2**20, (3, 2))
    x[0, :2] = 0
    xs, ws = shared(x, [bob, alice]), shared(w, [bob, alice])
    params = {"x_shape": [4, 3], "y_shape": [4, 3], "divisor": 1000}
    prod = run_protocol("fixed_mul", [xs, xs], james, params, [4, 3])
    params = {"x_shape": [4, 3], "y_shape": [3, 2], "divisor": 1000}
    mm = run_protocol("fixed_matmul", [xs, ws], james, params, [4, 2])
    relu, mask = run_protocol_outputs("relu_with_mask", [xs], james, {"shape": [4, 3]}, [4, 3],
                                      2)
    assert (opened(prod) * 1000 - x * x).abs().max() < 2000  # truncated: within 2 units
    assert (opened(mm) * 1000 - x @ w).abs().max() < 2000
    assert torch.equal(opened(relu), x.clamp(min=0))
    assert torch.equal(opened(mask), (x > 0).to(torch.int64))
    wrong = {"x_shape": [4, 3], "y_shape": [3, 3], "divisor": 1000}  # not the inputs' shapes
    bad = run_protocol("fixed_matmul", [xs, ws], james, wrong, [4, 3])
    with pytest.raises(sy.RemoteError, match="do not match the shapes the provider dealt"):
        sy.local_worker.sync()  # both parties refuse, and say why (at the next sync point)
    for piece in bad:
        with pytest.raises(sy.RemoteError, match="do not match the shapes the provider dealt"):
            piece.get()  # the output ids hold the error
    del xs, ws
    settle(bob, alice, james)


def test_no_party_or_client_sees_the_secret(bob, alice, james, monkeypatch):
    """The client receives nothing during a protocol op, and the shares parties hold never
    equal the canary secret."""
    canary = torch.full((64,), 123456789, dtype=torch.int64)
    xs = shared(canary, [bob, alice])
    received = []
    original = sy.WorkerHandle.request

    def recording(self, kind, body, timeout=None):
        reply = original(self, kind, body, timeout)
        received.append((self.id, kind))
        return reply

    monkeypatch.setattr(sy.WorkerHandle, "request", recording)
    out = run_protocol("mul", [xs, xs], james, {"x_shape": [64], "y_shape": [64]}, [64])
    monkeypatch.undo()
    assert received == [], "a protocol op sends control messages only, and waits for nothing"
    for party in (bob, alice):
        for value in party._objects.values():
            assert not (value == canary).any(), f"{party.id} holds the canary in the clear"
    assert torch.equal(opened(out), canary * canary)
    del xs
    settle(bob, alice, james)


def test_provider_stores_nothing(bob, alice, james):
    """Frames reaching the provider are checked in tests/unit/test_mpc_runtime.py."""
    xs = shared(torch.arange(5), [bob, alice])
    out = run_protocol("relu", [xs], james, {"shape": [5]}, [5])
    assert torch.equal(opened(out), torch.arange(5))
    assert james._objects == {}, "the provider keeps no objects for the parties"
    del xs
    settle(bob, alice, james)


def test_a_dead_party_fails_the_op_naming_it(hook, bob, james):
    import os
    import signal

    frank = sy.VirtualWorker(hook, id="frank")
    try:
        xs = shared(torch.ones(3, dtype=torch.int64), [bob, frank])
        warm = run_protocol("relu", [xs], james, {"shape": [3]}, [3])  # sets up the session
        assert torch.equal(opened(warm), torch.ones(3, dtype=torch.int64))
        os.kill(frank.pid, signal.SIGKILL)
        out = run_protocol("relu", [xs], james, {"shape": [3]}, [3])  # bob waits for frank
        with pytest.raises(sy.WorkerUnavailableError, match="frank"):
            out[0].get()
        sy.local_worker.workers.pop("frank", None)
        sy.sync()  # bob's notice of the failed op was that error: it is not raised twice
        del xs, out
    finally:
        sy.local_worker.workers.pop("frank", None)
        frank.close()
    settle(bob, james)


def test_a_recreated_provider_gets_a_new_session(hook, bob, alice):
    """As when a notebook cell creating the provider runs again."""
    xs = shared(torch.tensor([-2, 3]), [bob, alice])
    for _ in range(2):
        jim = sy.VirtualWorker(hook, id="jim")
        try:
            out = run_protocol("relu", [xs], jim, {"shape": [2]}, [2])
            assert torch.equal(opened(out), torch.tensor([0, 3]))
        finally:
            sy.local_worker.workers.pop("jim", None)
            jim.close()
    del xs
    settle(bob, alice)
