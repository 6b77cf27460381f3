"""The hub store on both engines (the same tests, parametrized): each uid once, alerts at their
highest revision, the fleet registry, migrations, and concurrent workers on one database."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from device_drivers.records import Quality, Vital
from hub.errors import StoreError, StoreOperatorError
from hub.schema import LATEST
from hub.store import PAGE_SIZE, SQLITE_FILE, HubStore, IngestResult, open_store, redact_url
from tests.hub.helpers import T0, new_schema, reading, readings, with_database

GW = "gw-0001"


@dataclass(frozen=True)
class Alert:
    alert_id: str
    rev: int
    payload: dict[str, object]


def test_ingest_stores_each_uid_once(store: HubStore) -> None:
    assert store.ingest(GW, "b1", readings(GW, range(10))) == IngestResult(10, 0)
    assert store.ingest(GW, "b1", readings(GW, range(10))) == IngestResult(0, 10)
    assert store.ingest(GW, "b2", readings(GW, range(5, 15))) == IngestResult(5, 5)
    assert store.count_readings() == 15
    assert store.uids() == {f"{GW}:{i}" for i in range(15)}


def test_duplicates_inside_one_batch_count_once(store: HubStore) -> None:
    batch = readings(GW, [1, 2, 2, 3, 1])
    assert store.ingest(GW, "b1", batch) == IngestResult(3, 2)
    assert store.count_readings() == 3


def test_empty_batch(store: HubStore) -> None:
    assert store.ingest(GW, "b0", []) == IngestResult(0, 0)
    assert store.ingest_alerts(GW, "a0", []) == IngestResult(0, 0)


def test_readings_round_trip_every_field(store: HubStore) -> None:
    r = reading(
        GW,
        7,
        vital=Vital.BODY_TEMP,
        value=37.8,
        patient_id=None,
        flags=frozenset({Quality.CLOCK_UNSYNCED, Quality.QUESTIONABLE}),
        extra=(("site", "oral"), ("alarm", True), ("n", 3), ("q", 0.5)),
        clock_from_device=False,
    )
    store.ingest(GW, "batch-7", [r], now=T0 + timedelta(hours=1))
    [got] = list(store.iter_readings())
    assert got.gateway_id == GW
    assert got.batch_id == "batch-7"
    assert got.ingested_at == T0 + timedelta(hours=1)
    assert got.reading.to_json() == {**r.to_json(), "extra": sorted([list(kv) for kv in r.extra])}
    assert got.reading.measured_at.utcoffset() == timedelta(0)


def test_iter_readings_orders_by_gateway_and_seq_and_pages(store: HubStore) -> None:
    n = PAGE_SIZE + 7
    store.ingest("gw-b", "b1", readings("gw-b", range(n)))
    store.ingest("gw-a", "b2", readings("gw-a", range(3)))
    got = [(s.gateway_id, s.reading.seq) for s in store.iter_readings()]
    assert got == [("gw-a", i) for i in range(3)] + [("gw-b", i) for i in range(n)]
    assert store.count_readings("gw-a") == 3
    assert store.uids("gw-a") == {"gw-a:0", "gw-a:1", "gw-a:2"}


def test_iter_readings_since_is_the_ingest_time(store: HubStore) -> None:
    store.ingest(GW, "old", readings(GW, range(3)), now=T0)
    store.ingest(GW, "new", readings(GW, range(3, 6)), now=T0 + timedelta(days=1))
    since = [s.reading.seq for s in store.iter_readings(since=T0 + timedelta(hours=1))]
    assert since == [3, 4, 5]
    assert len(list(store.iter_readings(since=T0))) == 6


def test_alerts_keep_the_highest_revision(store: HubStore) -> None:
    a1 = Alert("al-1", 1, {"kind": "news2", "level": "medium", "state": "raised"})
    a3 = Alert("al-1", 3, {"kind": "news2", "level": "high", "state": "escalated"})
    a2 = Alert("al-1", 2, {"kind": "news2", "level": "medium", "state": "acknowledged"})
    assert store.ingest_alerts(GW, "a1", [a1]) == IngestResult(1, 0)
    assert store.ingest_alerts(GW, "a2", [a3, a2]) == IngestResult(1, 1)  # in-batch: newest wins
    assert store.ingest_alerts(GW, "a3", [a2]) == IngestResult(0, 1)  # older: ignored
    assert store.ingest_alerts(GW, "a3", [a3]) == IngestResult(0, 1)  # same: duplicate
    [stored] = store.alerts()
    assert (stored.alert_id, stored.rev, stored.payload["level"], stored.batch_id) == ("al-1", 3, "high", "a2")


def test_another_gateway_cannot_overwrite_an_alert(store: HubStore) -> None:
    store.ingest_alerts(GW, "a1", [Alert("al-1", 1, {"level": "high"})])
    assert store.ingest_alerts("gw-evil", "x", [Alert("al-1", 99, {"level": "low"})]) == IngestResult(0, 1)
    [stored] = store.alerts()
    assert (stored.gateway_id, stored.rev) == (GW, 1)
    assert store.alerts("gw-evil") == []


def _beat(online: bool, sent_at: datetime, **extra: object) -> dict[str, object]:
    return {"v": 1, "type": "status", "online": online, "sent_at": sent_at.isoformat(), **extra}


WILL = {"v": 1, "type": "status", "online": False}


def test_fleet_registry_keeps_the_last_heartbeat_and_since_when(store: HubStore) -> None:
    m = timedelta(minutes=1)
    store.record_status(GW, _beat(True, T0, backlog={"pending": 5}), province="hn", now=T0)
    store.record_status(GW, _beat(True, T0 + m, backlog={"pending": 2}), now=T0 + m)
    store.record_status("gw-0002", _beat(True, T0), province="hn", now=T0)
    a, b = store.gateways()
    assert (a.gateway_id, a.province, a.online, a.last_seen, a.since) == (GW, "hn", True, T0 + m, T0)
    assert a.status["backlog"] == {"pending": 2}
    assert (b.gateway_id, b.online) == ("gw-0002", True)
    # the last will: offline since the broker said so; the heartbeat before it and last_seen stay
    store.record_status(GW, WILL, now=T0 + 3 * m)
    [a] = store.gateways(province="hn")[:1]
    assert (a.online, a.since, a.last_seen, a.status["backlog"]) == (False, T0 + 3 * m, T0 + m, {"pending": 2})
    store.record_status(GW, WILL, now=T0 + 4 * m)  # a second copy (another worker) changes nothing
    assert store.gateways()[0].since == T0 + 3 * m
    # a replayed copy of an older heartbeat is ignored; a newer one brings it back online
    store.record_status(GW, _beat(True, T0, backlog={"pending": 9}), now=T0 + 5 * m, replay=True)
    assert (store.gateways()[0].online, store.gateways()[0].status["backlog"]) == (False, {"pending": 2})
    store.record_status(GW, _beat(True, T0 + 6 * m), now=T0 + 6 * m, seen=T0 + 6 * m)
    a = store.gateways()[0]
    assert (a.online, a.since, a.last_seen) == (True, T0 + 6 * m, T0 + 6 * m)
    assert store.gateways(province="elsewhere") == []
    # a live heartbeat counts even when the gateway's clock stepped back (no RTC, NTP correcting)
    store.record_status(GW, _beat(True, T0 - 60 * m, backlog={"pending": 1}), now=T0 + 7 * m)
    a = store.gateways()[0]
    assert (a.online, a.last_seen, a.status["backlog"]) == (True, T0 + 7 * m, {"pending": 1})


def test_a_will_from_an_unknown_gateway_is_a_row(store: HubStore) -> None:
    store.record_status(GW, WILL, province="hn", now=T0)
    [g] = store.gateways()
    assert (g.online, g.since, g.last_seen, g.status) == (False, T0, T0, WILL)


def test_schema_1_registry_rows_migrate(tmp_path: Path) -> None:
    from hub.schema import MIGRATIONS

    directory = tmp_path / "hub"
    directory.mkdir()
    conn = sqlite3.connect(directory / SQLITE_FILE)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT, applied_at TEXT)")
    for statement in MIGRATIONS[0].sqlite:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'v1', '2026-01-01T00:00:00+00:00')")
    conn.execute(
        "INSERT INTO gateways VALUES (?, 'hn', 1, ?, ?)", (GW, T0.isoformat(timespec="microseconds"), '{"online":true}')
    )
    conn.commit()
    conn.close()
    with open_store(directory) as s:
        assert s.schema_version() == LATEST == 4  # 3: commands, 4: fleet_samples
        [g] = s.gateways()
        assert (g.online, g.since, g.last_seen) == (True, None, T0)
        s.record_status(GW, _beat(True, T0 + timedelta(seconds=5)), now=T0 + timedelta(seconds=5))
        assert s.gateways()[0].since == T0 + timedelta(seconds=5)


def test_migrations_are_recorded_and_reopening_is_idempotent(store_spec: str) -> None:
    with open_store(store_spec) as s:
        assert s.schema_version() == LATEST
        s.ingest(GW, "b1", readings(GW, range(3)))
    with open_store(store_spec) as s:
        assert s.schema_version() == LATEST
        assert s.count_readings() == 3


def test_a_schema_newer_than_the_code_is_refused(store_spec: str) -> None:
    with open_store(store_spec) as s:
        s.close()
    if store_spec.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store_spec, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
    else:
        with sqlite3.connect(Path(store_spec) / SQLITE_FILE) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', '2099-01-01')")
    with pytest.raises(StoreOperatorError, match="schema version 999"):
        open_store(store_spec)


def test_overlapping_batches_from_two_workers_store_each_uid_once(store_spec: str) -> None:
    """Two workers (two connections) ingest overlapping batches at the same time, in opposite
    orders (the deadlock-prone case): each uid once, and the stored counts add up exactly."""
    total = 3000
    batches = [readings(GW, range(start, min(start + 200, total))) for start in range(0, total, 100)]
    results: list[list[IngestResult]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(i: int) -> None:
        try:
            with open_store(store_spec) as s:
                barrier.wait()
                order = batches if i == 0 else [list(reversed(b)) for b in reversed(batches)]
                for n, b in enumerate(order):
                    results[i].append(s.ingest(GW, f"w{i}-{n}", b))
        except BaseException as exc:
            errors.append(exc)

    with open_store(store_spec):
        pass  # migrate once before the race (workers racing to migrate is tested below)
    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with open_store(store_spec) as s:
        assert s.count_readings() == total
        assert s.uids() == {f"{GW}:{i}" for i in range(total)}
    stored = sum(r.stored for rs in results for r in rs)
    assert stored == total
    assert sum(r.stored + r.duplicates for rs in results for r in rs) == 2 * sum(len(b) for b in batches)


def test_one_store_shared_by_threads(store: HubStore) -> None:
    def work(offset: int) -> None:
        for start in range(0, 500, 50):
            store.ingest(GW, f"t{offset}-{start}", readings(GW, range(start + offset, start + offset + 60)))

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 5, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert store.uids() == {f"{GW}:{i}" for i in range(0, 450 + 10 + 60)}


def test_workers_racing_to_create_the_schema(store_spec: str) -> None:
    errors: list[BaseException] = []

    def open_and_ingest(i: int) -> None:
        try:
            with open_store(store_spec) as s:
                s.ingest(GW, f"b{i}", readings(GW, range(10)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_ingest, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with open_store(store_spec) as s:
        assert s.count_readings() == 10
        assert s.schema_version() == LATEST


# -- SQLite only ----------------------------------------------------------------------------


def test_sqlite_file_is_private_wal_and_synchronous_full(tmp_path: Path) -> None:
    directory = tmp_path / "hub"
    with open_store(directory) as s:
        s.ingest(GW, "b1", readings(GW, range(3)))
        assert s.location == str(directory)
        assert s.backend == "sqlite"
        conn = s._conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert stat.S_IMODE(os.stat(directory / SQLITE_FILE).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_sqlite_not_a_directory_and_missing_store_are_operator_errors(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreOperatorError, match="not a directory"):
        open_store(f)
    with pytest.raises(StoreOperatorError, match="no hub store"):
        open_store(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_sqlite_garbage_file_is_an_operator_error(tmp_path: Path) -> None:
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / SQLITE_FILE).write_bytes(b"not a database" * 100)
    with pytest.raises(StoreOperatorError, match="unusable"):
        open_store(tmp_path / "hub")


# -- PostgreSQL only ------------------------------------------------------------------------


def test_postgres_missing_database_is_an_operator_error(pg_database: str) -> None:
    with pytest.raises(StoreOperatorError):
        open_store(with_database(pg_database, "hub_test_does_not_exist"))


def test_postgres_server_away_is_retryable() -> None:
    with pytest.raises(StoreError) as info:
        open_store("postgresql://postgres@127.0.0.1:1/hub")
    assert not isinstance(info.value, StoreOperatorError)


def test_postgres_reconnects_after_the_connection_is_killed(pg_database: str) -> None:
    import psycopg

    store_spec = new_schema(pg_database)

    with open_store(store_spec) as s:
        s.ingest(GW, "b1", readings(GW, range(3)))
        pid = s._conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(store_spec, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreError):
            s.ingest(GW, "b2", readings(GW, range(3, 6)))  # this call finds the connection dead
        assert s.ingest(GW, "b2", readings(GW, range(3, 6))) == IngestResult(3, 0)  # the next reconnects
        assert s.count_readings() == 6


def test_redact_url_hides_the_password() -> None:
    assert redact_url("postgresql://hub:s3cret@db:5432/hub") == "postgresql://hub:***@db:5432/hub"
    assert redact_url("postgresql://hub@db/hub") == "postgresql://hub@db/hub"
