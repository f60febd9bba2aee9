"""Private worker directories left by a spawning process that was killed are swept."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from launcher import spawn


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    return child.pid


def _private_dir(root: Path, pid: int, suffix: str) -> Path:
    path = root / f"{spawn.PRIVATE_PREFIX}{pid}-{suffix}"
    path.mkdir()
    (path / "bob.log").write_text("a worker's log\n")
    return path


def test_dirs_of_dead_spawners_are_swept_and_others_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = _private_dir(tmp_path, _dead_pid(), "abc123")
    live = _private_dir(tmp_path, os.getpid(), "def456")
    bench = tmp_path / "zsyft-bench-ghi789"  # not a private worker directory
    bench.mkdir()
    spawn.sweep_stale_private_dirs()
    assert not stale.exists()
    assert live.exists() and (live / "bob.log").exists()
    assert bench.exists()


def test_a_private_worker_lives_in_a_directory_named_after_its_spawner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = _private_dir(tmp_path, _dead_pid(), "jkl012")
    process = spawn.spawn_private("sweeper")
    directory = process.owned_dir
    try:
        assert directory is not None
        assert directory.name.startswith(f"{spawn.PRIVATE_PREFIX}{os.getpid()}-")
        assert not stale.exists()  # swept when this worker was started
    finally:
        process.stop()
    assert not directory.exists()  # its own directory goes when it stops
