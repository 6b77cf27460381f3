"""The fleet's history (hub/fleet_history.py, schema 4): buckets, per-province counts, the
series the plot draws, and the sampler with a pinned clock on both engines (SQLite and
PostgreSQL): two web processes sampling the same bucket write one row, retention deletes the old
buckets only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.fleet import fleet_records
from hub.fleet_history import Sampler, bucket_of, samples_at, series
from hub.schema import LATEST, MIGRATIONS
from hub.store import FleetSample, HubStore
from tests.hub.helpers import T0
from tests.hub.test_fleet import beat, row

S = timedelta(seconds=1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_buckets_are_aligned_to_the_epoch() -> None:
    assert bucket_of(T0 + 59.9 * S, 60) == T0
    assert bucket_of(T0 + 60 * S, 60) == T0 + 60 * S
    assert bucket_of(datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC), 15) == datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        bucket_of(T0, 0)


def test_samples_count_each_province() -> None:
    rows = [
        row("gw-1", beat(pending=3, oldest_s=10.0), province="p01"),
        row("gw-2", beat(pending=5, oldest_s=9000.0), province="p01"),
        row("gw-3", beat(online=False), online=False, province="p02"),
        row("gw-4", beat(), province=""),
    ]
    got = samples_at(fleet_records(rows, T0), T0)
    assert got == [
        FleetSample(T0, "", 1, 1, 0, 0, 0, 0),
        FleetSample(T0, "p01", 2, 2, 0, 0, 8, 1),
        FleetSample(T0, "p02", 1, 0, 0, 1, 0, 0),
    ]
    points = series([*got, FleetSample(T0 + 60 * S, "p01", 2, 1, 0, 1, 2, 0)])
    assert [(p.at, p.gateways, p.online, p.pending) for p in points] == [(T0, 4, 3, 8), (T0 + 60 * S, 2, 1, 2)]
    assert [(p.online, p.pending) for p in series(got, "p02")] == [(0, 0)]


def test_migration_4_comes_after_the_commands_ledger() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    (m4,) = [m for m in MIGRATIONS if m.version == 4]
    assert "fleet_samples" in m4.sqlite[0] and "fleet_samples" in m4.postgresql[0]


def test_the_sampler_on_both_engines(store: HubStore) -> None:
    assert store.schema_version() == LATEST >= 4
    clock = Clock(T0 + 5 * S)
    store.record_status("gw-1", beat(sent_at=T0, pending=7, oldest_s=1.0), province="p01", now=T0)
    store.record_status("gw-2", beat(sent_at=T0), province="p02", now=T0)
    a = Sampler(store, clock, every_s=60, retention_s=3600)
    b = Sampler(store, clock, every_s=60, retention_s=3600)  # a second web process on the same store
    a.sample()
    store.record_status("gw-2", {"v": 1, "type": "status", "online": False}, province="p02", now=T0 + 6 * S)
    clock.now = T0 + 30 * S
    b.sample()  # the same bucket: refreshed, not doubled
    got = store.fleet_samples(T0 - 3600 * S)
    assert [(s.bucket_at, s.province, s.online, s.offline, s.pending) for s in got] == [
        (T0, "p01", 1, 0, 7),
        (T0, "p02", 0, 1, 0),
    ]
    assert a.next_delay() == 30.0
    clock.now = T0 + 3601 * S
    a.sample()  # the bucket of T0 is now older than the retention: gone
    got = store.fleet_samples(T0 - 3600 * S)
    assert {s.bucket_at for s in got} == {T0 + 3600 * S}
    assert a.deleted == 2
    assert [s.province for s in store.fleet_samples(T0, "p02")] == ["p02"]
    assert store.fleet_samples(T0 + 7200 * S) == []


def test_sampler_settings_are_checked(store: HubStore) -> None:
    with pytest.raises(ValueError):
        Sampler(store, Clock(T0), every_s=0)
    with pytest.raises(ValueError):
        Sampler(store, Clock(T0), every_s=60, retention_s=30)
