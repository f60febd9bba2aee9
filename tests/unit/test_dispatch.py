"""Pointer dispatch end to end through a worker loop running in this process (inproc://)."""

from __future__ import annotations

import gc

import pytest
import torch

import zsyft as sy
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.node import LocalNode
from zsyft.runtime.inproc import InprocWorker
from zsyft.wire.messages import Kind


@pytest.fixture(scope="module")
def hook():
    return sy.TorchHook(torch)


@pytest.fixture
def ann(hook):
    node = LocalNode()
    with InprocWorker("ann") as address:
        handle = node.add_worker(WorkerHandle(node, "ann", address))
        yield handle
        handle.close()


def test_commands_are_pipelined_and_results_fetched(ann):
    x = torch.arange(4.0).send(ann)
    y = (x * 2 + 1).sum()
    assert y.shape == () and y.dtype == torch.float32
    assert torch.equal(y.get(), torch.tensor(16.0))


def test_get_many_sends_every_fetch_first_and_pairs_each_reply_with_its_pointer(ann):
    from zsyft.tensors.fetching import get_many

    x, y = torch.tensor([1.0, 2.0]).send(ann), torch.tensor([3]).send(ann)
    rid = ann.send_request(Kind.PING, None)  # a reply that will come first
    assert [t.tolist() for t in get_many([y, x])] == [[3], [1.0, 2.0]]
    assert ann.await_reply(rid)["name"] == "ann", "an earlier reply is kept for its waiter"
    assert len(ann._objects) == 0
    with pytest.raises(sy.PointerUsageError):
        x.get()


def test_detach_shares_the_remote_object_without_a_message(ann):
    x = torch.ones(2).send(ann)
    d = x.detach()
    assert d.id_at_location == x.id_at_location
    ann.sync()
    assert len(ann._objects) == 1


def test_deletes_are_batched_and_sent_before_the_next_request(ann):
    kept = torch.zeros(1).send(ann)
    for _ in range(10):
        torch.ones(1).send(ann)
    gc.collect()
    assert len(ann._objects) == 1
    del kept


def test_in_place_on_a_local_tensor_from_a_pointer_is_refused(ann):
    with pytest.raises(sy.PointerUsageError, match="local tensor"):
        torch.zeros(2).add_(torch.ones(2).send(ann))


def test_pointer_repr_and_attributes(ann):
    x = torch.ones(1).send(ann)
    assert repr(x) == f"(Wrapper)>[PointerTensor | me:{x.id} -> ann:{x.id_at_location}]"
    assert str(x) == repr(x)
    assert x.location is ann


def test_call_remote_gives_what_torch_dispatch_gives_and_keeps_autograd(ann):
    from zsyft.tensors.remote_ops import call_remote

    aten = torch.ops.aten
    x = torch.arange(6.0).reshape(2, 3).send(ann)
    for func, args in [
        (aten.add.Tensor, (x, x)),
        (aten.mul.Tensor, (x, 3)),  # a Python number stays a number on the wire
        (aten.t.default, (x,)),  # a view
        (aten.expand.default, (x[0], [4, 3])),
        (aten.sum.dim_IntList, (x, [1])),
        (aten.reshape.default, (x, [3, 2])),  # composite: torch decomposes it first
    ]:
        direct, dispatched = call_remote(func, *args), func(*args)
        assert (direct.shape, direct.stride(), direct.dtype) == (
            dispatched.shape, dispatched.stride(), dispatched.dtype)
        assert torch.equal(direct.get(), dispatched.get())
    w = torch.ones(3, requires_grad=True).send(ann)
    call_remote(aten.mul.Tensor, w, 2.0).sum().backward()  # under autograd: torch's own way
    assert torch.equal(w.grad.get(), torch.full((3,), 2.0))
    v = torch.ones(2, requires_grad=True).send(ann)  # ... also inside a list of tensors
    call_remote(aten.cat.default, [v, v]).sum().backward()
    assert torch.equal(v.grad.get(), torch.full((2,), 2.0))
