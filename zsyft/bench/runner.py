"""`zsyft bench`: run every case, zsyft and bare pyzmq interleaved, and print the table.

    rows = run(quick=True, echo=print)   # what `zsyft bench --quick` does
    run(only=["encrypted-matmul"])       # `zsyft bench --only encrypted-matmul`

Every process the run starts (zsyft workers, bare pyzmq servers) is stopped before `run`
returns or raises. Within a row, rounds alternate which side goes first, so drift in the
machine's load or clock speed affects zsyft and its baseline alike.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence

from zsyft.bench.base import Case, Plan
from zsyft.bench.cases import CASES
from zsyft.bench.env import BenchEnv
from zsyft.bench.report import NOTE, Row, format_table, machine_line


def measure(case: Case, env: BenchEnv) -> list[Row]:
    """Prepare `case`, take its zsyft and bare samples in alternating order, return its rows."""
    zsyft_samples: list[float] = []
    bare_samples: list[float] = []
    try:
        case.prepare(env)
        gc.collect()  # start from a clean heap; collections during the rounds count, as in use
        for round_index in range(case.rounds):
            sides = [(zsyft_samples, case.zsyft_sample), (bare_samples, case.bare_sample)]
            if round_index % 2:
                sides.reverse()
            for samples, sample in sides:
                samples.extend(sample())
        rows = case.rows(zsyft_samples, bare_samples)
    finally:
        case.finish()
    return rows


def case_keys(quick: bool = False) -> list[str]:
    """The key of every case, in table order (what `zsyft bench --only` selects by)."""
    plan = Plan(quick)
    return [make(plan).key for make in CASES]


def run(
    quick: bool = False,
    echo: Callable[[str], None] = print,
    cases: Sequence[Callable[[Plan], Case]] = CASES,
    only: Sequence[str] = (),
) -> list[Row]:
    """Measure every case (fewer repetitions if `quick`), print the table, return the rows.

    `only`: measure just the cases whose key starts with one of these (`encrypted` selects
    every encrypted row); a selection that matches nothing is a `ValueError` listing the keys.
    """
    started = time.perf_counter()
    plan = Plan(quick)
    chosen = [make(plan) for make in cases]
    if only:
        chosen = [case for case in chosen if any(case.key.startswith(k) for k in only)]
        if not chosen:
            raise ValueError(f"no benchmark case's key starts with {', '.join(only)}")
    echo(machine_line(quick))
    echo(NOTE)
    echo("")
    rows: list[Row] = []
    with BenchEnv() as env:
        env.start_workers(
            [need for case in chosen for need in case.needs()],
            [need for case in chosen for need in case.needs_later()],
        )
        for case in chosen:
            rows.extend(measure(case, env))
    echo(format_table(rows))
    echo(f"\n{len(rows)} rows in {time.perf_counter() - started:.1f} s")
    return rows
