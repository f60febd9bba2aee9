"""What every benchmark case shares: the run's `Plan`, the `Case` interface, and the replay loop.

A case is prepared once (start what it needs, warm both sides up, capture the frames zsyft
really sends), then the runner alternates `zsyft_sample()` and `bare_sample()` for `rounds`
rounds. Each sample returns values already in the case's unit; `rows()` turns the samples into
table rows (one by default; a case that measures related things in the same rounds, such as
pointer chains of several lengths, returns several).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zsyft.bench.bare import BareClient
from zsyft.bench.env import BenchEnv
from zsyft.bench.report import Row, Target, make_row

WORKER = "bench"  # the private zsyft worker every ipc row uses
TCP_WORKER = "bench-tcp"


@dataclass(frozen=True)
class Plan:
    """How much to measure: `quick` for a smoke test, otherwise a full run."""

    quick: bool

    def pick(self, quick: int, full: int) -> int:
        """`quick` in a quick run, else `full`."""
        return quick if self.quick else full


class Case:
    """One measurement of the benchmark. Subclasses set the class attributes and the methods.

    `baseline` names what the BARE PYZMQ column holds when it is not bare pyzmq (a row that
    compares two zsyft operations); empty for the usual bare pyzmq baseline.
    """

    key = ""
    label = ""
    unit = ""
    target = Target(1.0, upper=True)
    baseline = ""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rounds = plan.pick(3, 10)

    def needs(self) -> list[tuple[str, str]]:
        """The zsyft workers this case uses, as (name, transport); started before any row."""
        return [(WORKER, "ipc")]

    def needs_later(self) -> list[tuple[str, str]]:
        """Workers that only this case uses: started before any row too, but registered with
        the local node only when `prepare` asks the env for them (see `BenchEnv.start_workers`).
        """
        return []

    def prepare(self, env: BenchEnv) -> None:
        """Start what the case needs, warm up zsyft and bare pyzmq, capture zsyft's frames."""
        raise NotImplementedError

    def zsyft_sample(self) -> list[float]:
        raise NotImplementedError

    def bare_sample(self) -> list[float]:
        raise NotImplementedError

    def what(self) -> str:
        """One sentence for the table's footnotes: what each side does."""
        return ""

    def rows(self, zsyft_samples: Sequence[float], bare_samples: Sequence[float]) -> list[Row]:
        """The table rows for the samples taken (called after the last round, before `finish`)."""
        return [
            make_row(
                self.key,
                self.label,
                self.unit,
                self.target,
                zsyft_samples,
                bare_samples,
                self.what(),
                self.baseline,
            )
        ]

    def finish(self) -> None:
        """Drop what `prepare` created (pointers, captured buffers)."""


def replay(client: BareClient, messages: Sequence[Sequence[Any]], count: int) -> list[float]:
    """Send `messages` and wait for the server's one reply, `count` times; µs per round trip.

    The server must have been told (`client.reply_after(len(messages), reply)`) to answer
    after the last message of each round.
    """
    clock, times = time.perf_counter, []
    for _ in range(count):
        start = clock()
        for frames in messages:
            client.send(frames)
        client.recv()
        times.append((clock() - start) * 1e6)
    return times
