"""A hostile client speaking raw COMMAND messages to a real worker process.

Every attempt (file I/O, RNG state, reflection, `out=`, smuggled code, huge allocations, a
kernel that segfaults) gets an ERROR reply naming the problem, changes nothing it should not,
and the worker keeps answering PING.
"""

from __future__ import annotations

import errno
import itertools
import os
import pickle
from pathlib import Path

import msgpack
import pytest
import torch

import zsyft as sy
from tests import helpers
from zsyft.wire.codec import decode, encode
from zsyft.wire.messages import PROTOCOL_VERSION, Kind, Message

_rids = itertools.count(1000)


class Client:
    """A bare CURVE DEALER with helpers for the few messages these tests send."""

    def __init__(self, worker: sy.VirtualWorker) -> None:
        self.worker = worker
        self.sock = helpers.raw_dealer(worker.address, worker.public_key, timeout_ms=20000)
        self.ids: list[bytes] = []

    def request(self, kind: int, body: object) -> Message:
        rid = next(_rids)
        self.sock.send_multipart(encode(kind, rid, body))
        reply = decode(self.sock.recv_multipart())
        assert reply.rid == rid, reply
        return reply

    def store(self, tensor: torch.Tensor) -> bytes:
        object_id = os.urandom(16)
        self.sock.send_multipart(encode(Kind.STORE, 0, [object_id, tensor]))
        self.ids.append(object_id)
        return object_id

    def command(self, op: object, args: list, kwargs: dict | None = None) -> tuple[Message, bytes]:
        out = os.urandom(16)
        self.ids.append(out)
        return self.request(Kind.COMMAND, [1, op, args, kwargs or {}, [out], True]), out

    def fetch(self, object_id: bytes) -> Message:
        return self.request(Kind.FETCH, [object_id, False])

    def assert_error(self, reply: Message, error_type: str, *words: str) -> dict:
        """`reply` is an ERROR from this worker, of `error_type`, whose message has `words`."""
        assert reply.kind == Kind.ERROR, f"expected an ERROR, got {reply}"
        body = reply.body
        assert body["worker"] == self.worker.id and body["type"] == error_type, body
        for word in words:
            assert word in body["message"], body["message"]
        return body

    def assert_alive(self) -> None:
        pong = self.request(Kind.PING, None)
        assert pong.kind == Kind.PONG and pong.body["pid"] == self.worker.pid

    def close(self) -> None:
        self.sock.send_multipart(encode(Kind.DELETE, 0, self.ids))
        self.assert_alive()
        self.sock.close(0)


@pytest.fixture
def client(bob):
    client = Client(bob)
    yield client
    client.close()


def refused_by_allowlist(client: Client, op: object, args: list, kwargs: dict | None = None):
    reply, out = client.command(op, args, kwargs)
    client.assert_error(reply, "OpNotAllowedError", "allowlist", repr(op))
    client.assert_error(client.fetch(out), "OpNotAllowedError")  # the result is a failure, not data
    client.assert_alive()


