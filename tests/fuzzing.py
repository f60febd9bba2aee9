"""The input generator of `tests/integration/test_fuzz.py`: hostile messages that are invalid
by construction, each with the reply it must get (see that module's docstring)."""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import torch

from zsyft.errors import ProtocolError
from zsyft.runtime.allowlist import allowed_ops
from zsyft.runtime.handlers import HANDLERS
from zsyft.wire.codec import DTYPES, decode
from zsyft.wire.messages import PROTOCOL_VERSION, ZERO_COPY_THRESHOLD, Kind, Limits

SEED = int(os.environ.get("ZSYFT_FUZZ_SEED", "20240611"))
INPUTS = 100_000
BATCH = 400  # inputs in flight before the PING; well under ZeroMQ's 1000-message HWM
RECV_TIMEOUT_MS = 20_000
LIMITS = Limits()

ROUTED = frozenset(int(kind) for kind in HANDLERS)
NO_BODY_KINDS = (Kind.PING, Kind.LIST, Kind.SYNC)  # these ignore their body: never invalid
ALLOWED_OPS = frozenset(allowed_ops())
OP_NAMES = sorted(ALLOWED_OPS)
ITEMSIZE = [dtype.itemsize for dtype in DTYPES]
FLOAT32 = DTYPES.index(torch.float32)
EDGE_INTS = (0, 1, -1, 2, 15, 16, 17, 255, 256, 2**31 - 1, -(2**31), 2**32, 2**63 - 1,
             -(2**63), 2**64 - 1)  # fmt: skip
EDGE_FLOATS = (0.0, -0.0, 1.0, -1.5, float("nan"), float("inf"), float("-inf"), 1e308, 5e-324)
Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
TEXT_CHARS = "abcxyz_.:/ 0123456789\x00\t\n" + "é中𝄞\u202e\ufeff\uffff"
NEAR_MISS_OPS = (
    "save.default", "load.default", "manual_seed.default", "set_rng_state.default",
    "from_file.default", "add.out", "add_.out", "add", "aten::add.Tensor", "ADD.Tensor",
    "add.Tensor ", " add.Tensor", "add.Tensor\x00", "add..Tensor", "__import__", "os.system",
    "eval", "", ".", "add.Tensor.Tensor", "_local_scalar_dense.default", "item.default",
)  # fmt: skip


