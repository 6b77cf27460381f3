"""Forward migrations, tested from every earlier schema version with data written at that version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.store import SchemaError
from edge_agent.store.schema import LATEST, MIGRATIONS, migrate

from .conftest import T0, OpenStore, make_reading

TABLES_BY_VERSION = {1: ["meta", "data_keys", "readings"], 2: ["alerts"], 3: ["drop_counts"], 4: ["batches"]}


def _reference(open_store: OpenStore, tmp_path: Path) -> Path:
    """A store at the latest version holding readings and an alert, sealed with the shared keystore."""
    s = open_store(path=tmp_path / "ref.sqlite3")
    s.submit([make_reading(i, patient_id="P-A" if i % 2 else "P-B") for i in range(1, 31)]).result(5)
    s.save_alert("al-1", {"alert_id": "al-1", "state": "raised"}, updated_at=T0)
    s.close()
    return s.path


@pytest.mark.parametrize("version", [v for v, _, _ in MIGRATIONS if v < LATEST])
def test_upgrade_from_every_earlier_version(open_store: OpenStore, tmp_path: Path, version: int) -> None:
    ref = _reference(open_store, tmp_path)
    old = tmp_path / f"v{version}.sqlite3"
    conn = sqlite3.connect(old, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    assert migrate(conn, now=T0, target=version) == list(range(1, version + 1))
    # copy the rows that existed at that version (the sealed format is the same)
    conn.execute("ATTACH ? AS ref", (str(ref),))
    present = {t for v, names in TABLES_BY_VERSION.items() if v <= version for t in names}
    for table in present:  # the columns the table had at that version (alerts grew dead_us in 4)
        cols = ", ".join(r[1] for r in conn.execute(f"PRAGMA main.table_info({table})"))
        conn.execute(f"INSERT OR REPLACE INTO main.{table} ({cols}) SELECT {cols} FROM ref.{table}")
    conn.execute("DELETE FROM main.meta WHERE key IN ('indexed_upto', 'max_seq')")  # keys newer than v1-2
    if version >= 3:  # migration 3 made the key; the index tables were not copied, so nothing is indexed
        conn.execute("INSERT INTO main.meta (key, value) VALUES ('indexed_upto', '0')")
    conn.execute("UPDATE main.meta SET value = '1' WHERE key = 'clean_shutdown'")
    conn.execute("DETACH ref")
    conn.close()

    s = open_store(path=old)
    v = sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0]
    assert v == LATEST
    applied = [r[0] for r in sqlite3.connect(old).execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert applied == list(range(1, LATEST + 1))
    assert [r.seq for r in s.pending_batch(100)] == list(range(1, 31))
    assert [r.seq for r in s.recent(since=T0, patient_id="P-A")] == list(range(1, 31, 2))
    assert s.last_seq == 30
    if version >= 2:
        assert s.load_alerts() == [{"alert_id": "al-1", "state": "raised"}]
        assert [(a.alert_id, a.rev) for a in s.pending_alerts(10)] == [("al-1", 1)]
    # the outbox of the new version works on the old rows
    batch = s.lease(10)
    assert [r.seq for r in batch.readings] == list(range(1, 11))
    assert s.ack(batch.id) == 10 and s.stats().pending == 20
    # it keeps working after the upgrade, and the old rows get indexed
    s.submit([make_reading(31, patient_id="P-A")]).result(5)
    s.close()
    s = open_store(path=old)
    assert [r.seq for r in s.recent(since=T0, patient_id="P-A")] == [*range(1, 31, 2), 31]
    assert s.stats().decrypt_failures == 0 and s.stats().pending == 21


def test_fresh_database_is_at_latest(open_store: OpenStore) -> None:
    s = open_store()
    assert sqlite3.connect(s.path).execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert sqlite3.connect(s.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(open_store: OpenStore, tmp_path: Path) -> None:
    s = open_store()
    s.close()
    conn = sqlite3.connect(s.path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        open_store()


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    migrate(conn, now=T0, target=1)
    conn.execute("CREATE TABLE alerts (x)")  # in the way of migration 2
    with pytest.raises(SchemaError, match="version 2"):
        migrate(conn, now=T0)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == 1


def test_version_7_keeps_the_leased_batches_without_their_unique_index(open_store: OpenStore, tmp_path: Path) -> None:
    """Issue 14: the unique index on ``batches.batch_id`` cost a WAL frame at every lease and ack."""
    s = open_store(path=tmp_path / "b.sqlite3")
    s.submit([make_reading(i) for i in range(1, 21)]).result(5)
    leased = s.lease(10)
    s.close()
    conn = sqlite3.connect(s.path, isolation_level=None)
    assert conn.execute("PRAGMA index_list(batches)").fetchall() == []
    # the same file as version 6 left it: the table with its unique index
    conn.execute("BEGIN")
    conn.execute(
        "CREATE TABLE b6 (n INTEGER PRIMARY KEY, batch_id TEXT NOT NULL UNIQUE, leased_us INTEGER NOT NULL, "
        "attempt INTEGER NOT NULL, seqs TEXT NOT NULL)"
    )
    conn.execute("INSERT INTO b6 SELECT * FROM batches")
    conn.execute("DROP TABLE batches")
    conn.execute("ALTER TABLE b6 RENAME TO batches")
    conn.execute("DELETE FROM schema_migrations WHERE version = 7")
    conn.execute("PRAGMA user_version = 6")
    conn.execute("COMMIT")
    assert len(conn.execute("PRAGMA index_list(batches)").fetchall()) == 1
    conn.close()
    again = open_store(path=s.path)
    resent = again.lease(10)
    assert resent.id == leased.id and [r.seq for r in resent.readings] == list(range(1, 11))
    assert again.ack(resent.id) == 10 and again.stats().pending == 10
    conn = sqlite3.connect(s.path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
    assert conn.execute("PRAGMA index_list(batches)").fetchall() == []
    conn.close()