def memory(pid: int) -> dict[str, int]:
    """VmPeak, VmHWM (peak resident) and VmRSS of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmPeak", "VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


# -- file I/O --------------------------------------------------------------------------------


def test_file_ops_are_refused_and_touch_no_file(client, tmp_path):
    x = client.store(torch.arange(4.0))
    written = tmp_path / "exfiltrated.pt"
    secret = tmp_path / "secret.pt"
    torch.save(torch.tensor([42.0]), secret)
    fifo = tmp_path / "reader-detector.fifo"
    os.mkfifo(fifo)  # opening it to read would block the worker: PING would then time out
    attempts = [
        ("save", [x, str(written)]),
        ("save.default", [x, str(written)]),
        ("aten::save", [x, str(written)]),
        ("load", [str(secret)]),
        ("from_file", [str(secret), False, 1]),
        ("from_file.default", [str(fifo), False, 1]),
        ("from_file.default", [str(secret)], {"shared": True, "size": 1}),
        ("_load", [str(fifo)]),
    ]
    for op, args, *kwargs in attempts:
        refused_by_allowlist(client, op, args, *kwargs)
    reply, _ = client.command("add.Tensor", [str(written), 1])  # a path where data should be
    assert reply.kind == Kind.ERROR
    assert not written.exists() and not list(tmp_path.glob("exfiltrated*"))
    with pytest.raises(OSError) as no_reader:
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert no_reader.value.errno == errno.ENXIO  # nobody has the fifo open for reading


# -- RNG state -------------------------------------------------------------------------------


def test_rng_state_ops_are_refused_and_the_stream_stays_unpredictable(client):
    ones = client.store(torch.ones(1000))
    torch.manual_seed(0)
    after_seed_0 = torch.rand(1000)
    torch.manual_seed(1234)
    chosen_state = torch.get_rng_state()
    after_chosen_state = torch.rand(1000)
    state = client.store(chosen_state)
    for op, args in [
        ("manual_seed", [0]),
        ("manual_seed.default", [0]),
        ("seed", []),
        ("seed.default", []),
        ("set_rng_state", [state]),
        ("_set_rng_state", [state]),
        ("get_rng_state", []),
        ("initial_seed", []),
    ]:
        refused_by_allowlist(client, op, args)
    draws = []
    for _ in range(2):
        reply, out = client.command("rand_like.default", [ones])
        assert reply.kind == Kind.META
        draws.append(client.fetch(out).body)
    # Had manual_seed(0) or set_rng_state(chosen) run, the worker would draw exactly these:
    assert not torch.equal(draws[0], after_seed_0)
    assert not torch.equal(draws[0], after_chosen_state)
    assert not torch.equal(draws[0], draws[1])


# -- reflection, builtins, malformed names ---------------------------------------------------

NAMES = [
    "__class__", "__init__.__globals__", "aten.__dict__", "__dict__", "__builtins__",
    "__import__", "__getattribute__", "__reduce__", "__call__", "eval", "exec", "getattr",
    "setattr", "compile", "open", "os.system", "subprocess.Popen", "aten::add.Tensor",
    "aten.add.Tensor", "torch.ops.aten.add.Tensor", "add.Tensor.__call__",
    "torch.ops.aten.add.Tensor.__call__", "add.Tensor.__globals__", "add", "add.", ".Tensor",
    "add..Tensor", "add.Tensor ", " add.Tensor", "ADD.TENSOR", "add.Tensor\x00",
    "../add.Tensor", "_ops", "ops", "", "prim::add", "_local_scalar_dense.default",
    "set_.source_Storage", "resize_.default", "copy_.float" + "\u0000", "item",
    5, None, 1.5, True, b"add.Tensor", ["add.Tensor"], {"op": "add.Tensor"},
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES, ids=[repr(n) for n in NAMES])
def test_reflection_and_builtin_names_are_refused(client, name):
    x = client.store(torch.ones(3))
    refused_by_allowlist(client, name, [x, x])


def test_allowed_op_with_smuggled_keyword_or_dunder_arguments_fails_cleanly(client):
    x = client.store(torch.ones(3))
    for kwargs in ({"__class__": 1}, {"__globals__": {"os": "system"}}, {"alpha": "os.system"}):
        reply, _ = client.command("add.Tensor", [x, x], kwargs)
        assert reply.kind == Kind.ERROR and reply.body["message"]
        client.assert_alive()


# -- out= ------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["add.out", "mul.out", "sum.IntList_out", "mm.out", "cat.out",
                                "add_out", "index_put.out", "copy.out", "clone.out"])
def test_out_overloads_are_refused(client, op):
    x, y = client.store(torch.ones(2, 2)), client.store(torch.zeros(2, 2))
    refused_by_allowlist(client, op, [x, x], {"out": y})
    assert torch.equal(client.fetch(y).body, torch.zeros(2, 2))


def test_out_keyword_on_an_allowed_op_writes_nothing(client):
    x, y = client.store(torch.ones(2, 2)), client.store(torch.zeros(2, 2))
    for op, args in [("add.Tensor", [x, x]), ("mul.Tensor", [x, 3]), ("sum.default", [x])]:
        reply, _ = client.command(op, args, {"out": y})
        assert reply.kind == Kind.ERROR and "argument" in reply.body["message"]
    assert torch.equal(client.fetch(y).body, torch.zeros(2, 2))
    client.assert_alive()


# -- callbacks and code on the wire ----------------------------------------------------------


class _Tripwire:
    """Unpickling this anywhere creates `path`: proof that a payload was deserialized."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_callbacks_and_pickles_are_never_run(client, tmp_path):
    tripwire = tmp_path / "unpickled"
    payload = pickle.dumps(_Tripwire(tripwire))
    x = client.store(torch.ones(3))
    # as an unknown msgpack extension (the decoder knows only tensors, dtypes, devices, ...)
    header = msgpack.packb([PROTOCOL_VERSION, Kind.COMMAND, 77,
                            [1, "add.Tensor", [x, msgpack.ExtType(42, payload)], {}, [], True]])
    client.sock.send_multipart([header])
    client.assert_error(decode(client.sock.recv_multipart()), "ProtocolError", "extension")
    # as plain bytes (a `bin` in a command is an object id, looked up, never unpickled)
    reply, _ = client.command("add.Tensor", [x, payload])
    client.assert_error(reply, "ObjectNotFoundError", "not in bob's store")
    # as a keyword argument that some APIs would call back
    for kwargs in ({"callback": payload}, {"hook": "builtins.exec"}):
        reply, _ = client.command("add.Tensor", [x, x], kwargs)
        assert reply.kind == Kind.ERROR
    # as a reduction name
    reply, _ = client.command("scatter_reduce.two", [x, 0, client.store(torch.tensor([0])), x,
                                                     "os.system"])
    assert reply.kind == Kind.ERROR
    client.assert_alive()
    assert not tripwire.exists()


