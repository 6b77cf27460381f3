"""Fixtures for the scoring tests: readings on a fake timeline, a real BufferStore, scorers."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from device_drivers.records import UNITS, Quality, Reading, Vital
from edge_agent.scoring import Scorer, ScoringSettings, build_scorer
from edge_agent.store import BufferStore
from tests.fixtures import real_store as open_real_store

# tests/ has no packages and ``conftest`` is taken by tests/conftest.py: make the helpers importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring_helpers import T0, MakeReading, MakeScorer


@pytest.fixture
def make_reading() -> MakeReading:
    seq = itertools.count(1)

    def make(
        vital: Vital,
        value: float,
        at_s: float,
        *,
        device: str = "oxi-1",
        patient: str | None = None,
        flags: frozenset[Quality] = frozenset(),
    ) -> Reading:
        n = next(seq)
        t = T0 + timedelta(seconds=at_s)
        return Reading(
            uid=f"gw-t:{n}",
            seq=n,
            vital=vital,
            value=value,
            unit=UNITS[vital],
            measured_at=t,
            received_at=t,
            device_id=device,
            source_format="test",
            clock_from_device=False,
            patient_id=patient,
            flags=flags,
        )

    return make


@pytest.fixture
def real_store(tmp_path: Path) -> Iterator[BufferStore]:
    with open_real_store(tmp_path, gateway_id="gw-t", clock=lambda: T0) as store:
        yield store


@pytest.fixture
def make_scorer() -> MakeScorer:
    def make(store: Any = None, models_dir: Path | None = None, **settings: Any) -> Scorer:
        settings.setdefault("probe_runtime", False)
        return build_scorer(models_dir=models_dir, store=store, clock=lambda: T0, settings=ScoringSettings(**settings))

    return make
