"""Pipelined messages leave in bursts, one ZeroMQ message each, and worker processes wait for
the next message awake for a moment (`ZSYFT_SPIN_US`)."""

from __future__ import annotations

import time

import pytest
import torch

import zsyft as sy
from zsyft.bench.capture import capture, kind_of
from zsyft.transport.zmq import SETTINGS


def test_a_burst_of_ops_and_the_request_after_it_travel_in_few_messages(bob):
    x = torch.arange(3.0).send(bob)
    with capture(bob) as exchange:
        for _ in range(200):
            x = x + 1
        result = x.get()
    assert result.tolist() == [200.0, 201.0, 202.0]
    kinds = [kind_of(message) for message in exchange.sent]
    assert len(kinds) <= 8, kinds  # 200 commands, deletes and a FETCH: bursts of 64
    assert kinds.count("BATCH") >= 3
    assert kinds[-1] == "BATCH"  # the FETCH rode with the last commands


def test_an_error_inside_a_burst_surfaces_at_the_next_sync_and_the_rest_still_runs(bob):
    x = torch.ones(2).send(bob)
    with capture(bob) as exchange:
        y = x + 1
        _ = x[torch.tensor([5])]  # out of bounds: only bob can tell
        z = y * 2
    assert "BATCH" in [kind_of(message) for message in exchange.sent]
    with pytest.raises(sy.RemoteError, match="index"):
        sy.sync()
    assert z.get().tolist() == [4.0, 4.0]


def test_a_bad_wait_setting_stops_a_worker_from_starting_with_its_reason(hook, monkeypatch):
    monkeypatch.setattr(SETTINGS, "spin_s", 0.0003)  # this client's own setting: already read
    monkeypatch.setenv("ZSYFT_SPIN_US", "fast")
    worker = sy.VirtualWorker(hook, id="spinner")
    try:
        started = time.monotonic()
        with pytest.raises(sy.WorkerUnavailableError, match="ZSYFT_SPIN_US must be a whole"):
            worker.ping()
        assert time.monotonic() - started < 20  # not the 30 s connect timeout
    finally:
        sy.local_worker.workers.pop("spinner", None)
        worker.close()


def test_workers_that_do_not_wait_awake_give_the_same_results(hook, monkeypatch):
    monkeypatch.setenv("ZSYFT_SPIN_US", "0")
    worker = sy.VirtualWorker(hook, id="sleeper")
    try:
        x = torch.tensor([1.0, -2.0]).send(worker)
        assert (x * x).sum().get().item() == 5.0
    finally:
        sy.local_worker.workers.pop("sleeper", None)
        worker.close()
