"""`zsyft bench --quick` end to end: it runs, prints every row with a ratio, and cleans up.

Speed is measured by the benchmark, never asserted here: the machine running the tests may be
busy with anything else. What is checked: every row is printed once, with a numeric ratio and
the target it is held to (`none` for rows that only report), and the pointer-chain rows say
which chain latencies their per-hop figure comes from. The encrypted rows have no baseline:
they print dashes for the bare side and the ratio, a time as their target, and note the
protocol rounds and bytes per party per element.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = {  # label: the target printed for it
    "remote op round trip (ipc)": "≤ 2x",
    "pipelined small ops (ipc)": "≥ 0.5x",
    "send+get 64 MiB float32 (ipc)": "≥ 0.5x",
    "remote op round trip (tcp)": "≤ 2x",
    "CURVE cost: op round trip (tcp)": "none",
    "CURVE cost: 64 MiB both ways (tcp)": "none",
    "op round trip, 1 hop (ipc)": "none",
    "op round trip, 2-hop chain: added per hop (ipc)": "≤ 1x",
    "op round trip, 3-hop chain: added per hop (ipc)": "≤ 1x",
    "move 64 MiB float32 (ipc)": "none",
}
ENCRYPTED_ROWS = {  # label: the time it is held to
    "encrypted mul, 1 element": "≤ 1 ms",
    "encrypted matmul 128x128x128": "≤ 10 ms",
    "encrypted ReLU, 1e5 elements": "≤ 130 ms",
    "encrypted training, Part 12 loop (20 it.)": "≤ 0.3 s",
    "encrypted training step, MLP 784-128-10, batch 64": "≤ 350 ms",
}
NO_BASELINE = re.compile(r"\s— \(no baseline\)\s+—\s+(≤ [\d.]+ m?s)")
COST_NOTE = re.compile(r"\d+ rounds?, [\d.]+ B/element per party")
CHAIN_NOTE = re.compile(r"bench\d?\.sync\(\): median [\d,]+ µs vs [\d,]+ µs for 1 hop")
PROCESS_MARKERS = ("zsyft-worker", "zsyft.bench.bare_server")
RATIO = re.compile(r"\s(\d+\.\d+)x\s+(none|[≤≥] [\d.]+x)")  # the ratio, then the target


def _processes_started_by(parent_pid: int) -> list[str]:
    """Command lines of live worker or bare-server processes that `parent_pid` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # the process exited while we looked
        command = " ".join(args)
        if any(marker in command for marker in PROCESS_MARKERS) and (
            f"--parent-pid {parent_pid} " in command + " "
        ):
            found.append(f"{entry.name}: {command}")
    return found


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_bench_quick_prints_every_row_and_leaves_nothing_behind() -> None:
    temp_root = tempfile.mkdtemp(prefix="zsyft-bench-test-")
    env = dict(os.environ, TMPDIR=temp_root)  # every private directory of the run lands here
    try:
        bench = subprocess.Popen(
            [sys.executable, "-m", "launcher.cli", "bench", "--quick"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = bench.communicate(timeout=100)
        except subprocess.TimeoutExpired:
            bench.kill()
            out, err = bench.communicate()
            pytest.fail(f"zsyft bench --quick did not finish in 100 s:\n{out}\n{err}")

        assert bench.returncode == 0, f"exit code {bench.returncode}\n{out}\n{err}"
        lines = out.splitlines()
        for label, target in ROWS.items():
            row = [line for line in lines if line.startswith(label)]
            assert len(row) == 1, f"no table row {label!r} in:\n{out}"
            ratio = RATIO.search(row[0])
            assert ratio is not None, f"no ratio in row {row[0]!r}"
            assert float(ratio.group(1)) > 0
            assert ratio.group(2) == target, f"row {row[0]!r} should have the target {target}"
        for hops in (2, 3):
            note = [line for line in lines if line.startswith(f"- op round trip, {hops}-hop")]
            assert len(note) == 1 and CHAIN_NOTE.search(note[0]), f"no chain latencies in:\n{out}"
        for label, target in ENCRYPTED_ROWS.items():
            row = [line for line in lines if line.startswith(label)]
            assert len(row) == 1, f"no table row {label!r} in:\n{out}"
            found = NO_BASELINE.search(row[0])
            assert found is not None and found.group(1) == target, f"row {row[0]!r}"
            note = [line for line in lines if line.startswith(f"- {label}:")]
            assert len(note) == 1 and COST_NOTE.search(note[0]), f"no protocol costs in:\n{out}"
        assert "(zsyft send+get)" in next(line for line in lines if line.startswith("move "))

        assert _processes_started_by(bench.pid) == []
        # The run's own cleanup removed its private directories (a process that was only
        # killed along with its parent would have left its directory behind). Other entries
        # (torch's caches) are not the benchmark's.
        assert [name for name in os.listdir(temp_root) if name.startswith("zsyft")] == []
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)


@pytest.mark.timeout(120)
def test_bench_only_measures_the_chosen_rows_and_names_the_keys_on_a_typo() -> None:
    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "launcher.cli", "bench", "--quick", *args],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=100,
        )

    chosen = bench("--only", "encrypted-mul")
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    table = [line for line in chosen.stdout.splitlines()
             if line.startswith(tuple(ROWS) + tuple(ENCRYPTED_ROWS))]
    assert [line.split("  ")[0] for line in table] == ["encrypted mul, 1 element"]
    typo = bench("--only", "encrypted-mull")
    assert typo.returncode == 2
    assert "encrypted-mull" in typo.stderr and "encrypted-matmul" in typo.stderr
