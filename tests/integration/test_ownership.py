"""Objects belong to the client that created them: another authenticated client cannot read,
change, delete, list or overwrite them, cannot borrow the owner's identity through a worker,
and a client that disconnects has its objects freed after the lease."""

from __future__ import annotations

import os

import pytest
import torch

import zsyft as sy
from tests import helpers
from tests.integration.conftest import settle
from zsyft.transport import keys
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import Kind


@pytest.fixture(scope="module")
def intruder():
    """A second client, authorized to connect (its public key is in the key directory)."""
    stem = f"intruder-{os.getpid()}"
    pair = keys.write_pair(keys.default_key_dir(), stem)
    yield pair
    keys.remove_pair(keys.default_key_dir(), stem)


class RawClient:
    """A bare DEALER with its own key: sends hand-made messages and reads the replies."""

    def __init__(self, worker, pair) -> None:
        self.socket = helpers.raw_dealer(worker.address, worker.public_key, pair)
        self.rids = iter(range(1, 1 << 30))

    def request(self, kind: int, body, on_behalf: str | None = None):
        rid = next(self.rids)
        self.socket.send_multipart(encode(kind, rid, body, on_behalf))
        while True:
            reply = decode(self.socket.recv_multipart())
            if reply.rid == rid:
                return reply

    def post(self, kind: int, body) -> None:
        self.socket.send_multipart(encode(kind, 0, body))

    def close(self) -> None:
        self.socket.close(0)


@pytest.fixture
def other(bob, intruder):
    client = RawClient(bob, intruder)
    yield client
    client.close()


def _value(ptr) -> bytes:
    return ptr.ref.id


def test_another_client_cannot_read_change_delete_or_list(hook, bob, other):
    secret = torch.tensor([1.0, 2.0, 3.0]).send(bob)
    bob.sync()
    oid = _value(secret)

    fetched = other.request(Kind.FETCH, [oid, False])
    assert fetched.kind == Kind.ERROR and fetched.body["type"] == "ObjectNotFoundError"
    changed = other.request(Kind.COMMAND, [1, "add_.Tensor", [oid, oid], {}, [None], True])
    assert changed.kind == Kind.ERROR and changed.body["type"] == "ObjectNotFoundError"
    used = other.request(Kind.COMMAND, [2, "mul.Tensor", [oid, 2], {}, [os.urandom(16)], True])
    assert used.kind == Kind.ERROR and "not in bob's store" in used.body["message"]
    overwrite = other.request(Kind.STORE, [oid, torch.zeros(3)])  # a pipelined STORE: a notice
    assert overwrite.kind == Kind.ERROR
    other.post(Kind.DELETE, [oid])
    listing = other.request(Kind.LIST, None)
    assert listing.kind == Kind.DATA and oid not in listing.body

    assert torch.equal(secret.get(), torch.tensor([1.0, 2.0, 3.0]))  # untouched, still there


@pytest.mark.parametrize(("op", "extra"), [
    ("empty_like.default", []), ("new_empty.default", [[500]]),
    ("new_empty_strided.default", [[500], [1]]),
])
def test_uninitialized_memory_never_shows_what_another_client_freed(hook, bob, other, op, extra):
    for _ in range(10):  # the allocator hands freed blocks of this size straight back out
        secret = (torch.arange(500, dtype=torch.float64) + 12345.5).send(bob)
        doubled = secret * 2
        del secret, doubled
        settle(bob)
        source, out = os.urandom(16), os.urandom(16)
        other.post(Kind.STORE, [source, torch.ones(500, dtype=torch.float64)])
        reply = other.request(Kind.COMMAND, [1, op, [source, *extra], {}, [out], True])
        assert reply.kind == Kind.META, reply.body
        fetched = other.request(Kind.FETCH, [out, True])
        assert fetched.kind == Kind.DATA and not fetched.body.any(), "freed data leaked"
        other.post(Kind.DELETE, [source])


def test_a_client_cannot_claim_to_act_for_another(hook, bob, other):
    secret = torch.tensor([4.0]).send(bob)
    bob.sync()
    owner_key = keys.identity().public
    reply = other.request(Kind.FETCH, [_value(secret), False], on_behalf=owner_key)
    assert reply.kind == Kind.ERROR and "only a worker may act on behalf" in reply.body["message"]
    assert secret.get().item() == 4.0


