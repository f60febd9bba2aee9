"""Ctrl-C (a Jupyter "interrupt kernel") loses no data and breaks no worker.

An interrupted get(): the next get() returns the tensor, whether the interrupt landed before
the wait, during it, or while the reply was being read, and the worker keeps nothing once the
value is home. An interrupt while messages are being sent waits until they are whole."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch
from torch import nn

import zsyft as sy
import zsyft.remote.handle as handle_module
import zsyft.tensors.fetching as fetching
import zsyft.transport.link as link_module
from zsyft.wire.messages import FetchMode, Kind

BIG = 1 << 18  # float32 elements: the reply's tensor travels as a frame of its own


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python's own SIGINT handler (KeyboardInterrupt), whatever this process inherited: a
    shell starts background jobs with SIGINT ignored, and Python then leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_first_wait(monkeypatch, handle):
    """Ctrl-C while the next get() is about to wait for its first reply."""
    real, calls = handle.await_reply, []

    def await_reply(rid, timeout=None):
        calls.append(rid)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(rid, timeout)

    monkeypatch.setattr(handle, "await_reply", await_reply)


def _never_wait_for_lost_replies(monkeypatch):
    """A get() that waited for a reply it had lost would now hang until the test times out."""
    monkeypatch.setattr(fetching, "KEEP_WAITING_S", 3600.0)


def test_an_interrupted_get_keeps_the_data_for_the_next_get(bob, monkeypatch):
    x = torch.arange(6.0).send(bob)
    _interrupt_first_wait(monkeypatch, bob)
    with pytest.raises(KeyboardInterrupt):
        x.get()
    monkeypatch.undo()
    assert len(bob._objects) == 0
    assert torch.equal(x.get(), torch.arange(6.0))
    with pytest.raises(sy.PointerUsageError, match="already retrieved"):
        x.get()


def test_a_model_get_interrupted_midway_completes_when_run_again(bob, monkeypatch):
    model = nn.Linear(3, 2)
    values = [p.detach().clone() for p in model.parameters()]
    model.send(bob)
    _interrupt_first_wait(monkeypatch, bob)
    with pytest.raises(KeyboardInterrupt):
        model.get()
    monkeypatch.undo()
    model.get()
    for p, v in zip(model.parameters(), values, strict=True):
        assert not isinstance(p, sy.PointerTensor) and torch.equal(p.data, v)
    assert len(bob._objects) == 0


def test_an_interrupt_inside_the_wait_keeps_the_reply_on_its_way(bob, monkeypatch):
    x = torch.arange(5.0).send(bob)
    real, calls = bob.link.recv, []

    def recv(*args, **kwargs):  # Ctrl-C in the poll, before the reply was read
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bob.link, "recv", recv)
    with pytest.raises(KeyboardInterrupt):
        x.get()
    monkeypatch.undo()
    assert len(bob._objects) == 0  # the reply was taken after all; its copy deleted
    assert torch.equal(x.get(), torch.arange(5.0))


def _interrupt_decoding_the_next_data(monkeypatch):
    """Ctrl-C while the next DATA reply is decoded: its frames are gone."""
    real = handle_module.decode

    def decode(frames):
        message = real(frames)
        if message.kind == Kind.DATA:
            monkeypatch.setattr(handle_module, "decode", real)
            raise KeyboardInterrupt
        return message

    monkeypatch.setattr(handle_module, "decode", decode)


def test_a_reply_lost_while_decoded_is_fetched_again(bob, monkeypatch):
    _never_wait_for_lost_replies(monkeypatch)
    x = torch.full((BIG,), 2.0).send(bob)
    _interrupt_decoding_the_next_data(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        x.get()
    assert len(bob._objects) == 0  # the worker set the tensor aside for the next get()
    assert torch.equal(x.get(), torch.full((BIG,), 2.0))


def test_a_lost_reply_is_fetched_again_after_a_get_of_something_else(bob, monkeypatch):
    """Another get() at the same worker in between completes its own round, but must not
    free what the interrupted one left set aside there."""
    _never_wait_for_lost_replies(monkeypatch)
    x, z = torch.arange(10.0).send(bob), torch.ones(2).send(bob)
    _interrupt_decoding_the_next_data(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        x.get()
    assert torch.equal(z.get(), torch.ones(2))
    assert torch.equal(x.get(), torch.arange(10.0))
    assert not bob.unreceived and bob.ping()["objects"] == 0


def test_a_reply_cut_between_its_frames_is_fetched_again(bob, monkeypatch):
    _never_wait_for_lost_replies(monkeypatch)
    x = torch.full((BIG,), 3.0).send(bob)
    real = link_module.recv_frames

    def recv_frames(socket):  # Ctrl-C after the header frame, before the tensor's frame
        socket.recv()
        monkeypatch.setattr(link_module, "recv_frames", real)
        raise KeyboardInterrupt

    bob.sync()
    monkeypatch.setattr(link_module, "recv_frames", recv_frames)
    with pytest.raises(KeyboardInterrupt):
        x.get()
    assert torch.equal(x.get(), torch.full((BIG,), 3.0))  # the cut message's rest is skipped
    assert torch.equal((torch.ones(2).send(bob) * 2).get(), torch.full((2,), 2.0))
    assert len(bob._objects) == 0


def test_what_a_get_set_aside_is_freed_by_the_next_get(bob):
    """The worker sets a fetched tensor aside, unlisted and uncounted, in case the reply is
    lost (a FETCH of the same round gets it again); the client's next get() there says the
    earlier ones completed, and it is freed. A big one is deleted as soon as it is home."""
    hand_over = int(FetchMode.HAND_OVER)
    first, second = torch.randn(3).send(bob), torch.randn(3).send(bob)
    big = torch.ones(BIG).send(bob)
    first_round = bob.gets_done
    value = first.get()
    assert bob.ping()["objects"] == 2
    again = bob.request(Kind.FETCH, [first.ref.id, hand_over, first_round])
    assert torch.equal(again, value)  # as a retry after a lost reply would get it
    second.get()
    with pytest.raises(sy.ObjectNotFoundError):
        bob.request(Kind.FETCH, [first.ref.id, hand_over, first_round])
    big_round = bob.gets_done
    big.get()
    with pytest.raises(sy.ObjectNotFoundError):
        bob.request(Kind.FETCH, [big.ref.id, hand_over, big_round])


def test_an_interrupt_while_sending_waits_until_the_message_is_whole(bob, monkeypatch):
    """SIGINT between two frames of a message: without holding it back, ZeroMQ would glue
    the next message's frames to the half-sent one and the worker would get garbage."""
    x = torch.ones(BIG).send(bob)
    real, interrupted = link_module.send_frames, []

    def send_frames(socket, frames, prefix=None):
        for i, frame in enumerate(frames):  # a real SIGINT right after the first frame
            socket.send(frame, link_module.zmq.SNDMORE if i < len(frames) - 1 else 0)
            if not interrupted:
                interrupted.append(True)
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(link_module, "send_frames", send_frames)
    with pytest.raises(KeyboardInterrupt):  # raised once the STORE message is whole
        torch.full((BIG,), 0.5).send(bob)  # header frame, then the buffer's frame
    monkeypatch.setattr(link_module, "send_frames", real)
    assert interrupted
    assert torch.equal((x * 2).get(), torch.full((BIG,), 2.0))
    assert len(bob._objects) == 1  # x; the tensor whose pointer the interrupt lost is deleted


def test_ctrl_c_in_a_loop_that_drops_pointers_is_never_swallowed(bob):
    """A dropped pointer's delete is queued by a weak reference's C callback: a Ctrl-C handled
    inside a `__del__` would be printed as "Exception ignored" and lost (about half of them
    were, in a loop like this one)."""
    x = torch.ones(2).send(bob)
    for _ in range(20):
        y = x + 1
    sy.sync()
    swallowed = 0
    for _ in range(10):
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        try:
            while time.monotonic() - started < 1.0:
                y = x + 1  # drops the previous result: its delete is queued
            swallowed += 1
        except KeyboardInterrupt:
            pass
    assert swallowed == 0
    del y
