"""Fixtures for the store tests: reading factories and stores on real files in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device_drivers.records import Quality, Reading, Vital
from edge_agent.config import StoreConfig
from edge_agent.store import BufferStore

GW = "gw-test-01"


T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

_UNITS = {Vital.SPO2: "%", Vital.HEART_RATE: "/min", Vital.BP_SYSTOLIC: "mm[Hg]", Vital.BODY_TEMP: "Cel"}


def make_reading(
    seq: int,
    *,
    vital: Vital = Vital.SPO2,
    value: float = 97.0,
    at: datetime | None = None,
    patient_id: str | None = "P-0001",
    device_id: str = "oxi-1",
    source_format: str = "masimo-ascii",
    gateway_id: str = GW,
) -> Reading:
    t = at or (T0 + timedelta(seconds=seq))
    return Reading(
        uid=f"{gateway_id}:{seq}",
        seq=seq,
        vital=vital,
        value=value,
        unit=_UNITS.get(vital, "%"),
        measured_at=t,
        received_at=t,
        device_id=device_id,
        source_format=source_format,
        clock_from_device=seq % 2 == 0,
        patient_id=patient_id,
        flags=frozenset({Quality.CLOCK_UNSYNCED}) if seq % 3 == 0 else frozenset(),
        extra=(("pulse_seq", seq),) if seq % 5 == 0 else (),
    )


def spot(seq: int, **kw: Any) -> Reading:
    """A spot check (blood pressure cuff)."""
    return make_reading(
        seq, vital=Vital.BP_SYSTOLIC, value=120.0, device_id="bp-1", source_format="ble-blood-pressure", **kw
    )


class Clock:
    """A settable clock for the store (retention, rotation, ages)."""

    def __init__(self, t: datetime = T0) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


OpenStore = Callable[..., BufferStore]


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    """open_store(**kwargs) opens a BufferStore on tmp_path/buffer.sqlite3; closed at teardown."""
    opened: list[BufferStore] = []

    def _open(
        *, config: StoreConfig | None = None, path: Path | None = None, keystore: Path | None = None, **kw: Any
    ) -> BufferStore:
        s = BufferStore.open(
            path or tmp_path / "buffer.sqlite3",
            gateway_id=kw.pop("gateway_id", GW),
            keystore_path=keystore or tmp_path / "keystore.json",
            config=config or StoreConfig(group_commit_ms=5),
            **kw,
        )
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()