def test_a_worker_in_a_chain_acts_only_for_the_pointer_owner(hook, bob, alice, intruder):
    """The pointer alice holds belongs to us: the intruder cannot make alice use it."""
    chained = torch.tensor([5.0, 6.0]).send(bob).send(alice)
    alice.sync()
    pointer_id = _value(chained)
    at_alice = RawClient(alice, intruder)
    try:
        result_id = os.urandom(16)
        command = [1, "neg.default", [pointer_id], {}, [result_id], True]
        reply = at_alice.request(Kind.COMMAND, command)
        assert reply.kind == Kind.ERROR and reply.body["type"] == "ObjectNotFoundError"
        fetched = at_alice.request(Kind.FETCH, [pointer_id, True])
        assert fetched.kind == Kind.ERROR
    finally:
        at_alice.close()
    assert torch.equal(chained.get().get(), torch.tensor([5.0, 6.0]))
    settle(bob, alice)
    assert len(bob._objects) == 0 and len(alice._objects) == 0


def test_objects_of_a_disconnected_client_are_freed_after_the_lease(hook, intruder, monkeypatch):
    monkeypatch.setenv("ZSYFT_LEASE_S", "1")
    carol = sy.VirtualWorker(hook, id="carol")
    try:
        kept = torch.ones(2).send(carol)  # ours: we stay connected
        carol.sync()
        visitor = RawClient(carol, intruder)
        for _ in range(3):
            visitor.post(Kind.STORE, [os.urandom(16), torch.zeros(4)])
        assert visitor.request(Kind.PING, None).body["objects"] == 4
        visitor.close()
        assert helpers.wait_until(lambda: carol.ping()["objects"] == 1, 10)
        assert torch.equal(kept.get(), torch.ones(2))
    finally:
        sy.local_worker.workers.pop("carol", None)
        carol.close()


def test_a_client_that_comes_back_within_the_lease_keeps_its_objects(hook, intruder, monkeypatch):
    monkeypatch.setenv("ZSYFT_LEASE_S", "3")
    dora = sy.VirtualWorker(hook, id="dora")
    try:
        dora.ping()
        first = RawClient(dora, intruder)
        oid = os.urandom(16)
        first.post(Kind.STORE, [oid, torch.full((2,), 7.0)])
        assert first.request(Kind.PING, None).body["objects"] == 1
        first.close()
        again = RawClient(dora, intruder)  # same key, new connection
        try:
            assert again.request(Kind.PING, None).kind == Kind.PONG
            helpers.wait_until(lambda: False, 4)  # longer than the lease
            reply = again.request(Kind.FETCH, [oid, True])
            assert reply.kind == Kind.DATA and torch.equal(reply.body, torch.full((2,), 7.0))
        finally:
            again.close()
    finally:
        sy.local_worker.workers.pop("dora", None)
        dora.close()


def test_protocol_messages_are_accepted_only_from_the_party_they_claim(
    hook, bob, alice, intruder
):
    provider = sy.VirtualWorker(hook, id="own_cp")
    try:
        x = torch.tensor([1.5]).fix_prec().share(bob, alice, crypto_provider=provider)
        assert abs((x * x).get().float_prec().item() - 2.25) < 0.01  # a session exists now
        (session,) = provider.__dict__["_mpc_sessions"].values()
        forger = RawClient(bob, intruder)
        try:
            for kind, body, who in (
                (Kind.MPC_MSG, [session, os.urandom(16), 0, 1, torch.zeros(1)], "party 1"),
                (Kind.MATERIAL, [session, os.urandom(16), torch.zeros(1)], "the crypto provider"),
            ):
                reply = forger.request(kind, body)
                assert reply.kind == Kind.ERROR
                assert f"must come from {who}" in reply.body["message"]
        finally:
            forger.close()
        assert abs((x * x).get().float_prec().item() - 2.25) < 0.01  # the parties still agree
    finally:
        sy.local_worker.workers.pop("own_cp", None)
        provider.close()
