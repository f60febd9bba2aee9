"""Fixtures shared by every test: an isolated $ZSYFT_HOME and process bookkeeping."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers import wait_until, zsyft_pids


@pytest.fixture(scope="session", autouse=True)
def isolated_zsyft_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cluster files and logs of this test run go to a temporary directory."""
    home = tmp_path_factory.mktemp("zsyft-home")
    os.environ["ZSYFT_HOME"] = str(home)
    return home


@pytest.fixture(scope="session", autouse=True)
def no_worker_left_at_exit():
    """Fail the run if any worker process outlives the test session (and clean it up)."""
    before = zsyft_pids()
    yield
    from zsyft.remote.node import local_node

    local_node().shutdown()
    left = set()
    if not wait_until(lambda: not (zsyft_pids() - before), 5):
        left = zsyft_pids() - before
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes left behind: {left}"
