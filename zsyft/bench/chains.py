"""Rows across several workers: op round trips along pointer chains, and `move` of a big tensor.

Chains: `x.send(bench)` is 1 hop; `x.send(bench).send(bench2)` is a 2-hop chain (the client's
pointer points at bench2, which holds a pointer to the data at bench); one more `.send(bench3)`
makes 3 hops. `y = p + p` goes to the chain's first worker, which forwards it to the next one,
and `head.sync()` returns once the op ran at the end of the chain, because a worker answers a
SYNC only after syncing every worker it forwarded something to. The three chains are timed in
the same batches, interleaved op by op, so that `(L(h) - L(1)) / (h - 1)` is what one added hop
costs. Target: each added hop costs at most one bare pyzmq round trip of the frames one hop
carries.

`move`: `t.send(bench).move(bench2)` sends the data to bench, then has bench2 fetch it from
bench directly; it is compared with `t.send(bench).get()`, which carries as many bytes across
as many process boundaries, but back through the client.

The extra workers (bench2, bench3) start with the others but join the local node's registry
only when these cases prepare: both `sy.sync()` and the error check of every sync point visit
each registered worker, which would add work to the single-worker rows that their bare
baselines do not do. That is also why these rows come last.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from zsyft.bench.base import WORKER, Case, Plan, replay
from zsyft.bench.capture import Exchange, capture
from zsyft.bench.env import BenchEnv
from zsyft.bench.report import INFORMATIONAL, Row, Target, make_row

CHAIN = (WORKER, "bench2", "bench3")
"""The chain's workers from the data's end: a chain of h hops uses the first h, data at bench."""
HOPS = (1, 2, 3)
PER_HOP_TARGET = Target(1.0, upper=True)  # added latency per hop / bare round trip


def chain_expression(hops: int) -> str:
    """How a pointer of `hops` hops is made, e.g. "x.send(bench).send(bench2)"."""
    return "x" + "".join(f".send({name})" for name in CHAIN[:hops])


class ChainRoundTrip(Case):
    """Latency of `y = p + p; head.sync()` with `p` a 1-, 2- or 3-hop pointer: three rows.

    Row "1 hop": its latency next to bare pyzmq replaying the frames of that exchange (COMMAND,
    the DELETE of the previous `y`, SYNC; the reply OK). Rows "h-hop chain": the latency each
    added hop costs, per batch `(median at h hops - median at 1 hop) / (h - 1)`, next to the
    same bare round trip, so their ratio is "added latency per hop / bare round trip".

    `head.sync()` (the handle's SYNC to the chain's first worker) rather than `sy.sync()`:
    `sy.sync()` sends a SYNC to every registered worker in turn, also to the idle ones, which
    would add the same round trips to every hop count and hide part of each hop's cost.
    """

    key = "chain-ipc"
    unit = "µs"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.rounds = plan.pick(10, 60)
        self.batch = plan.pick(15, 30)  # per hop count: a batch runs 3 x batch ops
        self.warmup = plan.pick(30, 200)
        self.latencies: dict[int, list[float]] = {hops: [] for hops in HOPS}
        self.medians: dict[int, list[float]] = {hops: [] for hops in HOPS}
        self.chains: list[tuple[Any, Any]] = []  # (pointer, the worker it points at)
        self.exchange = Exchange()

    def needs_later(self) -> list[tuple[str, str]]:
        return [(name, "ipc") for name in CHAIN[1:]]

    def prepare(self, env: BenchEnv) -> None:
        self.node = env.sy.local_worker
        env.start_workers(self.needs() + self.needs_later())  # nothing to do if started
        workers = [env.worker(name) for name in CHAIN]
        for hops in HOPS:
            pointer = torch.ones(4).send(workers[0])
            for worker in workers[1:hops]:
                pointer = pointer.send(worker)
            self.chains.append((pointer, workers[hops - 1]))
        # A worker's first op on a pointer it holds takes about a second (torch loads its meta
        # kernels to infer the result's shape): let bench2 and bench3 pay it at the same time.
        for pointer, head in self.chains:
            _ = pointer + pointer
            head.flush()
        env.sy.sync()
        for _ in range(self.warmup):
            for pointer, head in self.chains:
                self._once(pointer, head)
        env.sy.sync()  # raises the error of any op that failed anywhere along a chain
        pointer, head = self.chains[0]
        self._once(pointer, head)  # leaves a DELETE waiting, as in every timed op
        with capture(head) as self.exchange:
            y = pointer + pointer
            head.sync()
        del y
        self.messages, self.reply = self.exchange.sent, self.exchange.reply()
        self.client = env.bare("ipc")
        self.client.reply_after(len(self.messages), self.reply)
        replay(self.client, self.messages, self.warmup)

    @staticmethod
    def _once(pointer: Any, head: Any) -> float:
        """One timed op on `pointer`, waited for at the end of its chain; in µs."""
        start = time.perf_counter()
        y = pointer + pointer
        head.sync()
        elapsed = time.perf_counter() - start
        del y  # only queues the delete; it travels with the next message to `head`
        return elapsed * 1e6

    def zsyft_sample(self) -> list[float]:
        """One batch of every hop count, the order rotating from op to op; the 1-hop times."""
        times: dict[int, list[float]] = {hops: [] for hops in HOPS}
        for i in range(self.batch):
            for j in range(len(HOPS)):
                hops = HOPS[(i + j) % len(HOPS)]
                times[hops].append(self._once(*self.chains[hops - 1]))
        self.node.raise_pending()  # a failed op must not pass for a fast one
        for hops, values in times.items():
            self.latencies[hops].extend(values)
            self.medians[hops].append(statistics.median(values))
        return times[1]

    def bare_sample(self) -> list[float]:
        self.client.reply_after(len(self.messages), self.reply)
        return replay(self.client, self.messages, self.batch)

    def rows(self, zsyft_samples: Sequence[float], bare_samples: Sequence[float]) -> list[Row]:
        one_hop = statistics.median(zsyft_samples)
        rows = [
            make_row(
                "chain-1-hop-ipc",
                "op round trip, 1 hop (ipc)",
                self.unit,
                INFORMATIONAL,
                zsyft_samples,
                bare_samples,
                f"p = x.send({CHAIN[0]}) on 4 float32; y = p + p; {CHAIN[0]}.sync() "
                f"({self.exchange.describe()}); bare pyzmq sends the same frames and gets the "
                "same reply; the reference of the chain rows",
            )
        ]
        for hops in HOPS[1:]:
            added = [
                (at_hops - at_one) / (hops - 1)
                for at_hops, at_one in zip(self.medians[hops], self.medians[1], strict=True)
            ]
            latency = statistics.median(self.latencies[hops])
            what = (
                f"p = {chain_expression(hops)}; y = p + p; {CHAIN[hops - 1]}.sync(): median "
                f"{latency:,.0f} µs vs {one_hop:,.0f} µs for 1 hop, interleaved; ZSYFT = per "
                f"batch (median at {hops} hops - median at 1 hop) / {hops - 1}; BARE PYZMQ = the "
                "1-hop row's bare round trip (each hop forwards a COMMAND, a DELETE and a SYNC "
                "like those and waits for the OK); target: an added hop costs at most one bare "
                "round trip"
            )
            rows.append(
                make_row(
                    f"chain-{hops}-hop-ipc",
                    f"op round trip, {hops}-hop chain: added per hop (ipc)",
                    self.unit,
                    PER_HOP_TARGET,
                    added,
                    bare_samples,
                    what,
                )
            )
        return rows

    def finish(self) -> None:
        self.chains = []
        self.messages = self.reply = None  # type: ignore[assignment]


class MoveVsSendGet(Case):
    """Throughput of `t.send(bench).move(bench2)` next to `t.send(bench).get()`, 64 MiB float32.

    Both carry the 64 MiB across two process boundaries (client to bench, then bench to bench2,
    or bench back to the client); MB/s counts both ways, as in the send+get row. The moved
    tensor is then deleted at bench2, and that delete waited for, outside the timing. Both sides
    are zsyft, so there is no target: a ratio above 1 means `move` is the faster of the two.
    """

    key = "move-64mib-ipc"
    label = "move 64 MiB float32 (ipc)"
    unit = "MB/s"
    target = INFORMATIONAL
    baseline = "zsyft send+get"
    NBYTES = 64 << 20

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.rounds = plan.pick(3, 20)
        self.warmup = plan.pick(1, 2)
        self.exchanges = (Exchange(), Exchange())

    def needs_later(self) -> list[tuple[str, str]]:
        return [(CHAIN[1], "ipc")]

    def prepare(self, env: BenchEnv) -> None:
        env.start_workers(self.needs() + self.needs_later())  # nothing to do if started
        self.source, self.destination = env.worker(CHAIN[0]), env.worker(CHAIN[1])
        self.tensor = torch.rand(self.NBYTES // 4, dtype=torch.float32)
        for _ in range(self.warmup):
            self.zsyft_sample()
            self.bare_sample()
        with capture(self.source) as to_source, capture(self.destination) as to_destination:
            moved = self.tensor.send(self.source).move(self.destination)
        del moved
        self.destination.sync()
        self.exchanges = (to_source, to_destination)

    def _rate(self, seconds: float) -> float:
        return 2 * self.NBYTES / seconds / 1e6

    def zsyft_sample(self) -> list[float]:
        start = time.perf_counter()
        moved = self.tensor.send(self.source).move(self.destination)
        elapsed = time.perf_counter() - start
        del moved
        self.destination.sync()  # the delete leaves with this SYNC: bench2 frees the copy now
        return [self._rate(elapsed)]

    def bare_sample(self) -> list[float]:
        start = time.perf_counter()
        back = self.tensor.send(self.source).get()
        elapsed = time.perf_counter() - start
        del back  # freed outside the timing, like the moved copy
        return [self._rate(elapsed)]

    def what(self) -> str:
        to_source, to_destination = self.exchanges
        return (
            f"t.send({CHAIN[0]}).move({CHAIN[1]}), {CHAIN[1]} fetching the data from "
            f"{CHAIN[0]} directly (to {CHAIN[0]}: {to_source.describe()}; to {CHAIN[1]}: "
            f"{to_destination.describe()}), against t.send({CHAIN[0]}).get() in the same "
            "rounds; MB/s = 2 x 64 MiB / time on both sides; no target"
        )

    def finish(self) -> None:
        self.tensor = None  # type: ignore[assignment]
        self.exchanges = (Exchange(), Exchange())
