"""ZeroMQ's I/O threads run SCHED_BATCH in zsyft's processes (so a send does not preempt the
sender), and `ZSYFT_IO_BATCH=0` leaves them alone; the Python threads keep the default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and hasattr(os, "SCHED_BATCH")),
    reason="SCHED_BATCH is Linux's",
)

CLIENT = """
import os, time
import zmq
{before}
from zsyft.transport.zmq import context
start = time.monotonic()
context().socket(zmq.DEALER).close(0)
print("took", time.monotonic() - start)
time.sleep(0.1)  # threads name themselves once they run
for tid in sorted(os.listdir("/proc/self/task")):
    with open(f"/proc/self/task/{{tid}}/comm") as comm:
        print(comm.read().strip(), os.sched_getscheduler(int(tid)))
"""


def _grouped(pairs: list) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for name, policy in pairs:
        found.setdefault(name, set()).add(int(policy))
    return found


def _client(before: str = "", env: dict | None = None) -> tuple[dict[str, set[int]], float]:
    """A fresh client process (running `before` first): {thread name: its scheduling
    policies}, and how long its first `context()` took."""
    out = subprocess.run([sys.executable, "-c", CLIENT.format(before=before)],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})}, check=True).stdout.splitlines()
    took = float(out[0].split()[1])
    return _grouped(line.rsplit(" ", 1) for line in out[1:]), took


def _worker(pid: int) -> dict[str, set[int]]:
    """{thread name: its scheduling policies} of worker process `pid`."""
    pairs = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            pairs.append((comm.read().strip(), os.sched_getscheduler(int(tid))))
    return _grouped(pairs)


def test_a_clients_io_thread_runs_batch_and_its_own_thread_does_not():
    policies, _ = _client()
    assert policies["ZMQbg/IO/0"] == {os.SCHED_BATCH}
    assert policies["python"] == {os.SCHED_OTHER}


def test_zsyft_io_batch_0_leaves_the_default_scheduling():
    assert _client(env={"ZSYFT_IO_BATCH": "0"})[0]["ZMQbg/IO/0"] == {os.SCHED_OTHER}


def test_a_workers_io_thread_runs_batch(bob):
    torch.ones(2).send(bob).get()  # the worker is up and has served a client
    policies = _worker(bob.pid)
    assert policies["ZMQbg/IO/0"] == {os.SCHED_BATCH}
    assert policies["zsyft-worker"] == {os.SCHED_OTHER}


def test_zeromq_threads_started_before_zsyft_are_left_alone():
    """A program (a Jupyter kernel) that started the shared context before zsyft: its
    threads keep their scheduling, and zsyft does not wait for threads that will not come."""
    policies, took = _client(
        before="zmq.Context.instance().socket(zmq.PAIR).close(0)\ntime.sleep(0.1)")
    assert took < 0.15
    assert policies["ZMQbg/IO/0"] == {os.SCHED_OTHER}
