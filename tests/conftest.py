"""Shared fixtures: device simulators on real pseudo-terminals, temporary state dirs, a test PKI and a
real Mosquitto broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device_drivers.simulators import PtySimulator, create_simulator
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.pki import Pki, kernel_now


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


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A fresh test PKI in ``tmp_path/pki`` (CA, broker, hub-1/hub-2, hub keys; gateways on demand
    with ``pki.gateway("gw-0001")``), issued at the kernel's wall clock so OpenSSL accepts it."""
    return Pki(tmp_path / "pki", now=kernel_now(tmp_path))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[MosquittoBroker]:
    """A real Mosquitto on a free loopback port, configured by provisioning.broker from ``pki``;
    started for the test and stopped after it (``.port``, ``.url``, ``.kill()``, ``.restart()``)."""
    with MosquittoBroker(tmp_path / "broker", pki) as running:
        yield running
