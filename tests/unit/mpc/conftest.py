"""Shared fixtures of the zsyft.mpc unit tests."""

from __future__ import annotations

import pytest

from zsyft.mpc import Prg, fresh_seed


@pytest.fixture(params=[2, 3], ids=["2-parties", "3-parties"])
def prgs(request: pytest.FixtureRequest) -> list[Prg]:
    """Fresh PRGs for 2 and for 3 parties (the seeds the provider would hand out)."""
    return [Prg(fresh_seed()) for _ in range(request.param)]


@pytest.fixture
def prgs2() -> list[Prg]:
    """Fresh PRGs for exactly 2 parties."""
    return [Prg(fresh_seed()) for _ in range(2)]