# -- crashes ---------------------------------------------------------------------------------


def test_a_kernel_that_segfaults_is_refused_before_it_runs(client):
    x = client.store(torch.rand(2, 3))
    for op, args in [
        ("_native_batch_norm_legit.no_stats", [x, None, None, False, 0.1, 1e-5]),
        ("native_batch_norm.default", [x, None, None, None, None, False, 0.1, 1e-5]),
    ]:
        reply, _ = client.command(op, args)
        client.assert_error(reply, "AssertionError", "running_mean")
        client.assert_alive()


# -- huge allocations ------------------------------------------------------------------------


def test_huge_allocations_are_refused_and_memory_stays_flat(bob, client):
    before = memory(bob.pid)
    x, v = client.store(torch.ones(4, 4)), client.store(torch.ones(10**5))
    image = client.store(torch.ones(1, 1, 4, 4))
    reply, wide = client.command("expand.default", [v, [10**5, 10**5]])  # a view: allowed
    assert reply.kind == Kind.META and reply.body[1][0][1] == [0, 1]
    col, row = client.store(torch.ones(10**5, 1)), client.store(torch.ones(1, 10**5).bool())
    attacks = [
        ("new_full.default", [x, [10**6, 10**6], 1.0], {}),
        ("new_empty.default", [x, [10**12]], {"device": torch.device("cpu")}),
        ("new_empty_strided.default", [x, [2], [10**12]], {}),
        ("new_zeros.default", [x, [10**5, 10**5]], {}),
        ("full_like.default", [wide, 0.0], {}),
        ("rand_like.default", [wide], {}),
        ("normal.float_float", [0.0, 1.0, [10**6, 10**6]], {"device": torch.device("cpu")}),
        ("repeat.default", [x, [10**5, 10**5]], {}),
        ("tile.default", [x, [10**5, 10**5]], {}),
        ("outer.default", [v, v], {}),
        ("mm.default", [col, client.store(torch.ones(1, 10**5))], {}),
        ("clone.default", [wide], {}),
        ("reshape.default", [wide, [-1]], {}),
        ("cat.default", [[wide, wide]], {}),
        ("constant_pad_nd.default", [x, [10**6, 10**6, 10**6, 10**6]], {}),
        ("upsample_nearest2d.vec", [image, None, [1e5, 1e5]], {}),
        ("upsample_bilinear2d.vec", [image, None, False, [1e5, 1e5]], {}),
        ("diag_embed.default", [v], {}),
        ("as_strided_copy.default", [x, [10**6, 10**6], [0, 0]], {}),
        ("bincount.default", [client.store(torch.tensor([2**40]))], {}),
        ("masked_select.default", [col, row], {}),
    ]
    for op, args, kwargs in attacks:
        reply, _ = client.command(op, args, kwargs)
        client.assert_error(reply, "OpNotAllowedError", op, "would allocate", "ALLOC_BYTES=")
        client.assert_alive()
    after = memory(bob.pid)
    assert after["VmPeak"] - before["VmPeak"] < 1 << 30, (before, after)
    assert after["VmHWM"] - before["VmHWM"] < 256 << 20, (before, after)


@pytest.fixture(scope="module")
def capped(hook):
    """A worker whose cap is 64 MiB: an attack that got through would really allocate."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZSYFT_MAX_ALLOC_BYTES", str(64 << 20))
        worker = sy.VirtualWorker(hook, id="capped")
    yield worker
    sy.local_worker.workers.pop("capped", None)
    worker.close()


def test_a_capped_worker_refuses_sizes_it_could_have_run(capped):
    client = Client(capped)
    try:
        x = client.store(torch.ones(4, 4))
        client.assert_alive()
        before = memory(capped.pid)
        for op, args in [
            ("new_full.default", [x, [128, 1024, 1024], 1.0]),  # 512 MiB, filled
            ("repeat.default", [x, [2048, 16384]]),  # 512 MiB
        ]:
            reply, _ = client.command(op, args)
            client.assert_error(reply, "OpNotAllowedError", "would allocate", f"{64 << 20:,}")
        assert memory(capped.pid)["VmHWM"] - before["VmHWM"] < 128 << 20
        reply, out = client.command("new_full.default", [x, [1024, 1024], 1.0])  # 4 MiB: fine
        assert reply.kind == Kind.META and client.fetch(out).body.shape == (1024, 1024)
    finally:
        client.close()
