"""`spin_poll`: waiting awake for the next message, and its setting."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import zmq

from zsyft.transport import zmq as transport


@pytest.fixture
def pair():
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    address = f"inproc://awake-{uuid.uuid4().hex}"  # an id() may recur before unbinding
    a.bind(address)
    b.connect(address)
    poller = zmq.Poller()
    poller.register(b, zmq.POLLIN)
    yield a, b, poller
    a.close(0)
    b.close(0)


def test_a_waiting_message_is_seen_at_once(pair):
    a, b, poller = pair
    a.send(b"hi")
    time.sleep(0.01)
    started = time.perf_counter()
    events = dict(transport.spin_poll(poller, 5.0))
    assert events.get(b) == zmq.POLLIN and time.perf_counter() - started < 1.0


def test_without_a_message_it_gives_up_after_the_spin_time(pair):
    _, _, poller = pair
    started = time.perf_counter()
    assert transport.spin_poll(poller, 0.002) == []
    assert 0.002 <= time.perf_counter() - started < 1.0


@pytest.mark.parametrize("text, seconds", [("", 0.0003), ("0", 0.0), (" 1000 ", 0.001)])
def test_the_setting_comes_from_the_environment(monkeypatch, text, seconds):
    monkeypatch.setenv(transport.SPIN_ENV, text)
    assert transport.spin_setting() == pytest.approx(seconds)


def test_a_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv(transport.SPIN_ENV, "-5")
    with pytest.raises(ValueError, match="ZSYFT_SPIN_US must be a whole number"):
        transport.spin_setting()


def test_a_link_waits_awake_only_when_no_other_python_thread_needs_the_interpreter(monkeypatch):
    monkeypatch.setattr(transport.SETTINGS, "spin_s", 0.0003)
    monkeypatch.setattr(transport.zmq_garbage.gc, "thread", None)  # no zero-copy send yet
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert transport.awake_wait_s() == 0.0003
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # e.g. a worker in a thread
    assert transport.awake_wait_s() == 0.0


def test_pyzmqs_garbage_collector_thread_does_not_stop_waiting_awake(pair, monkeypatch):
    """A zero-copy send (a large tensor) starts pyzmq's collector thread for good; it sleeps
    in a socket's recv and needs no interpreter time, so round trips stay awake."""
    a, b, _ = pair
    a.send(bytearray(1 << 20), copy=False)
    assert len(b.recv()) == 1 << 20
    collector = transport.zmq_garbage.gc.thread
    assert collector is not None and collector.is_alive()
    monkeypatch.setattr(transport.SETTINGS, "spin_s", 0.0003)
    monkeypatch.setattr(transport.SETTINGS, "spin_beside_threads", False)
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # this thread and the collector
    assert transport.awake_wait_s() == 0.0003
    monkeypatch.setattr(threading, "active_count", lambda: 3)  # and a thread of the program's
    assert transport.awake_wait_s() == 0.0
