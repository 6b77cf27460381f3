"""The pipeline on a real encrypted store: a device clock far from the gateway's is not believed,
and ``submit`` tells its caller, through a future, how many readings were committed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.records import UNITS, Measurement, Quality, Reading, Vital
from edge_agent.alerts import Alert
from edge_agent.events import EventHub, ReadingsStored
from edge_agent.pipeline import (
    DEVICE_CLOCK_MAX_AHEAD,
    DEVICE_CLOCK_MAX_BEHIND,
    Pipeline,
    plausible_device_time,
    scoring_rounds,
)
from edge_agent.store import BufferStore
from tests.fixtures import real_store

NOW = datetime(2029, 7, 1, 12, 0, tzinfo=UTC)  # any date: every clock here is pinned


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BufferStore]:
    with real_store(tmp_path, gateway_id="gw-p", clock=lambda: NOW) as s:
        yield s


def spo2(at: datetime | None, value: float = 97.0) -> Measurement:
    return Measurement(Vital.SPO2, value, "%", "ble-plx-spot", measured_at=at)


def pulse(at: datetime | None) -> Measurement:
    return Measurement(Vital.HEART_RATE, 72.0, "/min", "ble-plx-spot", measured_at=at)


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


class RecordingScorer:
    """A scorer that records what it is asked to score (the pipeline's contract, not a model)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def on_readings(self, readings: Sequence[Reading], now: datetime) -> list[Alert]:
        self.calls.append([r.device_id for r in readings])
        return []

    def tick(self, now: datetime) -> list[Alert]:
        return []

    def status(self) -> dict[str, object]:
        return {}


def test_one_commit_batch_is_published_and_scored_once(tmp_path: Path) -> None:
    """Three devices' lines in one group commit: one ReadingsStored event, one scoring call."""
    events = EventHub()
    stored: list[ReadingsStored] = []
    events.subscribe(lambda e: stored.append(e) if isinstance(e, ReadingsStored) else None)
    scorer = RecordingScorer()
    with real_store(tmp_path, gateway_id="gw-p", clock=lambda: NOW) as s:
        pipeline = Pipeline(gateway_id="gw-p", store=s, scorer=scorer, events=events, clock=lambda: NOW)

        async def main() -> list[int]:
            futures = [pipeline.submit(dev, [spo2(None), pulse(None)], NOW) for dev in ("ox-1", "ox-2", "ox-3")]
            s.flush(10)  # cuts the (1 s) window short: all three share one transaction
            return list(await asyncio.gather(*(f for f in futures if f is not None)))

        assert asyncio.run(main()) == [2, 2, 2]
    assert scorer.calls == [["ox-1", "ox-1", "ox-2", "ox-2", "ox-3", "ox-3"]]
    assert pipeline.scoring_calls == 1
    assert len(stored) == 1 and len(stored[0].readings) == 6
    assert pipeline.counters.stored == 6 and pipeline.inflight == 0


def test_a_failing_scorer_does_not_leave_callers_waiting(tmp_path: Path) -> None:
    class Broken(RecordingScorer):
        def on_readings(self, readings: Sequence[Reading], now: datetime) -> list[Alert]:
            raise ZeroDivisionError

    with real_store(tmp_path, gateway_id="gw-p", clock=lambda: NOW) as s:
        pipeline = Pipeline(gateway_id="gw-p", store=s, scorer=Broken(), events=EventHub(), clock=lambda: NOW)

        async def main() -> int:
            future = pipeline.submit("ox-1", [spo2(None)], NOW)
            assert future is not None
            return await asyncio.wait_for(future, 10)

        assert asyncio.run(main()) == 1  # stored: the scorer's failure is logged, not the caller's


def test_a_device_sending_a_vital_twice_in_one_batch_is_scored_in_rounds(tmp_path: Path) -> None:
    """Each reading is scored as the latest of its kind: the second SpO2 in a later round."""
    scorer = RecordingScorer()
    seen: list[list[float]] = []
    scorer.on_readings = lambda readings, now: seen.append([r.value for r in readings]) or []  # type: ignore[method-assign]
    with real_store(tmp_path, gateway_id="gw-p", clock=lambda: NOW) as s:
        pipeline = Pipeline(gateway_id="gw-p", store=s, scorer=scorer, events=EventHub(), clock=lambda: NOW)

        async def main() -> None:
            a = pipeline.submit("ox-1", [spo2(None, 95.0), pulse(None)], NOW)
            b = pipeline.submit("ox-1", [spo2(None, 90.0)], NOW)
            c = pipeline.submit("ox-2", [spo2(None, 97.0)], NOW)
            s.flush(10)
            await asyncio.gather(*(f for f in (a, b, c) if f is not None))

        asyncio.run(main())
    assert seen == [[95.0, 72.0, 97.0], [90.0]]


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([Vital.SPO2, Vital.HEART_RATE])), max_size=12))
def test_scoring_rounds_keep_every_reading_once_and_in_order(keys: list[tuple[str, Vital]]) -> None:
    readings = [
        Reading.from_measurement(
            Measurement(v, 97.0 if v is Vital.SPO2 else 72.0, UNITS[v], "ble-plx-spot"),
            gateway_id="gw-p",
            seq=i + 1,
            device_id=dev,
            received_at=NOW,
            patient_id=None,
        )
        for i, (dev, v) in enumerate(keys)
    ]
    rounds = scoring_rounds(readings)
    assert sorted(r.seq for rnd in rounds for r in rnd) == [r.seq for r in readings]
    for rnd in rounds:
        assert len({(r.device_id, r.vital) for r in rnd}) == len(rnd)  # one per device and vital
        assert [r.seq for r in rnd] == sorted(r.seq for r in rnd)
    # the k-th reading of a (device, vital) is in round k
    for dev, v in set(keys):
        mine = [r.seq for r in readings if (r.device_id, r.vital) == (dev, v)]
        assert [next(k for k, rnd in enumerate(rounds) if seq in {r.seq for r in rnd}) for seq in mine] == list(
            range(len(mine))
        )
