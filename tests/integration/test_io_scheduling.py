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

SHOW_POLICIES = """
import os, time
import zmq
from zsyft.transport.zmq import context
context().socket(zmq.DEALER).close(0)
time.sleep(0.1)  # threads name themselves once they run
for tid in sorted(os.listdir("/proc/self/task")):
    with open(f"/proc/self/task/{tid}/comm") as comm:
        print(comm.read().strip(), os.sched_getscheduler(int(tid)))
"""


def _policies(pid: int | None = None, env: dict | None = None) -> dict[str, set[int]]:
    """{thread name: its scheduling policies} of worker `pid`, or of a fresh client process."""
    if pid is None:
        out = subprocess.run([sys.executable, "-c", SHOW_POLICIES], capture_output=True,
                             text=True, timeout=60, env={**os.environ, **(env or {})},
                             check=True).stdout
        pairs = [line.rsplit(" ", 1) for line in out.splitlines()]
    else:
        tasks = f"/proc/{pid}/task"
        pairs = []
        for tid in os.listdir(tasks):
            with open(f"{tasks}/{tid}/comm") as comm:
                pairs.append((comm.read().strip(), os.sched_getscheduler(int(tid))))
    found: dict[str, set[int]] = {}
    for name, policy in pairs:
        found.setdefault(name, set()).add(int(policy))
    return found


def test_a_clients_io_thread_runs_batch_and_its_own_thread_does_not():
    policies = _policies()
    assert policies["ZMQbg/IO/0"] == {os.SCHED_BATCH}
    assert policies["python"] == {os.SCHED_OTHER}


def test_zsyft_io_batch_0_leaves_the_default_scheduling():
    assert _policies(env={"ZSYFT_IO_BATCH": "0"})["ZMQbg/IO/0"] == {os.SCHED_OTHER}


def test_a_workers_io_thread_runs_batch(bob):
    torch.ones(2).send(bob).get()  # the worker is up and has served a client
    policies = _policies(bob.pid)
    assert policies["ZMQbg/IO/0"] == {os.SCHED_BATCH}
    assert policies["zsyft-worker"] == {os.SCHED_OTHER}


STARTED_BEFORE = """
import os, time
import zmq
zmq.Context.instance().socket(zmq.PAIR).close(0)
time.sleep(0.1)
from zsyft.transport.zmq import context
start = time.monotonic()
context()
print("took", time.monotonic() - start)
for tid in sorted(os.listdir("/proc/self/task")):
    with open(f"/proc/self/task/{tid}/comm") as comm:
        print(comm.read().strip(), os.sched_getscheduler(int(tid)))
"""


def test_zeromq_threads_started_before_zsyft_are_left_alone():
    """A program (a Jupyter kernel) that started the shared context before zsyft: its
    threads keep their scheduling, and zsyft does not wait for threads that will not come."""
    out = subprocess.run([sys.executable, "-c", STARTED_BEFORE], capture_output=True,
                         text=True, timeout=60, check=True).stdout.splitlines()
    took = next(line for line in out if line.startswith("took"))
    assert float(took.split()[1]) < 0.15
    assert f"ZMQbg/IO/0 {os.SCHED_OTHER}" in out
