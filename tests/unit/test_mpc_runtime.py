"""Secure protocols run by real worker loops (threads on inproc://), driven by messages only.

Three workers: bob and alice hold shares, james is the crypto provider. The client sends
metadata and ids; it never sees a share or a masked value.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch

from zsyft.errors import RemoteError
from zsyft.mpc.encoding import FixedPointEncoder
from zsyft.mpc.sharing import reconstruct, share
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.node import LocalNode
from zsyft.runtime.inproc import InprocWorker
from zsyft.wire.codec import decode
from zsyft.wire.messages import Kind

SEQ = itertools.count(1)


@pytest.fixture
def cluster(loops):
    yield loops[:4]


@pytest.fixture
def loops():
    """The cluster, and the three workers' loops themselves (to look inside them)."""
    node = LocalNode()
    workers = [InprocWorker(name) for name in ("bob", "alice", "james")]
    received_by_provider: list = []
    james = workers[2].worker
    original = james.handle

    def recording(identity, frames):
        received_by_provider.append(list(frames))
        original(identity, frames)

    james.handle = recording
    handles = []
    for inproc in workers:
        handles.append(node.add_worker(WorkerHandle(node, inproc.name, inproc.__enter__())))
    session = os.urandom(16)
    parties = [{"name": h.id, "address": h.address} for h in handles[:2]]
    handles[2].request(Kind.PROVIDER_SETUP, [session, parties])
    yield node, handles, session, received_by_provider, [w.worker for w in workers]
    for handle in handles:
        handle.close()
    for inproc in workers:
        inproc.close()


def run(handles, session, name, inputs, params, op_id=None):
    """Share `inputs` between bob and alice, run protocol `name`, return the opened output
    (with `op_id`, an op the provider was already asked to deal for: no DEAL is sent)."""
    parties, provider = handles[:2], handles[2]
    ids = []
    for value in inputs:
        per_party = []
        for handle, piece in zip(parties, share(value, 2), strict=True):
            object_id = os.urandom(16)
            handle.store(object_id, piece)
            per_party.append(object_id)
        ids.append(per_party)
    outputs = [os.urandom(16) for _ in parties]
    if op_id is None:
        op_id = os.urandom(16)
        provider.post(Kind.DEAL, [session, op_id, name, params])
        provider.flush()
    for i, handle in enumerate(parties):
        handle.post(Kind.MPC_RUN, [next(SEQ), session, op_id, name, [x[i] for x in ids],
                                   outputs[i], params])
        handle.flush()
    return reconstruct([h.fetch(out, delete=True) for h, out in zip(parties, outputs,
                                                                     strict=True)])


def test_beaver_mul_and_matmul_across_workers(cluster):
    _, handles, session, _ = cluster
    x = torch.randint(-(2**40), 2**40, (3, 4))
    y = torch.randint(-(2**20), 2**20, (3, 4))
    assert torch.equal(run(handles, session, "mul", [x, y],
                           {"x_shape": [3, 4], "y_shape": [3, 4]}), x * y)
    w = torch.randint(-1000, 1000, (4, 2))
    assert torch.equal(run(handles, session, "matmul", [x, w],
                           {"x_shape": [3, 4], "y_shape": [4, 2]}), x @ w)


def test_a_reply_that_waits_on_a_protocol_op_is_awaited_asleep(cluster, monkeypatch):
    """The client leaves the cores to the parties while they run the op's rounds; a plain
    request afterwards is awaited awake again (the worker answers within a round trip)."""
    _, handles, session, _ = cluster
    bob = handles[0]
    waits = []
    original = bob.link.recv

    def recv(deadline, serve=None, awake=True, until=None):
        waits.append(awake)
        return original(deadline, serve, awake, until)

    monkeypatch.setattr(bob.link, "recv", recv)
    x = torch.randint(-100, 100, (5,))
    run(handles, session, "mul", [x, x], {"x_shape": [5], "y_shape": [5]})
    assert waits and not any(waits), "the fetch after MPC_RUN waits without spinning"
    waits.clear()
    bob.ping()
    assert waits and all(waits), "nothing is computing any more: awake, as usual"


