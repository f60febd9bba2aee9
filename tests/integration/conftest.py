"""Integration fixtures: real worker processes, shared per module, checked for leaks."""

from __future__ import annotations

import gc

import pytest
import torch

import zsyft as sy
from tests.helpers import wait_until, zsyft_pids


@pytest.fixture(scope="session")
def hook() -> sy.TorchHook:
    return sy.TorchHook(torch)


@pytest.fixture(scope="module")
def bob(hook):
    worker = sy.VirtualWorker(hook, id="bob")
    yield worker
    sy.local_worker.workers.pop("bob", None)
    worker.close()


@pytest.fixture(scope="module")
def alice(hook):
    worker = sy.VirtualWorker(hook, id="alice")
    yield worker
    sy.local_worker.workers.pop("alice", None)
    worker.close()


def settle(*workers) -> None:
    """Collect garbage and wait until every queued delete reached the workers."""
    gc.collect()
    for worker in workers:
        worker.sync()


@pytest.fixture(autouse=True)
def no_stray_worker_processes():
    """Every worker process alive after a test belongs to a registered handle."""
    yield
    registered = {h.pid for h in sy.local_worker.workers.values() if h.pid}

    def only_registered() -> bool:
        return not (zsyft_pids() - registered - _outside)

    assert wait_until(only_registered, 5), (
        f"stray worker processes: {zsyft_pids() - registered - _outside}"
    )


_outside = zsyft_pids()  # workers that existed before the tests started are not ours