def is_id(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == 16


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def array_prefix(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def raw_ext(code: int, data: bytes) -> bytes:
    """An extension value with any code (msgpack.ExtType refuses negative ones)."""
    return b"\xc7" + bytes([len(data)]) + struct.pack("b", code) + data


@dataclass
class Case:
    """One hostile input and what the worker must answer."""

    index: int
    label: str
    frames: list[bytes]
    # the request id of the ERROR reply: 0 when the header cannot be decoded; when only a
    # value in it cannot (a bad tensor or device), the id the header carries
    rid: int
    answered: bool = True  # False: the worker must not reply at all

    def show(self) -> str:
        header = self.frames[0]
        shown = header[:300].hex() + ("..." if len(header) > 300 else "")
        sizes = [len(f) for f in self.frames[1:9]]
        more = f" (+{len(self.frames) - 9} more)" if len(self.frames) > 9 else ""
        return (
            f"input #{self.index} [{self.label}] header={shown} ({len(header)} bytes), "
            f"buffer frames {sizes}{more}"
        )


class Fuzzer:
    """Generates `Case`s from one seed; tracks the failed-result markers it causes."""

    def __init__(self, seed: int, client_key: str) -> None:
        self.rng = random.Random(seed)
        self.client_key = client_key
        self.count = 0
        self.next_rid = 1
        self.failed: list[bytes] = []  # failed-result markers the worker holds for us
        self.buffers: list[bytes] = []
        self.skipped = 0  # oracle-decided inputs whose outcome was not certain
        self.silent = 0  # inputs that must get no reply (see `failed_input`)
        decodable = {
            "command": (12, self.command), "store": (4, self.store), "fetch": (4, self.fetch),
            "delete": (3, self.delete), "store_pointer": (4, self.store_pointer),
            "remote_get": (3, self.remote_get), "remote_send": (3, self.remote_send),
            "provider_setup": (4, self.provider_setup), "mpc_seed": (4, self.mpc_seed),
            "deal": (3, self.deal), "mpc_run": (4, self.mpc_run), "mpc_msg": (4, self.mpc_msg),
            "material": (3, self.material), "unknown_kind": (4, self.unknown_kind),
            "failed_input": (2, self.failed_input),
            "borrowed_identity": (4, self.borrowed_identity),
        }  # fmt: skip
        undecodable = {
            "bad_version": (3, self.bad_version), "bad_field_type": (3, self.bad_field_type),
            "bad_header_shape": (3, self.bad_header_shape),
            "bad_on_behalf": (2, self.bad_on_behalf), "truncated": (4, self.truncated),
            "trailing_bytes": (2, self.trailing_bytes), "poison": (6, self.poison_case),
            "bad_tensor": (6, self.bad_tensor_case), "missing_buffer": (2, self.missing_buffer),
            "too_deep": (2, self.too_deep), "too_many_frames": (0.02, self.too_many_frames),
            "oversized_header": (0.02, self.oversized_header),
            "large_buffer": (0.5, self.large_buffer),
        }  # fmt: skip
        oracle = {"mutated": (7, self.mutated), "random_frames": (2, self.random_frames)}
        table = {**decodable, **undecodable, **oracle}
        self.labels = list(table)
        self.makers = [table[label][1] for label in self.labels]
        self.weights = [table[label][0] for label in self.labels]

    # -- cases ------------------------------------------------------------------------------
    def case(self) -> Case:
        """The next input (oracle-decided makers may decline and are asked again)."""
        while True:
            (i,) = self.rng.choices(range(len(self.makers)), weights=self.weights)
            self.buffers = []
            made = self.makers[i]()
            if made is not None:
                break
            self.skipped += 1
        frames, rid, *answered = made
        case = Case(self.count, self.labels[i], frames, rid, *answered)
        self.count += 1
        self.silent += not case.answered
        self.check_against_decoder(case)
        return case

    def check_against_decoder(self, case: Case) -> None:
        """The local decoder must agree with how the input was built."""
        try:
            msg = decode(case.frames)
        except ProtocolError as exc:
            assert case.rid == 0, f"seed={SEED}: built as decodable, does not decode: {case.show()}"
            case.rid = getattr(exc, "rid", 0)  # the worker answers the request it could read
            return
        except Exception as exc:
            raise AssertionError(
                f"seed={SEED}: decode raised {type(exc).__name__}: {exc} for {case.show()}"
            ) from exc
        assert case.rid != 0 and msg.rid == case.rid, (
            f"seed={SEED}: built as {'undecodable' if case.rid == 0 else 'decodable'}, "
            f"decodes to {msg.kind=} {msg.rid=}: {case.show()}"
        )

    def rid(self) -> int:
        """A fresh nonzero request id, sometimes negative or near the 64-bit edges."""
        n = self.next_rid
        self.next_rid += 1
        return self.rng.choice((n, n, n, -n, 2**63 + n, 2**64 - n, -(2**63) + n))

    def message(
        self, kind: int, body: Any, add: set[bytes] | None = None, remove: set[bytes] | None = None
    ) -> tuple:
        """A decodable message (sometimes with a harmless on-behalf field: None or our key);
        `add` and `remove` are the failed-result markers it creates and consumes."""
        rid = self.rid()
        fields = [PROTOCOL_VERSION, kind, rid, body]
        roll = self.rng.random()
        if roll < 0.1:
            fields.append(None)
        elif roll < 0.2:
            fields.append(self.client_key)
        self.failed.extend(add or ())
        for object_id in remove or ():
            self.failed.remove(object_id)
        return [pack(fields), *self.buffers], rid

    def undecodable(self, header: bytes, extra: list[bytes] | None = None) -> tuple:
        return [header, *self.buffers, *(extra or [])], 0

    # -- values -----------------------------------------------------------------------------
    def text(self, short: bool = False) -> str:
        rng = self.rng
        n = rng.randrange(6 if short else 24)
        return "".join(rng.choice(TEXT_CHARS) for _ in range(n))

    def fresh_id(self) -> bytes:
        return self.rng.randbytes(16)

    def fake_key(self) -> str:
        """A string of the form of a public key (40 Z85 characters), not ours."""
        key = "".join(self.rng.choice(Z85) for _ in range(40))
        return key if key != self.client_key else "0" * 40

    def tensor(self, dtype: int | None = None) -> msgpack.ExtType:
        """A valid tensor value; its bytes become the next buffer frame."""
        rng = self.rng
        code = rng.randrange(len(DTYPES)) if dtype is None else dtype
        shape = [rng.randrange(4) for _ in range(rng.randrange(4))]
        numel = 1
        for n in shape:
            numel *= n
        self.buffers.append(rng.randbytes(numel * ITEMSIZE[code]))
        return msgpack.ExtType(1, pack([len(self.buffers), code, shape]))

    def plain_ext(self) -> Any:
        rng = self.rng
        return rng.choice((
            lambda: msgpack.ExtType(3, bytes([rng.randrange(len(DTYPES))])),
            lambda: msgpack.ExtType(4, b"cpu"),
            lambda: msgpack.ExtType(5, bytes([rng.randrange(2)])),
            lambda: msgpack.ExtType(6, bytes([rng.randrange(4)])),
            lambda: msgpack.ExtType(7, struct.pack("<dd", rng.random(), -rng.random())),
            lambda: msgpack.Timestamp(rng.randrange(2**32), 0),
        ))()  # fmt: skip

    def scalar(self) -> Any:
        rng = self.rng
        pick = rng.randrange(8)
        if pick == 0:
            return None
        if pick == 1:
            return rng.random() < 0.5
        if pick == 2:
            return rng.choice(EDGE_INTS)
        if pick == 3:
            return rng.randint(-1000, 1000)
        if pick == 4:
            return rng.choice(EDGE_FLOATS) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6)
        if pick == 5:
            return self.text()
        if pick == 6:
            return rng.randbytes(rng.choice((0, 1, 8, 15, 16, 17, 32, rng.randrange(64))))
        return self.fresh_id()

    def junk(self, depth: int = 0) -> Any:
        """Any decodable value: scalars, ids, extension values, tensors, lists, maps."""
        rng = self.rng
        pick = rng.randrange(12 if depth < 3 else 9)
        if pick < 6:
            return self.scalar()
        if pick == 6:
            return self.plain_ext()
        if pick in (7, 8):
            return self.tensor() if rng.random() < 0.5 else self.scalar()
        if pick in (9, 10):
            return [self.junk(depth + 1) for _ in range(rng.randrange(5))]
        return {self.scalar(): self.junk(depth + 1) for _ in range(rng.randrange(4))}

    def junk_where(self, ok) -> Any:
        while True:
            value = self.junk()
            if ok(value):
                return value

    def not_list(self) -> Any:
        return self.junk_where(lambda v: not isinstance(v, list))

    def not_dict(self) -> Any:
        return self.junk_where(lambda v: not isinstance(v, dict))

    def not_tensor(self) -> Any:
        return self.junk_where(lambda v: not (isinstance(v, msgpack.ExtType) and v.code == 1))

    def not_str(self) -> Any:
        return self.junk_where(lambda v: not isinstance(v, str))

    def not_int(self) -> Any:
        return self.junk_where(lambda v: not isinstance(v, int))  # bools are ints too

    def not_id(self) -> Any:
        rng = self.rng
        if rng.random() < 0.5:
            size = rng.choice((0, 1, 8, 15, 17, 24, 32))
            return rng.choice((rng.randbytes(size), "x" * 16, [self.fresh_id()]))
        return self.junk_where(lambda v: not is_id(v))

    def wrong_length(self, n: int) -> list:
        size = self.rng.choice([k for k in range(9) if k != n])
        return [self.junk() for _ in range(size)]

    def bad_key(self) -> Any:
        """Not a public key: not None and not a 40-character Z85 string."""
        if self.rng.random() < 0.5:
            size = self.rng.choice((0, 39, 41))
            return "".join(self.rng.choice(Z85) for _ in range(size))
        return self.junk_where(lambda v: v is not None and not isinstance(v, str))

    def worker_desc(self) -> dict:
        """A well-formed worker description (never contacted: no valid message uses it)."""
        key = None if self.rng.random() < 0.5 else self.fake_key()
        return {"name": self.text(short=True), "address": "ipc:///nonexistent/zsyft-fuzz.sock",
                "key": key}  # fmt: skip

    def bad_worker_desc(self) -> Any:
        rng = self.rng
        desc = self.worker_desc()
        defect = rng.randrange(6)
        if defect == 0:
            return self.not_dict()
        if defect == 1:
            del desc[rng.choice(("name", "address"))]
        elif defect == 2:
            desc["name"] = self.not_str()
        elif defect == 3:
            desc["address"] = self.not_str()
        else:
            desc["key"] = self.bad_key()
        return desc

    def bad_parties(self) -> Any:
        rng = self.rng
        roll = rng.randrange(3)
        if roll == 0:
            return self.not_list()
        if roll == 1:
            return [self.worker_desc() for _ in range(rng.randrange(2))]
        parties = [self.worker_desc() for _ in range(rng.randrange(2, 5))]
        parties[rng.randrange(len(parties))] = self.bad_worker_desc()
        return parties

    def bad_pointer_desc(self) -> Any:
        """A pointer descriptor refused before the worker connects anywhere."""
        rng = self.rng
        desc = {
            "pointer": 1, "owner": "me", "id": rng.randrange(2**63), "location": "alice",
            "address": "ipc:///nonexistent/zsyft-fuzz.sock", "key": None,
            "id_at_location": self.fresh_id(), "shape": [2], "stride": [1],
            "dtype": msgpack.ExtType(3, bytes([FLOAT32])),
        }  # fmt: skip
        defect = rng.randrange(7)
        if defect == 0:
            desc = {self.text(): self.junk() for _ in range(rng.randrange(4))}
            desc.pop("location", None)
        elif defect == 1:
            del desc[rng.choice(("location", "address"))]
        elif defect == 2:
            desc["location"] = self.not_str()
        elif defect == 3:
            desc["address"] = self.not_str()
        elif defect == 4:
            desc["address"] = rng.choice(
                ("", "http://x", "ipc:/x", "TCP://1.2.3.4:5", "file:///etc")
            )
        elif defect == 5:
            desc["key"] = self.bad_key()
        else:
            desc["address"], desc["key"] = "tcp://127.0.0.1:9", None  # tcp needs a key
        return desc

    # -- decodable, invalid for their kind ----------------------------------------------------
    def result_ids(self) -> tuple[Any, set[bytes]]:
        """Result ids for a failing command, and the ones it will mark as failed."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            ids: Any = []
        elif roll < 0.85:
            ids = [rng.choice((None, self.not_id())) for _ in range(rng.randrange(1, 4))]
        elif roll < 0.95:
            ids = [self.fresh_id() for _ in range(rng.randrange(1, 3))]
        else:
            ids = self.not_list()
        marked = {v for v in ids if is_id(v)} if isinstance(ids, list) else set()
        return ids, marked

    def bad_op(self) -> Any:
        rng = self.rng
        roll = rng.randrange(4)
        if roll == 0:
            return self.not_str()
        if roll == 1:
            name = self.text()
        elif roll == 2:
            name = rng.choice(NEAR_MISS_OPS)
        else:
            name = rng.choice(OP_NAMES) + rng.choice((".out", "x", ".", "\x00", ".default"))
        return name if name not in ALLOWED_OPS else "not-an-op"

    def command(self) -> tuple:
        rng = self.rng
        variant = rng.randrange(6)
        if variant == 0:
            return self.message(Kind.COMMAND, self.not_list())
        if variant == 1:
            return self.message(Kind.COMMAND, self.wrong_length(6))
        seq, want_meta = self.junk(), self.junk()
        ids, marked = self.result_ids()
        if variant == 2:
            body = [seq, self.bad_op(), self.junk(), self.junk(), ids, want_meta]
            return self.message(Kind.COMMAND, body, marked)
        op = rng.choice(OP_NAMES)
        args = [self.junk() for _ in range(rng.randrange(4))]
        kwargs = {self.text(short=True): self.junk() for _ in range(rng.randrange(3))}
        if variant == 3:  # allowlisted op, one broken part
            defect = rng.randrange(4)
            if defect == 0:
                args = self.not_list()
            elif defect == 1:
                kwargs = self.not_dict()
            elif defect == 2:
                kwargs[self.junk_where(lambda v: not isinstance(v, str | list | dict))] = 0
            else:
                ids, marked = self.not_list(), set()
        else:  # allowlisted op whose arguments name an object that does not exist
            missing: Any = self.fresh_id()
            for _ in range(rng.randrange(3)):
                missing = [missing] if rng.random() < 0.5 else {self.text(): missing}
            if rng.random() < 0.7:
                args.insert(rng.randrange(len(args) + 1), missing)
            else:
                kwargs[self.text(short=True) + "!"] = missing
        return self.message(Kind.COMMAND, [seq, op, args, kwargs, ids, want_meta], marked)

    def store(self) -> tuple:
        variant = self.rng.randrange(5)
        if variant == 0:
            body = self.not_list()
        elif variant == 1:
            body = self.wrong_length(2)
        elif variant == 2:
            body = [self.junk(), self.not_tensor()]
        elif variant == 3 or not self.failed:
            body = [self.not_id(), self.tensor()]
        else:  # the id is in use (a failed-result marker)
            body = [self.rng.choice(self.failed), self.tensor()]
        return self.message(Kind.STORE, body)

    def fetch(self) -> tuple:
        variant = self.rng.randrange(5)
        if variant == 0:
            return self.message(Kind.FETCH, self.not_list())
        if variant == 1:
            return self.message(Kind.FETCH, self.wrong_length(2))
        if variant == 2:
            return self.message(Kind.FETCH, [self.not_id(), self.junk()])
        if variant == 3 or not self.failed:
            return self.message(Kind.FETCH, [self.fresh_id(), self.junk()])
        # fetching a failed result answers its error and consumes the marker
        marker = self.rng.choice(self.failed)
        mode = self.rng.choice((True, False, 0, 1, 2))  # FetchMode: copy, take, hand over
        return self.message(Kind.FETCH, [marker, mode], remove={marker})

    def delete(self) -> tuple:
        if self.rng.random() < 0.3:
            return self.message(Kind.DELETE, self.not_list())
        ids: list[Any] = [self.fresh_id() for _ in range(self.rng.randrange(4))]
        ids.insert(self.rng.randrange(len(ids) + 1), self.not_id())
        return self.message(Kind.DELETE, ids)

    def store_pointer(self) -> tuple:
        variant = self.rng.randrange(5)
        if variant == 0:
            body = self.not_list()
        elif variant == 1:
            body = self.wrong_length(2)
        elif variant == 2:
            body = [self.junk(), self.not_dict()]
        elif variant == 3:
            body = [self.not_id(), self.bad_pointer_desc()]
        else:
            body = [self.fresh_id(), self.bad_pointer_desc()]
        return self.message(Kind.STORE_POINTER, body)

    def remote_get(self) -> tuple:
        variant = self.rng.randrange(5)
        if variant == 0:
            body = self.not_list()
        elif variant == 1:
            body = self.wrong_length(1)
        elif variant == 2:
            body = [self.not_id()]
        elif variant == 3 or not self.failed:
            body = [self.fresh_id()]
        else:  # a failed marker is data, not a pointer: refused, and kept
            body = [self.rng.choice(self.failed)]
        return self.message(Kind.REMOTE_GET, body)

    def remote_send(self) -> tuple:
        variant = self.rng.randrange(4)
        if variant == 0:
            body = self.not_list()
        elif variant == 1:
            body = self.wrong_length(3)
        elif variant == 2:
            body = [self.junk(), self.not_dict(), self.junk()]
        else:
            first = self.not_id() if self.rng.random() < 0.5 else self.fresh_id()
            body = [first, self.worker_desc(), self.fresh_id()]
        return self.message(Kind.REMOTE_SEND, body)

    def provider_setup(self) -> tuple:
        variant = self.rng.randrange(4)
        if variant == 0:
            body = self.not_list()
        elif variant == 1:
            body = self.wrong_length(2)
        elif variant == 2:
            body = [self.not_id(), [self.worker_desc(), self.worker_desc()]]
        else:
            body = [self.fresh_id(), self.bad_parties()]
        return self.message(Kind.PROVIDER_SETUP, body)

    def mpc_seed(self) -> tuple:
        rng = self.rng
        variant = rng.randrange(8)
        if variant == 0:
            return self.message(Kind.MPC_SEED, self.not_list())
        if variant == 1:
            return self.message(Kind.MPC_SEED, self.wrong_length(6))
        parties = [self.worker_desc() for _ in range(rng.randrange(2, 4))]
        body = [self.fresh_id(), rng.randrange(len(parties)), parties, rng.randbytes(32),
                self.worker_desc(), rng.choice(("shake128", "shake128+aes128ctr"))]  # fmt: skip
        if variant == 7:
            body[5] = rng.choice(("rot13", "", None, 128, ["shake128"]))
        elif variant == 2:
            body[3] = self.junk_where(lambda v: not isinstance(v, bytes))
        elif variant == 3:
            body[0] = self.not_id()
        elif variant == 4:
            body[2] = self.bad_parties()
        elif variant == 5:
            body[4] = self.bad_worker_desc()
        else:
            body[1] = rng.choice((-1, len(parties), 2**40, -(2**63), None, "0", 0.0, [0]))
        return self.message(Kind.MPC_SEED, body)

    def id_list(self) -> list:
        """A list where op ids (dealt ahead) belong: too long, empty, or with a bad entry."""
        ids = [self.fresh_id() for _ in range(self.rng.choice((0, 2, 65)))]
        if ids and self.rng.random() < 0.5:
            ids[self.rng.randrange(len(ids))] = self.not_id()
        return ids

    def deal(self) -> tuple:
        variant = self.rng.randrange(6)
        if variant == 0:
            body = self.not_list()
        elif variant == 1:
            body = self.wrong_length(4)
        elif variant == 2:
            body = [self.not_id(), self.fresh_id(), self.junk(), self.junk()]
        elif variant == 3:
            body = [self.fresh_id(), self.not_id(), self.junk(), self.junk()]
        elif variant == 4:
            body = [self.fresh_id(), self.id_list(), self.junk(), self.junk()]
        else:  # well-formed, but no provider session exists
            name = self.rng.choice(("mul", "matmul", "truncate", "lt", self.text()))
            body = [self.fresh_id(), self.fresh_id(), name, {"shape": [2]}]
        return self.message(Kind.DEAL, body)

    def mpc_run(self) -> tuple:
        rng = self.rng
        variant = rng.randrange(4)
        if variant == 0:
            return self.message(Kind.MPC_RUN, self.not_list())
        if variant == 1:
            return self.message(Kind.MPC_RUN, self.wrong_length(7))
        output = self.fresh_id() if rng.random() < 0.3 else self.junk()
        session = self.not_id() if variant == 2 else self.fresh_id()  # else: unknown session
        body = [
            self.junk(),
            session,
            self.fresh_id(),
            rng.choice(("mul", "truncate", self.junk())),
            [self.fresh_id() for _ in range(rng.randrange(3))],
            output,
            self.junk(),
        ]
        marked = output if isinstance(output, list) else [output]  # one id, or a list of them
        return self.message(Kind.MPC_RUN, body, {o for o in marked if is_id(o)})

    def mpc_msg(self) -> tuple:
        rng = self.rng
        variant = rng.randrange(6)
        if variant == 0:
            return self.message(Kind.MPC_MSG, self.not_list())
        if variant == 1:
            return self.message(Kind.MPC_MSG, self.wrong_length(5))
        body = [self.fresh_id(), self.fresh_id(), rng.randrange(3), rng.randrange(3), self.tensor()]
        if variant == 2:
            body[rng.choice((2, 3))] = self.not_int()
        elif variant in (3, 4):
            body[variant - 3] = self.not_id()
        else:
            body[4] = self.not_tensor()
        return self.message(Kind.MPC_MSG, body)

    def material(self) -> tuple:
        variant = self.rng.randrange(6)
        if variant == 5:
            ids = self.id_list()
            tensors = [self.tensor() for _ in ids[: self.rng.randrange(len(ids) + 1)]]
            return self.message(Kind.MATERIAL, [self.fresh_id(), ids, tensors])
        if variant == 0:
            body = self.not_list()
        elif variant == 1:
            body = self.wrong_length(3)
        elif variant == 2:
            body = [self.not_id(), self.fresh_id(), self.tensor()]
        elif variant == 3:
            body = [self.fresh_id(), self.not_id(), self.tensor()]
        else:
            body = [self.fresh_id(), self.fresh_id(), self.not_tensor()]
        return self.message(Kind.MATERIAL, body)

    def failed_input(self) -> tuple | None:
        """A command on the result of a failed command fails with that earlier error (and
        marks its own results): a pipelined one (want_meta false) answers nothing, since the
        first failure was already reported; one that wants metadata answers the ERROR."""
        if not self.failed:
            return None
        rng = self.rng
        args = [rng.choice(self.failed), *(rng.choice((1, 2.5, None, True)) for _ in range(2))]
        ids = [self.fresh_id() for _ in range(rng.randrange(3))]
        want_meta = rng.choice((True, False, 0, 1, None, "", "x", [], [0], {}))
        op = rng.choice(OP_NAMES)
        made = self.message(Kind.COMMAND, [rng.randrange(1000), op, args, {}, ids, want_meta],
                            set(ids))  # fmt: skip
        return (*made, bool(want_meta))

    def unknown_kind(self) -> tuple:
        rng = self.rng
        while True:
            kind = rng.choice((
                0, rng.randrange(17, 64), rng.randrange(64, 69), rng.randrange(69, 1 << 16),
                -rng.randrange(1, 1000), 2**31, 2**63 - 1, 2**64 - 1, -(2**63),
            ))  # fmt: skip
            if kind not in ROUTED:
                return self.message(kind, self.junk())

    def valid(self) -> tuple[int, Any]:
        """A message that would run (and change the store) if it were accepted."""
        rng = self.rng
        pick = rng.randrange(7)
        if pick == 0:
            return rng.choice(NO_BODY_KINDS), None
        if pick in (1, 2):
            return Kind.STORE, [self.fresh_id(), self.tensor()]
        if pick == 3:
            return Kind.DELETE, [self.fresh_id() for _ in range(rng.randrange(1, 4))]
        if pick == 4:
            return Kind.FETCH, [self.fresh_id(), rng.random() < 0.5]
        op = rng.choice(("neg.default", "add.Tensor", "mul.Tensor", "clone.default"))
        args = [self.tensor(FLOAT32) for _ in range(1 if op in ("neg.default", "clone.default")
                                                    else 2)]  # fmt: skip
        return Kind.COMMAND, [rng.randrange(1000), op, args, {}, [self.fresh_id()], pick == 6]

    def borrowed_identity(self) -> tuple:
        """A valid message claiming to act for another client: refused, never run."""
        kind, body = self.valid()
        claim = self.fake_key() if self.rng.random() < 0.5 else self.text()
        if claim == self.client_key:
            claim += "!"
        rid = self.rid()
        return [pack([PROTOCOL_VERSION, kind, rid, body, claim]), *self.buffers], rid

    # -- undecodable ----------------------------------------------------------------------------
    def base_fields(self) -> list[Any]:
        """[version, kind, rid, body] of a message that would otherwise be valid or at least
        decodable; the breakers below make it undecodable."""
        if self.rng.random() < 0.5:
            kind, body = self.valid()
        else:
            kind, body = self.rng.choice((*sorted(ROUTED), 0, 99)), self.junk()
        return [PROTOCOL_VERSION, kind, self.rid(), body]

    def bad_version(self) -> tuple:
        fields = self.base_fields()
        v = PROTOCOL_VERSION
        fields[0] = self.rng.choice((0, v + 1, v + 2, -1, 255, 2**32, 2**64 - 1, str(v),
                                     bytes([v]), None, [v], v + 0.5, {}, False))  # fmt: skip
        return self.undecodable(pack(fields))

    def bad_field_type(self) -> tuple:
        fields = self.base_fields()
        if self.rng.random() < 0.5:
            fields[1] = self.rng.choice((True, False, "1", 1.5, None, [2], b"\x02", {}))
        else:
            fields[2] = self.rng.choice(("1", 1.5, None, [], b"", {}, float("nan")))
        return self.undecodable(pack(fields))

    def bad_header_shape(self) -> tuple:
        fields = self.base_fields()
        if self.rng.random() < 0.3:
            return self.undecodable(pack(self.not_list()))
        size = self.rng.choice((0, 1, 2, 3, 6, 7, 8))
        fields = [*fields, None, self.junk(), self.junk(), self.junk()][:size]
        return self.undecodable(pack(fields))

    def bad_on_behalf(self) -> tuple:
        fields = self.base_fields()
        fields.append(self.junk_where(lambda v: v is not None and not isinstance(v, str)))
        return self.undecodable(pack(fields))

    def truncated(self) -> tuple:
        header = pack(self.base_fields())
        return self.undecodable(header[: self.rng.randrange(len(header))])

    def trailing_bytes(self) -> tuple:
        header = pack(self.base_fields())
        return self.undecodable(header + self.rng.randbytes(self.rng.randrange(1, 9)))

    def poison(self) -> bytes:
        """Raw msgpack that cannot be decoded wherever it appears."""
        rng = self.rng
        pick = rng.randrange(11)
        if pick == 0:  # invalid UTF-8 in a str
            bad = rng.choice((b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xff", b"\xc0\xaf",
                              b"\xf8\x88\x80\x80\x80", b"\xe2\x82"))  # fmt: skip
            data = rng.randbytes(rng.randrange(4)).translate(bytes(range(128)) * 2) + bad
            return bytes([0xA0 | len(data)]) + data
        if pick == 1:
            return b"\xc1"  # never used in msgpack
        if pick == 2:  # containers over max_container_len
            return rng.choice((b"\xdd", b"\xdf")) + rng.randrange(
                LIMITS.max_container_len + 1, 2**32
            ).to_bytes(4, "big")
        if pick == 3:  # str over max_str_len
            return b"\xdb" + rng.randrange(LIMITS.max_str_len + 1, 2**32).to_bytes(4, "big")
        if pick == 4:  # bin over max_header_bytes
            return b"\xc6" + rng.randrange(LIMITS.max_header_bytes + 1, 2**32).to_bytes(4, "big")
        if pick == 5:  # ext over 1024 bytes
            return b"\xc9" + rng.randrange(1025, 2**32).to_bytes(4, "big") + b"\x01"
        if pick == 6:  # timestamps of a wrong size, or with nanoseconds >= 1e9
            if rng.random() < 0.5:
                size = rng.choice((0, 1, 2, 3, 5, 7, 9, 11, 13, 16))
                return raw_ext(-1, rng.randbytes(size))
            nanos = rng.randrange(10**9, 2**30)
            return raw_ext(-1, (nanos << 34 | rng.randrange(2**34)).to_bytes(8, "big"))
        if pick == 7:  # unknown extension codes
            code = rng.choice((0, 2, rng.randrange(8, 128), -rng.randrange(2, 129)))
            return raw_ext(code, rng.randbytes(rng.randrange(9)))
        if pick == 8:  # a map key that is a list or map
            return b"\x81" + rng.choice((b"\x90", b"\x91\x01", b"\x80")) + pack(self.scalar())
        if pick == 9:  # known extensions with bad content
            return rng.choice((
                lambda: raw_ext(3, rng.choice((b"", bytes([rng.randrange(len(DTYPES), 256)])))),
                lambda: raw_ext(5, rng.choice((b"", bytes([rng.randrange(2, 256)])))),
                lambda: raw_ext(6, rng.choice((b"", bytes([rng.randrange(4, 256)])))),
                lambda: raw_ext(7, rng.randbytes(rng.choice((0, 8, 15, 17, 24)))),
                lambda: raw_ext(4, rng.choice((b"cuda", b"cuda:0", b"mps", b"meta", b"CPU",
                                               b"cpu\x00", b"", b"\xff\xfe", b"cpu:0"))),
            ))()  # fmt: skip
        return raw_ext(1, self.bad_tensor_descriptor())

    def bad_tensor_descriptor(self) -> bytes:
        """The payload of a tensor extension value that must be refused."""
        rng = self.rng
        code = rng.randrange(len(DTYPES))
        shape = [rng.randrange(1, 4) for _ in range(rng.randrange(4))]
        numel = 1
        for n in shape:
            numel *= n
        nbytes = numel * ITEMSIZE[code]
        defect = rng.randrange(10)
        size = nbytes
        if defect == 8:  # the frame will have the wrong size
            size = nbytes + rng.choice((-1, 1, 2, 7)) if nbytes else rng.randrange(1, 9)
        self.buffers.append(rng.randbytes(size))
        index = len(self.buffers)
        if defect == 0:
            good = pack([index, code, shape])
            return rng.choice((b"", b"\xc1", good[:-1], good + b"\x00"))
        if defect == 1:
            return pack(rng.choice(([index, code], [index, code, shape, 0], index, None, [])))
        if defect == 2:
            return pack([index, code, rng.choice((0, None, True, "", 2.0))])
        if defect == 3:  # no such buffer frame (more than the frame limit, or below 1)
            index = rng.choice((0, -1, LIMITS.max_frames + 1, 2**40, None, 1.0, ""))
            return pack([index, code, shape])
        if defect == 4:
            return pack([index, rng.choice((len(DTYPES), 127, 2**20, -1, None, 1.0)), shape])
        if defect == 5:
            bad_shape: list[Any] = list(shape)
            bad_dim = rng.choice((-1, -(2**40), 1.0, None, [1], ""))
            bad_shape.insert(rng.randrange(len(shape) + 1), bad_dim)
            return pack([index, code, bad_shape])
        if defect == 6:  # rank over the descriptor's array limit
            return pack([index, code, [1] * rng.randrange(65, 100)])
        if defect == 7:  # more elements than max_tensor_numel
            return pack([index, code, rng.choice(([2**16, 2**16 + 1], [2**33], [2**20] * 3))])
        if defect == 8:  # the frame has the wrong size
            return pack([index, code, shape])
        return pack({"index": index})

    def poison_case(self) -> tuple:
        rng = self.rng
        fields = self.base_fields()
        items = [pack(self.junk()) for _ in range(rng.randrange(4))]
        items.insert(rng.randrange(len(items) + 1), self.poison())
        body = array_prefix(len(items)) + b"".join(items)
        for _ in range(rng.randrange(3)):
            body = rng.choice((b"\x91", b"\x81" + pack(self.scalar()))) + body
        head = array_prefix(4) + b"".join(pack(f) for f in fields[:3])
        return self.undecodable(head + body)

    def bad_tensor_case(self) -> tuple:
        fields = self.base_fields()
        bad = msgpack.ExtType(1, self.bad_tensor_descriptor())
        fields[3] = [*([fields[3]] if self.rng.random() < 0.5 else []), bad]
        return self.undecodable(pack(fields))

    def missing_buffer(self) -> tuple:
        fields = self.base_fields()
        fields[3] = [fields[3], self.tensor()]  # refers to the last buffer frame
        header = pack(fields)
        self.buffers.pop()
        return self.undecodable(header)

    def too_deep(self) -> tuple:
        rng = self.rng
        fields = self.base_fields()
        depth = rng.randrange(LIMITS.max_depth + 1, 4 * LIMITS.max_depth)
        body = pack(self.scalar())
        for _ in range(depth):
            body = (b"\x91" if rng.random() < 0.7 else b"\x81" + pack(self.text(short=True))) + body
        head = array_prefix(4) + b"".join(pack(f) for f in fields[:3])
        return self.undecodable(head + body)

    def too_many_frames(self) -> tuple:
        extra = LIMITS.max_frames - len(self.buffers) + self.rng.randrange(5)
        return self.undecodable(pack(self.base_fields()), [b""] * extra)

    def oversized_header(self) -> tuple:
        fields = self.base_fields()
        fields[3] = [fields[3], b"\0" * LIMITS.max_header_bytes]
        return self.undecodable(pack(fields))

    def large_buffer(self) -> tuple:
        """A tensor frame big enough to take the worker's zero-copy path (a zmq.Frame, not
        bytes): either its size is wrong (undecodable), or it is fine inside a message that
        is invalid for its kind."""
        rng = self.rng
        code = rng.randrange(len(DTYPES))
        numel = ZERO_COPY_THRESHOLD // ITEMSIZE[code] + rng.randrange(64)
        nbytes = numel * ITEMSIZE[code]
        if rng.random() < 0.5:
            fields = self.base_fields()
            self.buffers.append(rng.randbytes(nbytes + rng.choice((-1, 1, ITEMSIZE[code]))))
            fields[3] = [fields[3], msgpack.ExtType(1, pack([len(self.buffers), code, [numel]]))]
            return self.undecodable(pack(fields))
        self.buffers.append(rng.randbytes(nbytes))
        big = msgpack.ExtType(1, pack([len(self.buffers), code, [numel]]))
        kind, body = rng.choice((
            (Kind.STORE, [self.not_id(), big]),
            (Kind.MPC_MSG, [self.not_id(), self.fresh_id(), 0, 1, big]),
            (Kind.MATERIAL, [self.fresh_id(), self.not_id(), big]),
            (Kind.COMMAND, [1, self.bad_op(), [big], {}, [], True]),
            (Kind.COMMAND, [1, "add.Tensor", [big, self.fresh_id()], {}, [], False]),
            (99, big),
        ))  # fmt: skip
        return self.message(kind, body)

    # -- decided by the local decoder ---------------------------------------------------------
    def certain(self, frames: list[bytes]) -> tuple | None:
        """The case for frames whose outcome is certain, or None."""
        try:
            msg = decode(frames)
        except ProtocolError:
            return frames, 0
        if msg.rid == 0 or isinstance(msg.rid, bool):
            return None
        if msg.kind not in ROUTED or msg.on_behalf not in (None, self.client_key):
            return frames, msg.rid
        return None

    def mutated(self) -> tuple | None:
        rng = self.rng
        kind, body = self.valid()
        header = bytearray(pack([PROTOCOL_VERSION, kind, self.rid(), body]))
        for _ in range(rng.randrange(1, 5)):
            if not header:
                break
            op, at = rng.randrange(6), rng.randrange(len(header))
            if op == 0:
                header[at] ^= 1 << rng.randrange(8)
            elif op == 1:
                header[at] = rng.randrange(256)
            elif op == 2:
                header[at:at] = rng.randbytes(rng.randrange(1, 4))
            elif op == 3 and len(header) > 1:
                del header[at : at + rng.randrange(1, 4)]
            elif op == 4:
                header[at:at] = header[at : at + rng.randrange(1, 8)]
            else:
                header[at] = rng.choice((0xC0, 0xC1, 0xC2, 0xDD, 0xDF, 0xD4, 0x7F, 0xFF, 0x90))
        frames = [bytes(header), *self.buffers]
        if len(frames) > 1 and rng.random() < 0.3:
            victim = rng.randrange(1, len(frames))
            frames[victim] = frames[victim][: rng.randrange(len(frames[victim]) + 1)] + (
                rng.randbytes(rng.randrange(3)))  # fmt: skip
        return self.certain(frames)

    def random_frames(self) -> tuple | None:
        rng = self.rng
        frames = [rng.randbytes(rng.randrange(64)) for _ in range(rng.randrange(1, 4))]
        if rng.random() < 0.5:
            starts = (b"\x94", b"\x95", b"\x94" + bytes([PROTOCOL_VERSION]))
            frames[0] = rng.choice(starts) + frames[0]
        return self.certain(frames)


# -- the worker side ------------------------------------------------------------------------