def test_fixed_point_product_then_truncation(cluster):
    _, handles, session, _ = cluster
    enc = FixedPointEncoder()
    a, b = torch.tensor([1.5, -2.25, 1e3]), torch.tensor([2.0, 4.0, -3.5])
    product = run(handles, session, "mul", [enc.encode(a), enc.encode(b)],
                  {"x_shape": [3], "y_shape": [3]})
    truncated = run(handles, session, "truncate", [product], {"shape": [3], "divisor": enc.scale})
    torch.testing.assert_close(enc.decode(truncated), a * b, atol=3e-3, rtol=0)


def test_relu_across_workers(cluster):
    _, handles, session, _ = cluster
    x = torch.tensor([-5, 0, 7, -(2**62), 2**62 - 1])
    assert torch.equal(run(handles, session, "relu", [x], {"shape": [5]}), x.clamp(min=0))


def test_provider_receives_only_metadata(cluster):
    _, handles, session, received = cluster
    run(handles, session, "mul", [torch.ones(8, dtype=torch.int64)] * 2,
        {"x_shape": [8], "y_shape": [8]})
    kinds = [decode(frames).kind for frames in received]
    assert Kind.DEAL in kinds and Kind.PROVIDER_SETUP in kinds
    assert all(len(frames) == 1 for frames in received), "no tensor frame reached the provider"


def test_unknown_session_fails_the_op_with_a_clear_error(cluster):
    node, handles, _, _ = cluster
    bob = handles[0]
    x_id, out = os.urandom(16), os.urandom(16)
    bob.store(x_id, torch.ones(2, dtype=torch.int64))
    bob.post(Kind.MPC_RUN, [next(SEQ), os.urandom(16), os.urandom(16), "relu", [x_id], out,
                            {"shape": [2]}])
    with pytest.raises(RemoteError, match="unknown session"):
        node.sync()
    with pytest.raises(RemoteError, match="unknown session"):
        bob.fetch(out, delete=True)


@pytest.mark.parametrize("params", [{"shape": "x"}, {"shape": [1 << 30, 1 << 30]}, None])
def test_hostile_protocol_parameters_are_refused(cluster, params):
    node, handles, session, _ = cluster
    handles[2].post(Kind.DEAL, [session, os.urandom(16), "relu", params])
    handles[2].flush()
    assert handles[2].ping()["name"] == "james", "the provider keeps serving"
    with pytest.raises(RemoteError):
        node.sync()


def test_a_party_that_cannot_follow_the_providers_prg_fails_the_setup_naming_it(
    cluster, monkeypatch
):
    import zsyft.runtime.mpc_runtime as runtime

    _, handles, _, _ = cluster
    real = runtime.Prg

    def party_without_the_scheme(seed, scheme=None):
        if scheme is not None:  # only a party names the scheme: the provider uses its own
            raise ValueError(f"PRG scheme {scheme!r} is not available in this process")
        return real(seed)

    monkeypatch.setattr(runtime, "Prg", party_without_the_scheme)
    parties = [{"name": h.id, "address": h.address} for h in handles[:2]]
    with pytest.raises(RemoteError, match="party bob refused the crypto provider's seed: PRG"):
        handles[2].request(Kind.PROVIDER_SETUP, [os.urandom(16), parties])


