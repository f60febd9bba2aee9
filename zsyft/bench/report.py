"""Benchmark results as data, and the text `zsyft bench` prints for them.

A `Row` holds one comparison: the median of zsyft's samples, the median of the bare pyzmq
samples taken in the same run, their ratio zsyft/bare, and whether the ratio meets the row's
`Target`. Rows are plain data so that tests and other code can use them without parsing text.

A few rows compare two zsyft operations instead (e.g. `move` against `send` + `get`): their
`baseline` names what the BARE PYZMQ column holds, and the table says so in that cell. Rows
that only report a ratio, with no goal to meet, have the target `INFORMATIONAL`. Rows with no
baseline at all (encrypted ops, which bare pyzmq cannot do) have no bare samples and a target
on zsyft's median itself, in the row's unit (`Target(10, upper=True, unit="ms")`: at most 10 ms).
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    """A bound on the ratio zsyft/bare: at most `bound` if `upper`, else at least `bound`.

    `bound=None` means no target: the row is reported for information and neither meets nor
    misses anything (see `INFORMATIONAL`). With a `unit`, the bound is on zsyft's median in
    that unit instead of on a ratio (for rows with no baseline).
    """

    bound: float | None
    upper: bool
    unit: str = ""

    def met(self, value: float) -> bool | None:
        """Whether `value` (the ratio, or the median if `unit`) satisfies this target."""
        if self.bound is None:
            return None
        return value <= self.bound if self.upper else value >= self.bound

    def __str__(self) -> str:
        if self.bound is None:
            return "none"
        return f"{'≤' if self.upper else '≥'} {self.bound:g}{' ' + self.unit if self.unit else 'x'}"


INFORMATIONAL = Target(None, upper=True)
"""The target of rows that only report their ratio."""


@dataclass
class Row:
    """One line of the table: zsyft next to bare pyzmq doing the same wire work.

    `zsyft` and `bare` are medians in `unit`; `ratio` is zsyft/bare (for a latency, lower is
    better; for a rate, higher is better, and `target` says which). `baseline` is empty when
    the bare side is bare pyzmq, else what it is instead (e.g. "zsyft send+get").
    """

    key: str
    label: str
    unit: str
    target: Target
    zsyft: float
    bare: float
    zsyft_samples: list[float] = field(repr=False)
    bare_samples: list[float] = field(repr=False)
    what: str = ""
    baseline: str = ""

    @property
    def has_baseline(self) -> bool:
        """False for a zsyft-only row (no bare samples; its target bounds zsyft's median)."""
        return bool(self.bare_samples)

    @property
    def ratio(self) -> float:
        """zsyft/bare; NaN for a row with no baseline."""
        if not self.has_baseline:
            return float("nan")
        return self.zsyft / self.bare if self.bare else float("inf")

    @property
    def met(self) -> bool | None:
        """Whether the row meets its target; None for an informational row."""
        return self.target.met(self.zsyft if self.target.unit else self.ratio)

    def as_dict(self) -> dict[str, Any]:
        """The row as plain data (e.g. for JSON): medians, ratio, target and whether it is met."""
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "zsyft": self.zsyft,
            "bare": self.bare if self.has_baseline else None,
            "ratio": self.ratio if self.has_baseline else None,
            "target": str(self.target),
            "met": self.met,
            "baseline": self.baseline or ("bare pyzmq" if self.has_baseline else "none"),
            "samples": {"zsyft": len(self.zsyft_samples), "bare": len(self.bare_samples)},
        }


def make_row(
    key: str,
    label: str,
    unit: str,
    target: Target,
    zsyft_samples: Sequence[float],
    bare_samples: Sequence[float],
    what: str = "",
    baseline: str = "",
) -> Row:
    """A row from raw samples (each already in `unit`); the medians are computed here.

    A row whose target has a `unit` may have no bare samples (it has no baseline).
    """
    if not zsyft_samples or not (bare_samples or target.unit):
        raise ValueError(f"row {key!r} needs at least one sample on each side")
    return Row(
        key=key,
        label=label,
        unit=unit,
        target=target,
        zsyft=statistics.median(zsyft_samples),
        bare=statistics.median(bare_samples) if bare_samples else float("nan"),
        zsyft_samples=list(zsyft_samples),
        bare_samples=list(bare_samples),
        what=what,
        baseline=baseline,
    )


def machine_line(quick: bool) -> str:
    """What the numbers were measured on: CPUs, Python, torch, pyzmq and libzmq versions."""
    import torch
    import zmq

    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (
        f"zsyft bench ({'quick' if quick else 'full'} run) on {os.cpu_count()} CPUs{load}, "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()})"
    )


NOTE = (
    "Absolute numbers depend on the machine; the ratios count: each row's baseline moves the "
    "same frames\nbetween two processes over the same kind of socket with bare pyzmq, "
    "measured in this run, interleaved with zsyft\n(where that cell names a zsyft operation "
    "instead, the row compares two zsyft operations;\nrows with no baseline are held to a "
    "time of their own)."
)


def _number(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:,.2f} {unit}"
    if unit in ("µs", "ms"):
        return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{value:,.0f} {unit}"


def _spread(samples: Sequence[float]) -> str:
    """The interquartile range of `samples` as a percentage of their median."""
    if len(samples) < 4:
        return ""
    q1, _, q3 = statistics.quantiles(samples, n=4)
    median = statistics.median(samples)
    return f"±{50 * (q3 - q1) / median:.0f}%" if median else ""


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table, followed by one line per row saying what it measures."""
    lines = [["ROW", "ZSYFT", "BARE PYZMQ", "RATIO", "TARGET", ""]]
    status = {True: "met", False: "MISSED", None: ""}
    for row in rows:
        other = f" ({row.baseline})" if row.baseline else ""
        bare = f"{_number(row.bare, row.unit)} {_spread(row.bare_samples)}".rstrip() + other
        lines.append(
            [
                row.label,
                f"{_number(row.zsyft, row.unit)} {_spread(row.zsyft_samples)}".rstrip(),
                bare if row.has_baseline else "— (no baseline)",
                f"{row.ratio:.2f}x" if row.has_baseline else "—",
                str(row.target),
                status[row.met],
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    text.append("")
    text.append("medians; ± is half the interquartile range of the samples, relative to the median")
    text.extend(f"- {row.label}: {row.what}" for row in rows if row.what)
    return "\n".join(text)
