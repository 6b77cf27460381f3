"""The pipeline on a real encrypted store: a device clock far from the gateway's is not believed,
and ``submit`` tells its caller, through a future, how many readings were committed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.records import Measurement, Quality, Vital
from edge_agent.events import EventHub, ReadingsStored
from edge_agent.pipeline import DEVICE_CLOCK_MAX_AHEAD, DEVICE_CLOCK_MAX_BEHIND, Pipeline, plausible_device_time
from edge_agent.store import BufferStore
from tests.fixtures import real_store

NOW = datetime(2029, 7, 1, 12, 0, tzinfo=UTC)  # any date: every clock here is pinned


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BufferStore]:
    with real_store(tmp_path, gateway_id="gw-p", clock=lambda: NOW) as s:
        yield s


def spo2(at: datetime | None) -> Measurement:
    return Measurement(Vital.SPO2, 97.0, "%", "ble-plx-spot", measured_at=at)


def test_implausible_device_times_are_stored_as_receive_time_and_flagged(store: BufferStore) -> None:
    events = EventHub()
    stored: list[ReadingsStored] = []
    events.subscribe(lambda e: stored.append(e) if isinstance(e, ReadingsStored) else None)
    pipeline = Pipeline(gateway_id="gw-p", store=store, scorer=None, events=events, clock=lambda: NOW)
    wild = [datetime(234, 5, 6, tzinfo=UTC), datetime(1000, 1, 1, tzinfo=UTC), datetime(6122, 3, 3, tzinfo=UTC)]
    glucometer_memory = NOW - timedelta(days=20)  # a record measured weeks ago is believed

    async def main() -> int:
        future = pipeline.submit("ox-1", [*map(spo2, wild), spo2(glucometer_memory), spo2(None)], NOW)
        assert future is not None
        return await future

    assert asyncio.run(main()) == 5
    readings = stored[0].readings
    for r in readings[:3]:
        assert r.measured_at == NOW and Quality.CLOCK_UNSYNCED in r.flags and not r.clock_from_device
    assert readings[3].measured_at == glucometer_memory and readings[3].clock_from_device
    assert pipeline.counters.device_clock_rejected == 3
    # and the store holds them with the receive time, never the year 0234
    assert {r.measured_at.year for r in store.pending_batch(10)} == {2029}


def test_submit_resolves_to_zero_when_the_store_fails(store: BufferStore) -> None:
    pipeline = Pipeline(gateway_id="gw-p", store=store, scorer=None, events=EventHub(), clock=lambda: NOW)
    store.close()

    async def main() -> object:
        return pipeline.submit("ox-1", [spo2(None)], NOW)

    assert asyncio.run(main()) is None  # nothing queued: the caller must not forget the bytes
    assert pipeline.counters.store_errors == 1


@given(st.datetimes(timezones=st.just(UTC)))
def test_plausible_device_time_is_a_window_around_the_receive_time(at: datetime) -> None:
    expected = NOW - DEVICE_CLOCK_MAX_BEHIND <= at <= NOW + DEVICE_CLOCK_MAX_AHEAD
    assert plausible_device_time(at, NOW) is expected
