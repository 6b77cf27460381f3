"""Shared fixtures: device simulators on real pseudo-terminals, temporary state dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device_drivers.simulators import PtySimulator, create_simulator


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """pyproject declares ``slow`` as "select with -m slow": skip those unless -m names them."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def masimo_sim(tmp_path: Path) -> Iterator[PtySimulator]:
    """A Masimo oximeter simulator at 20x its real pace, reachable at ``sim.link``."""
    sim = create_simulator("masimo-ascii", link=tmp_path / "dev" / "oximeter", speed=20.0).start()
    yield sim
    sim.stop()
