"""Data lives only in its worker's process; dead workers give typed errors, never hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import zsyft as sy
from launcher import spawn
from tests.helpers import wait_until, zsyft_pids
from zsyft.transport.zmq import SETTINGS


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_tensor_lives_in_the_worker_process_and_dies_with_it(hook, alice):
    carol = sy.VirtualWorker(hook, id="carol")
    try:
        ptr = torch.tensor([4.0, 2.0]).send(carol)
        survivor = torch.tensor([1.0]).send(alice)
        status = carol.ping()
        assert status["objects"] == 1
        assert status["threads"] == 1, "workers on one host do not each take every core"
        assert carol.pid != os.getpid() and _pid_alive(carol.pid)

        os.kill(carol.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(sy.WorkerUnavailableError) as info:
            ptr.get()
        assert time.monotonic() - started < SETTINGS.heartbeat_timeout_ms / 1000 + 1
        assert info.value.worker == "carol" and "carol" in str(info.value)
        assert isinstance(info.value, TimeoutError)

        assert torch.equal(survivor.get(), torch.tensor([1.0])), "alice is unaffected"
    finally:
        sy.local_worker.workers.pop("carol", None)
        carol.close()


def test_a_dead_worker_leaves_the_others_snapshots_and_syncs_alone(hook, alice):
    """`alice._objects`, `alice.clear_objects()` and `sy.sync()` sync every worker: one that
    died is passed over, except that ops sent to it and never confirmed are reported once."""
    frank = sy.VirtualWorker(hook, id="frank")
    try:
        kept = torch.tensor([1.0]).send(alice)
        at_frank = torch.ones(2).send(frank)
        lost = at_frank + 1  # sent, never confirmed
        os.kill(frank.pid, signal.SIGKILL)
        with pytest.raises(sy.WorkerUnavailableError, match="frank"):
            sy.sync()
        for _ in range(2):
            sy.sync()
            assert len(alice._objects) == 1
        alice.clear_objects()
        assert len(alice._objects) == 0
        with pytest.raises(sy.WorkerUnavailableError, match="frank"):
            lost.get()
        del kept, at_frank, lost
    finally:
        sy.local_worker.workers.pop("frank", None)
        frank.close()


def test_a_move_to_a_dead_worker_leaves_the_data_where_it_was(hook, alice):
    hana = sy.VirtualWorker(hook, id="hana")
    try:
        hana.ping()
        x = torch.tensor([7.0, 8.0], requires_grad=True).send(alice)
        os.kill(hana.pid, signal.SIGKILL)
        with pytest.raises(sy.WorkerUnavailableError, match="hana"):
            x.move(hana)
        assert x.location is alice and len(alice._objects) == 1
        assert torch.equal(x.get(), torch.tensor([7.0, 8.0]))
    finally:
        sy.local_worker.workers.pop("hana", None)
        hana.close()


def test_frozen_worker_is_detected_by_heartbeats(hook):
    dave = sy.VirtualWorker(hook, id="dave")
    try:
        ptr = torch.ones(2).send(dave)
        dave.sync()
        os.kill(dave.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(sy.WorkerUnavailableError, match="dave"):
            ptr.get()
        assert time.monotonic() - started < SETTINGS.heartbeat_timeout_ms / 1000 + 1
    finally:
        os.kill(dave.pid, signal.SIGCONT)
        sy.local_worker.workers.pop("dave", None)
        dave.close()


SCRIPT = textwrap.dedent(
    """
    import sys, torch, zsyft as sy
    hook = sy.TorchHook(torch)
    workers = [sy.VirtualWorker(hook, id=name) for name in ("w1", "w2")]
    for w in workers:
        torch.ones(1).send(w)
        w.ping()  # running (PDEATHSIG armed); a worker still starting up checks its parent
        print(w.pid, w.address, flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_private_workers_die_with_their_python_process(how):
    client = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        lines = [client.stdout.readline().split() for _ in range(2)]
        pids = [int(pid) for pid, _ in lines]
        directories = [Path(address.removeprefix("ipc://")).parent for _, address in lines]
        assert all(_pid_alive(p) for p in pids) and all(d.is_dir() for d in directories)
        if how == "exit":
            client.stdin.close()
        else:
            client.kill()
        client.wait(10)
        assert wait_until(lambda: not any(p in zsyft_pids() for p in pids), 2.0)
        spawn.sweep_stale_private_dirs()  # as the next private worker's start does
        assert not any(d.exists() for d in directories), "socket and log directories are gone"
    finally:
        client.kill()
        client.wait(10)


FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch, zsyft as sy
    hook = sy.TorchHook(torch)
    workers = [sy.VirtualWorker(hook, id=name) for name in ("f1", "f2")]
    for w in workers:
        w.ping()
    child = os.fork()
    if child == 0:
        sys.exit(0)  # a normal exit runs the exit handlers, which are the parent's
    os.waitpid(child, 0)
    print(torch.tensor([1.0, 2.0]).send(workers[0]).move(workers[1]).get().tolist())
    """
)


def test_a_forked_child_that_exits_leaves_the_parents_workers_running():
    parent = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                            timeout=60)
    assert parent.returncode == 0, parent.stderr[-2000:]
    assert parent.stdout.strip() == "[1.0, 2.0]"
    assert "Exception ignored" not in parent.stderr


def test_replacing_a_worker_makes_old_pointers_fail_clearly(hook):
    first = sy.VirtualWorker(hook, id="gina")
    ptr = torch.ones(2).send(first)
    second = sy.VirtualWorker(hook, id="gina")  # as when a notebook cell is run again
    try:
        assert sy.local_worker.workers["gina"] is second
        with pytest.raises(sy.WorkerUnavailableError, match="replaced"):
            ptr.get()
        assert wait_until(lambda: not _pid_alive(first.pid), 5), "the old worker was stopped"
        assert torch.equal(torch.ones(1).send(second).get(), torch.ones(1))
        old, new = torch.ones(2).send(first), torch.ones(2).send(second)
        with pytest.raises(sy.PointerUsageError, match="two different workers both named gina"):
            old + new  # not "move one to the other first, e.g. y.move(gina)"
    finally:
        sy.local_worker.workers.pop("gina", None)
        second.close()


THREAD_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time, torch, zsyft as sy
    hook = sy.TorchHook(torch)
    made = []
    thread = threading.Thread(target=lambda: made.append(sy.VirtualWorker(hook, id="t1")))
    thread.start()
    thread.join()
    time.sleep(0.5)  # the thread that spawned the worker is gone
    print(int(torch.ones(2).send(made[0]).get().sum()), made[0].pid, flush=True)
    sys.stdin.read()
    """
)


def test_a_worker_started_by_a_thread_outlives_the_thread_but_not_the_process():
    client = subprocess.Popen(
        [sys.executable, "-c", THREAD_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )
    try:
        answer, pid = client.stdout.readline().split()
        assert answer == "2", "the worker died with the thread that started it"
        client.kill()
        client.wait(10)
        assert wait_until(lambda: int(pid) not in zsyft_pids(), 3.0)
    finally:
        client.kill()
        client.wait(10)


@pytest.mark.parametrize("name", ["a/b", "x" * 65, "-bob", "bö", "", 7])
def test_a_worker_id_that_cannot_name_files_is_refused_before_any_process_starts(hook, name):
    before = zsyft_pids()
    with pytest.raises(ValueError, match="1 to 64 ASCII letters"):
        sy.VirtualWorker(hook, id=name)
    assert zsyft_pids() <= before
