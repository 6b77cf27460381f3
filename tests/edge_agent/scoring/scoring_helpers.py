"""Helpers shared by the scoring tests (a plain module: ``conftest`` is taken by tests/)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from device_drivers.records import Quality, Reading, Vital
from edge_agent.scoring import Scorer

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class MakeReading(Protocol):
    def __call__(
        self,
        vital: Vital,
        value: float,
        at_s: float,
        *,
        device: str = ...,
        patient: str | None = ...,
        flags: frozenset[Quality] = ...,
    ) -> Reading: ...


MakeScorer = Callable[..., Scorer]
