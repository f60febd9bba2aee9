"""What CURVE encryption costs: bare pyzmq with CURVE next to bare pyzmq without it.

Every zsyft worker socket is CURVE-encrypted, and so is the bare server the other rows compare
against; these rows show the price of the encryption itself, with zsyft's own frames: the ZSYFT
column holds bare pyzmq with CURVE, the BARE column bare pyzmq in plaintext.
"""

from __future__ import annotations

import time

import torch

from zsyft.bench.bare import BareClient
from zsyft.bench.base import TCP_WORKER, Case, Plan, replay
from zsyft.bench.capture import capture
from zsyft.bench.env import BenchEnv
from zsyft.bench.report import INFORMATIONAL


class CurveRoundTrip(Case):
    """The captured `z = x + x; z.get()` frames over tcp, with and without CURVE."""

    key = "curve-cost-round-trip-tcp"
    label = "CURVE cost: op round trip (tcp)"
    unit = "µs"
    target = INFORMATIONAL
    baseline = "pyzmq, no CURVE"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.rounds = plan.pick(10, 60)
        self.batch = plan.pick(30, 50)
        self.warmup = plan.pick(50, 300)

    def needs(self) -> list[tuple[str, str]]:
        return [(TCP_WORKER, "tcp")]

    def prepare(self, env: BenchEnv) -> None:
        worker = env.worker(TCP_WORKER, "tcp")
        x = torch.ones(4).send(worker)
        with capture(worker) as exchange:
            (x + x).get()
        self.messages, self.reply = exchange.sent, exchange.reply()
        self.encrypted: BareClient = env.bare("tcp", curve=True)
        self.plain: BareClient = env.bare("tcp", curve=False)
        for client in (self.encrypted, self.plain):
            client.reply_after(len(self.messages), self.reply)
            replay(client, self.messages, self.warmup)

    def zsyft_sample(self) -> list[float]:
        self.encrypted.reply_after(len(self.messages), self.reply)
        return replay(self.encrypted, self.messages, self.batch)

    def bare_sample(self) -> list[float]:
        self.plain.reply_after(len(self.messages), self.reply)
        return replay(self.plain, self.messages, self.batch)

    def what(self) -> str:
        return "the frames of z = x + x; z.get(), bare pyzmq over tcp, CURVE vs plaintext"


class CurveThroughput(Case):
    """A 64 MiB buffer sent and echoed back over tcp, with and without CURVE."""

    key = "curve-cost-64mib-tcp"
    label = "CURVE cost: 64 MiB both ways (tcp)"
    unit = "MB/s"
    target = INFORMATIONAL
    baseline = "pyzmq, no CURVE"
    NBYTES = 64 << 20

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.rounds = plan.pick(3, 10)

    def needs(self) -> list[tuple[str, str]]:
        return []

    def prepare(self, env: BenchEnv) -> None:
        self.buffer = memoryview(bytearray(self.NBYTES))
        self.encrypted = env.bare("tcp", curve=True)
        self.plain = env.bare("tcp", curve=False)
        for client in (self.encrypted, self.plain):
            client.echo()
            self._echo(client)

    def _echo(self, client: BareClient) -> list[float]:
        start = time.perf_counter()
        client.send([b"\xc0", self.buffer])
        client.recv(copy=False)
        return [2 * self.NBYTES / (time.perf_counter() - start) / 1e6]

    def zsyft_sample(self) -> list[float]:
        return self._echo(self.encrypted)

    def bare_sample(self) -> list[float]:
        return self._echo(self.plain)

    def what(self) -> str:
        return "64 MiB sent without a copy and echoed back, bare pyzmq over tcp, CURVE vs plaintext"

    def finish(self) -> None:
        self.buffer = None  # type: ignore[assignment]
