"""The measured rows: each `Case` times one zsyft operation and its bare pyzmq counterpart.

This module holds the rows on one worker (round trip, pipelined ops, a large transfer) and the
table order, `CASES`; the rows across several workers (pointer chains, `move`) are in `chains`.
How a case is measured is described in `base`.

To add a row (encrypted ops, ...): subclass `Case`, get workers from the `BenchEnv`, replay the
captured frames against `env.bare()`, and append the class to `CASES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from zsyft.bench.bare import BareClient
from zsyft.bench.base import TCP_WORKER, WORKER, Case, Plan, replay
from zsyft.bench.capture import Exchange, capture
from zsyft.bench.chains import ChainRoundTrip, MoveVsSendGet
from zsyft.bench.curve import CurveRoundTrip, CurveThroughput
from zsyft.bench.encrypted import (
    EncryptedMatmul,
    EncryptedMul,
    EncryptedRelu,
    MlpStep,
    Part12Loop,
)
from zsyft.bench.env import BenchEnv
from zsyft.bench.report import INFORMATIONAL, Target


class RoundTrip(Case):
    """Latency of one remote op whose result is waited for: `z = x + x; z.get()`.

    zsyft sends a COMMAND (pipelined) and a FETCH, and waits for the DATA reply. The bare
    client sends the same captured frames; the server answers the second with the captured
    DATA frames. zsyft's client and worker wait for each next message awake for a moment
    before they block (`transport.zmq.spin_poll`); the bare pair blocks in recv, as a plain
    pyzmq program does. With `awake=True` (an informational row) the bare pair waits awake
    just as long, so the ratio shows zsyft's own work without the wake-ups.
    """

    unit = "µs"
    target = Target(2.0, upper=True)

    def __init__(self, plan: Plan, transport: str = "ipc", awake: bool = False) -> None:
        super().__init__(plan)
        self.transport = transport
        self.awake = awake
        self.key = f"round-trip-{transport}"
        self.label = f"remote op round trip ({transport})"
        if awake:
            self.key = f"round-trip-awake-{transport}"
            self.label = f"op round trip, bare waiting awake too ({transport})"
            self.target = INFORMATIONAL
            self.baseline = "pyzmq, waiting awake"
        self.rounds = plan.pick(10, 80)  # short batches, many rounds: the sides interleave finely
        self.batch = plan.pick(30, 50)
        self.warmup = plan.pick(50, 300)
        self.exchange = Exchange()

    def needs(self) -> list[tuple[str, str]]:
        return [(WORKER if self.transport == "ipc" else TCP_WORKER, self.transport)]

    def prepare(self, env: BenchEnv) -> None:
        worker = env.worker(*self.needs()[0])
        self.x = torch.ones(4).send(worker)
        self._zsyft_loop(self.warmup)
        with capture(worker) as self.exchange:
            self._zsyft_loop(1)
        self.messages = self.exchange.sent
        self.reply = self.exchange.reply()
        self.client = env.bare(self.transport, awake=self.awake)
        self._bare_loop(self.warmup)

    def _zsyft_loop(self, count: int) -> list[float]:
        x, clock, times = self.x, time.perf_counter, []
        for _ in range(count):
            start = clock()
            z = x + x
            z.get()
            times.append((clock() - start) * 1e6)
        return times

    def _bare_loop(self, count: int) -> list[float]:
        self.client.reply_after(len(self.messages), self.reply)
        return replay(self.client, self.messages, count)

    def zsyft_sample(self) -> list[float]:
        return self._zsyft_loop(self.batch)

    def bare_sample(self) -> list[float]:
        return self._bare_loop(self.batch)

    def what(self) -> str:
        waits = (
            "both wait for messages awake first, as zsyft does"
            if self.awake
            else "it blocks in recv, while zsyft waits awake first (ZSYFT_SPIN_US=0 turns "
            "that off)"
        )
        return (
            f"z = x + x; z.get() on 4 float32 ({self.exchange.describe()}); bare pyzmq sends "
            f"the same frames DEALER→ROUTER and gets the same reply frames back; {waits}"
        )

    def finish(self) -> None:
        self.x = None


class Pipelined(Case):
    """Throughput of small ops that wait for nothing: N x `y = x + x`, then one `sy.sync()`.

    The bare client sends the captured COMMAND frames N times, then the captured SYNC frames,
    and waits for the server's captured OK reply to confirm that all of them arrived.
    """

    key = "pipelined-ipc"
    label = "pipelined small ops (ipc)"
    unit = "ops/s"
    target = Target(0.5, upper=False)

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.rounds = plan.pick(3, 20)
        self.ops = plan.pick(2_000, 5_000)

    def prepare(self, env: BenchEnv) -> None:
        self.sy = env.sy
        worker = env.worker(WORKER)
        self.x = torch.ones(4).send(worker)
        self.zsyft_sample()
        self.sy.sync()  # sends the deletes the sample queued: the capture holds the op alone
        with capture(worker) as one_op:
            y = self.x + self.x
        with capture(worker) as sync:
            self.sy.sync()
        del y
        self.command = one_op.only("COMMAND")
        self.sync = sync.only("SYNC")
        self.reply = sync.reply()
        self.exchange = Exchange([self.command, self.sync], [self.reply])
        self.client: BareClient = env.bare("ipc")
        self.bare_sample()

    def zsyft_sample(self) -> list[float]:
        x, sync, ops = self.x, self.sy.sync, self.ops
        start = time.perf_counter()
        for _ in range(ops):
            y = x + x
        sync()
        elapsed = time.perf_counter() - start
        del y
        return [ops / elapsed]

    def bare_sample(self) -> list[float]:
        client, command, ops = self.client, self.command, self.ops
        client.reply_after(ops + 1, self.reply)
        start = time.perf_counter()
        for _ in range(ops):
            client.send(command)
        client.send(self.sync)
        client.recv()
        return [ops / (time.perf_counter() - start)]

    def what(self) -> str:
        return (
            f"{self.ops:,} x (y = x + x), then sy.sync() ({self.exchange.describe()}; zsyft "
            "sends them in bursts of 64, one BATCH message each); bare pyzmq sends the COMMAND "
            f"frames {self.ops:,} times, each as a message, then SYNC, and waits for OK"
        )

    def finish(self) -> None:
        self.x = None


class BigTransfer(Case):
    """Throughput of `t.send(bob).get()` for a 64 MiB float32 tensor, counting both ways.

    The bare client sends the captured STORE frames (the 64 MiB buffer without a copy) and the
    server echoes them back without a copy.
    """

    key = "send-get-64mib-ipc"
    label = "send+get 64 MiB float32 (ipc)"
    unit = "MB/s"
    target = Target(0.5, upper=False)
    NBYTES = 64 << 20

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.rounds = plan.pick(3, 20)
        self.warmup = plan.pick(1, 2)

    def prepare(self, env: BenchEnv) -> None:
        self.worker = env.worker(WORKER)
        self.tensor = torch.rand(self.NBYTES // 4, dtype=torch.float32)
        for _ in range(self.warmup):
            self.zsyft_sample()
        with capture(self.worker) as self.exchange:
            self.tensor.send(self.worker).get()
        self.store = self.exchange.only("STORE")
        self.client: BareClient = env.bare("ipc")
        for _ in range(self.warmup):
            self.bare_sample()

    def _rate(self, seconds: float) -> float:
        return 2 * self.NBYTES / seconds / 1e6

    def zsyft_sample(self) -> list[float]:
        start = time.perf_counter()
        self.tensor.send(self.worker).get()
        return [self._rate(time.perf_counter() - start)]

    def bare_sample(self) -> list[float]:
        self.client.echo()
        start = time.perf_counter()
        self.client.send(self.store)
        self.client.recv(copy=False)
        return [self._rate(time.perf_counter() - start)]

    def what(self) -> str:
        return (
            f"t.send(bob).get(), MB/s = 2 x 64 MiB / time ({self.exchange.describe()}); bare "
            "pyzmq sends the STORE frames without a copy and the server echoes them back"
        )

    def finish(self) -> None:
        self.tensor = self.store = self.exchange = None  # type: ignore[assignment]


CASES: list[Callable[[Plan], Case]] = [
    RoundTrip,
    lambda plan: RoundTrip(plan, "ipc", awake=True),
    Pipelined,
    BigTransfer,
    lambda plan: RoundTrip(plan, "tcp"),
    CurveRoundTrip,
    CurveThroughput,
    ChainRoundTrip,  # after every single-worker row: see `chains` for why
    MoveVsSendGet,
    EncryptedMul,  # last: they register three more workers (see `encrypted`)
    EncryptedMatmul,
    EncryptedRelu,
    Part12Loop,
    MlpStep,
]
"""The rows in table order; each entry builds its case from the run's `Plan`."""