def test_a_failed_op_leaves_nothing_in_the_parties_mailboxes(loops):
    """A party that fails an op tells the others, which fail it too; the messages, aborts and
    material still on their way for that op are dropped when they arrive, not kept forever."""
    node, handles, session, _, workers = loops
    bob, alice, james = handles
    op_id, outputs, params = os.urandom(16), [os.urandom(16), os.urandom(16)], {
        "x_shape": [4], "y_shape": [4]}
    inputs = []
    for handle, shape in ((bob, 3), (alice, 4)):  # bob's shares do not fit the triple
        ids = [os.urandom(16), os.urandom(16)]
        for object_id in ids:
            handle.store(object_id, torch.ones(shape, dtype=torch.int64))
        inputs.append(ids)
    james.post(Kind.DEAL, [session, op_id, "mul", params])
    james.flush()
    for i, handle in enumerate((bob, alice)):
        handle.post(Kind.MPC_RUN, [next(SEQ), session, op_id, "mul", inputs[i], outputs[i],
                                   params])
        handle.flush()
    with pytest.raises(RemoteError, match="do not match the triple"):
        node.sync()
    for handle in handles:
        handle.sync()  # whatever was still on its way has arrived
    assert [w.mpc.mailbox for w in workers[:2]] == [{}, {}]
    for handle, ids in zip((bob, alice), inputs, strict=True):
        handle.post(Kind.DELETE, ids)
        handle.sync()


def test_material_dealt_ahead_serves_later_ops_and_leaves_nothing_behind(loops):
    """One DEAL naming several op ids: one MATERIAL message brings the last party every
    correction, which waits under its op id until that op runs."""
    _, handles, session, received, workers = loops
    james = handles[2]
    params = {"x_shape": [3], "y_shape": [3], "divisor": 1000}
    op_ids = [os.urandom(16) for _ in range(5)]
    james.post(Kind.DEAL, [session, op_ids, "fixed_mul", params])
    james.sync()
    handles[1].sync()  # the material has arrived at alice (the last party)
    alice_box = workers[1].mpc.mailbox
    assert sorted(alice_box) == sorted((session, op) for op in op_ids)
    assert workers[0].mpc.mailbox == {}, "only the last party gets corrections"
    enc = FixedPointEncoder()
    for k, op_id in enumerate(op_ids):
        a, b = torch.tensor([1.5, -2.0, 0.25 * k]), torch.tensor([2.0, 3.5, -4.0])
        product = run(handles, session, "fixed_mul", [enc.encode(a), enc.encode(b)], params,
                      op_id=op_id)
        torch.testing.assert_close(enc.decode(product), a * b, atol=3e-3, rtol=0)
    assert [w.mpc.mailbox for w in workers[:2]] == [{}, {}]
    deals = [decode(frames) for frames in received if decode(frames).kind == Kind.DEAL]
    assert len(deals) == 1, "the provider was asked once for all five ops"


BAD_ID_LISTS = [
    [],  # no op at all
    [b"short"],
    ["x" * 16, "y" * 16],
    [os.urandom(16) for _ in range(65)],  # over MAX_DEALT
]


@pytest.mark.parametrize("ids", BAD_ID_LISTS)
def test_malformed_deal_lists_are_refused_and_the_provider_keeps_serving(loops, ids):
    node, handles, session, _, _ = loops
    handles[2].post(Kind.DEAL, [session, ids, "mul", {"x_shape": [1], "y_shape": [1]}])
    with pytest.raises(RemoteError, match="op id"):
        node.sync()
    assert handles[2].ping()["name"] == "james"


ONE = torch.zeros(1, dtype=torch.int64)


@pytest.mark.parametrize(
    "ids, tensors",
    [(ids, [ONE] * len(ids)) for ids in BAD_ID_LISTS]
    + [([os.urandom(16), os.urandom(16)], [ONE]), ([os.urandom(16)], "not tensors")],
)
def test_malformed_material_lists_are_refused_and_the_party_keeps_serving(loops, ids, tensors):
    node, handles, session, _, workers = loops
    handles[1].post(Kind.MATERIAL, [session, ids, tensors])
    with pytest.raises(RemoteError, match=r"op id|tensor per"):
        node.sync()
    assert workers[1].mpc.mailbox == {}
    assert handles[1].ping()["name"] == "alice"
