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


def private_worker(hook, name: str):
    """A `sy.VirtualWorker` for the duration of a fixture, unregistered and stopped after."""
    worker = sy.VirtualWorker(hook, id=name)
    yield worker
    sy.local_worker.workers.pop(name, None)
    worker.close()


@pytest.fixture(scope="module")
def bob(hook):
    yield from private_worker(hook, "bob")


@pytest.fixture(scope="module")
def alice(hook):
    yield from private_worker(hook, "alice")


@pytest.fixture(scope="module")
def james(hook):
    """The crypto provider of the encrypted tests."""
    yield from private_worker(hook, "james")


@pytest.fixture(scope="module")
def carol(hook):
    yield from private_worker(hook, "carol")


def settle(*workers) -> None:
    """Collect garbage and wait until every queued delete reached the workers."""
    gc.collect()
    for worker in workers:
        worker.sync()


def assert_nothing_left(*workers) -> None:
    """After `settle`, no worker holds an object any more."""
    settle(*workers)
    left = {w.id: len(w._objects) for w in workers}
    assert not any(left.values()), f"objects left at the workers: {left}"


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
