"""Tutorial Part 1 (basic tools), cell by cell, against a real worker process."""

from __future__ import annotations

import os

import pytest
import torch

import zsyft as sy
from tests.integration.conftest import settle


@pytest.fixture(autouse=True)
def empty_bob(bob):
    settle(bob)
    assert bob._objects == {}, "a previous test left objects at bob"
    yield
    settle(bob)


def test_hook_adds_send_and_local_worker_is_me(hook):
    assert hasattr(torch.Tensor, "send")
    assert sy.local_worker.id == "me"
    assert repr(sy.local_worker) == "<Worker id:me #objects:0>"
    assert hook.local_worker is sy.local_worker


def test_worker_is_a_separate_process(bob):
    assert bob.id == "bob"
    assert bob.pid != os.getpid()
    assert bob.ping()["pid"] == bob.pid
    assert bob.address.startswith("ipc://")


def test_section_1_1_send_and_get(bob):
    x = torch.tensor([1, 2, 3, 4, 5])
    y = torch.tensor([1, 1, 1, 1, 1])
    x_ptr = x.send(bob)
    y_ptr = y.send(bob)
    assert isinstance(x_ptr, sy.PointerTensor)
    objects = bob._objects
    assert len(objects) == 2
    assert torch.equal(objects[x_ptr.id_at_location], x)
    assert repr(bob) == "<Worker id:bob #objects:2>"

    z = x_ptr + x_ptr
    assert isinstance(z, sy.PointerTensor)
    assert len(bob._objects) == 3

    assert repr(x_ptr) == (
        f"(Wrapper)>[PointerTensor | me:{x_ptr.id} -> bob:{x_ptr.id_at_location}]"
    )
    assert x_ptr.location is bob and bob == x_ptr.location
    assert x_ptr.owner is sy.local_worker and sy.local_worker == x_ptr.owner
    assert isinstance(x_ptr.id_at_location, int) and isinstance(x_ptr.id, int)

    assert torch.equal(x_ptr.get(), x)
    assert torch.equal(y_ptr.get(), y)
    assert torch.equal(z.get(), torch.tensor([2, 4, 6, 8, 10]))
    assert bob._objects == {}


def test_section_1_2_operations_and_torch_functions(bob):
    x = torch.tensor([1, 2, 3, 4, 5]).send(bob)
    y = torch.tensor([1, 1, 1, 1, 1]).send(bob)
    assert torch.equal((x + y).get(), torch.tensor([2, 3, 4, 5, 6]))
    z = torch.add(x, y)
    assert isinstance(z, sy.PointerTensor)
    assert torch.equal(z.get(), torch.tensor([2, 3, 4, 5, 6]))


def test_section_1_2_backpropagation(bob):
    x = torch.tensor([1, 2, 3, 4, 5.0], requires_grad=True).send(bob)
    y = torch.tensor([1, 1, 1, 1, 1.0], requires_grad=True).send(bob)
    z = (x + y).sum()
    z.backward()
    x = x.get()
    assert x.requires_grad
    assert torch.equal(x.detach(), torch.tensor([1, 2, 3, 4, 5.0]))
    assert torch.equal(x.grad, torch.ones(5))
    y = y.get()
    assert torch.equal(y.grad, torch.ones(5))


def test_get_removes_the_object_and_second_get_is_a_clear_error(bob):
    ptr = torch.arange(3).send(bob)
    ptr.get()
    assert bob._objects == {}
    with pytest.raises(sy.PointerUsageError, match="already retrieved"):
        ptr.get()


def test_garbage_collected_pointers_delete_remote_objects(bob):
    for _ in range(200):
        torch.ones(3).send(bob) * 2
    settle(bob)
    assert bob._objects == {}
