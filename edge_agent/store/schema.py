"""The versioned schema: forward migrations, applied in order at open, each in one transaction.

Version history (never edit a released step; add a new one):

1. ``meta``, ``data_keys`` (key ids and a sealed key-check value per key), ``readings``.
2. ``alerts``: the alert lane, sealed like readings, with a revision for safe acknowledgement.
3. ``drop_counts`` (per vital and reason) and the deferred index tables ``ix_patient`` and
   ``ix_time`` (filled in batches by the writer, so a single-reading commit touches one page).
4. ``batches`` (the outbox's leases: batch id -> seqs, so an acknowledgement after a restart
   marks exactly the readings of that batch) and ``alerts.dead_us`` (an alert revision that
   failed to open, out of the alert outbox). Readings gain the state ``synced = 2`` (dead letter:
   failed to open, never leased again), which needs no schema change.
5. ``visits``: the dashboard's visits, sealed (the patient identifier is never in clear).
6. ``acked``: seq ranges the hub acknowledged (edge_agent.store.acked: an acknowledgement no
   longer rewrites every row of its batch; the ranges are the record, never folded into the rows).
7. ``batches`` without the unique index on ``batch_id`` (issue 14: the index was one more WAL
   frame at every lease and every ack; the table holds the few batches in flight or released,
   so a lookup by id scans a handful of rows). Batch ids are random; the lease inserts each once.

Applied versions are recorded in ``schema_migrations`` and ``PRAGMA user_version``. The steps are
plain SQL on the writer's ``sqlite3`` connection (issue 14: sqlite-utils, once the runner here,
cost the agent 4.1-4.6 MiB resident for three calls, measured with benchmarks/bench_station.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime

from edge_agent.store.errors import SchemaError


def _v1(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        """CREATE TABLE data_keys (
            key_id INTEGER PRIMARY KEY,
            created_us INTEGER NOT NULL,
            key_check BLOB NOT NULL,
            cipher INTEGER NOT NULL,
            destroyed_us INTEGER
        )"""
    )
    db.execute(
        """CREATE TABLE readings (
            seq INTEGER PRIMARY KEY,
            measured_us INTEGER NOT NULL,
            received_delta_us INTEGER NOT NULL,  -- received time minus measured time (0 when equal: no bytes)
            vital INTEGER NOT NULL,
            device_id TEXT NOT NULL,
            pidx BLOB,
            key_id INTEGER NOT NULL,
            cipher INTEGER NOT NULL,
            synced INTEGER NOT NULL DEFAULT 0,
            payload BLOB NOT NULL
        )"""
    )


def _v2(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            rev INTEGER NOT NULL,
            updated_us INTEGER NOT NULL,
            is_open INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            cipher INTEGER NOT NULL,
            synced_us INTEGER,
            payload BLOB NOT NULL
        )"""
    )
    db.execute("CREATE INDEX alerts_pending ON alerts (updated_us) WHERE synced_us IS NULL")


def _v3(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE drop_counts (
            vital TEXT NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (vital, reason)
        ) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE ix_patient (
            pidx BLOB NOT NULL, measured_us INTEGER NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (pidx, measured_us, seq)
        ) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE ix_time (
            measured_us INTEGER NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (measured_us, seq)
        ) WITHOUT ROWID"""
    )
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('indexed_upto', '0')")


def _v4(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE batches (
            n INTEGER PRIMARY KEY,          -- creation order: released batches are re-sent oldest first
            batch_id TEXT NOT NULL UNIQUE,
            leased_us INTEGER NOT NULL,     -- when last handed out (store clock)
            attempt INTEGER NOT NULL,       -- times handed out
            seqs TEXT NOT NULL              -- the batch's seqs as ranges, e.g. '1-500,502'
        )"""
    )
    db.execute("ALTER TABLE alerts ADD COLUMN dead_us INTEGER")


def _v5(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE visits (
            visit_id TEXT PRIMARY KEY,      -- random, shown in no URL; says nothing of the patient
            rev INTEGER NOT NULL,
            updated_us INTEGER NOT NULL,
            is_open INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            cipher INTEGER NOT NULL,
            payload BLOB NOT NULL           -- sealed: patient id and kind, age band, devices, observations
        )"""
    )


def _v6(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE acked (
            lo INTEGER PRIMARY KEY,         -- first seq of a run the hub acknowledged
            hi INTEGER NOT NULL             -- last seq of it (inclusive); runs are disjoint
        )"""
    )


def _v7(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE batches_v7 (
            n INTEGER PRIMARY KEY,          -- creation order: released batches are re-sent oldest first
            batch_id TEXT NOT NULL,         -- random; looked up by a scan of the few rows
            leased_us INTEGER NOT NULL,     -- when last handed out (store clock)
            attempt INTEGER NOT NULL,       -- times handed out
            seqs TEXT NOT NULL              -- the batch's seqs as ranges, e.g. '1-500,502'
        )"""
    )
    db.execute(
        "INSERT INTO batches_v7 (n, batch_id, leased_us, attempt, seqs) "
        "SELECT n, batch_id, leased_us, attempt, seqs FROM batches"
    )
    db.execute("DROP TABLE batches")
    db.execute("ALTER TABLE batches_v7 RENAME TO batches")


Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: tuple[tuple[int, str, Migration], ...] = (
    (1, "meta, data_keys, readings", _v1),
    (2, "alerts lane", _v2),
    (3, "drop counts, deferred index tables", _v3),
    (4, "outbox batches, alert dead letters", _v4),
    (5, "dashboard visits", _v5),
    (6, "acknowledged seq ranges", _v6),
    (7, "batches without a unique index", _v7),
)
LATEST = MIGRATIONS[-1][0]


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, now: datetime, target: int = LATEST) -> list[int]:
    """Apply every migration above the database's version up to ``target``; returns the versions applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``); each step is one transaction.
    """
    have = current_version(conn)
    if have > LATEST:
        raise SchemaError(f"database schema version {have} is newer than this agent understands ({LATEST})")
    applied = []
    for version, name, step in MIGRATIONS:
        if version <= have or version > target:
            continue
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            step(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, now.isoformat()),
            )
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SchemaError(f"migration to version {version} ({name}) failed: {exc}") from exc
        applied.append(version)
    return applied
