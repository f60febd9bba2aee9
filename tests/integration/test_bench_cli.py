"""`zsyft bench --quick` end to end: it runs, prints every row with a ratio, and cleans up.

Speed is measured by the benchmark, never asserted here: the machine running the tests may be
busy with anything else.
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
ROWS = (
    "remote op round trip (ipc)",
    "pipelined small ops (ipc)",
    "send+get 64 MiB float32 (ipc)",
)
PROCESS_MARKERS = ("zsyft-worker", "zsyft.bench.bare_server")
RATIO = re.compile(r"\s(\d+\.\d+)x\s")


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
        for label in ROWS:
            row = [line for line in lines if line.startswith(label)]
            assert len(row) == 1, f"no table row {label!r} in:\n{out}"
            ratio = RATIO.search(row[0])
            assert ratio is not None, f"no ratio in row {row[0]!r}"
            assert float(ratio.group(1)) > 0

        assert _processes_started_by(bench.pid) == []
        # The run's own cleanup removed its private directories (a process that was only
        # killed along with its parent would have left its directory behind). Other entries
        # (torch's caches) are not the benchmark's.
        assert [name for name in os.listdir(temp_root) if name.startswith("zsyft")] == []
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)
