"""The hub store on SQLite: ``<dir>/hub.sqlite3``, WAL, ``synchronous=FULL``, mode 0600.

Writers take the database lock at the start of their transaction (``BEGIN IMMEDIATE``) and wait
for it up to ``busy_timeout``; several processes may share the file (one host only: SQLite's
locks do not work over network filesystems). Dedupe is the primary key's: ``INSERT … ON CONFLICT
(uid) DO NOTHING``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device_drivers.records import Reading
from hub.errors import StoreError, StoreOperatorError
from hub.schema import LATEST, MIGRATIONS, SQLITE_MIGRATIONS_TABLE
from hub.store import (
    PAGE_SIZE,
    READING_COLUMN_LIST,
    SQLITE_FILE,
    AlertLike,
    GatewayRecord,
    HubStore,
    IngestResult,
    StoredAlert,
    StoredReading,
    alert_fields,
    newest_alerts,
    stored_reading_from_row,
    utc,
)

BUSY_TIMEOUT_MS = 30_000
PRIVATE_MODE = 0o600

_READING_COLUMNS = READING_COLUMN_LIST
_INSERT_READING = (
    f"INSERT INTO readings ({_READING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (uid) DO NOTHING"
)
_UPSERT_ALERT = (
    "INSERT INTO alerts (alert_id, gateway_id, rev, kind, level, state, payload, batch_id, ingested_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (alert_id) DO UPDATE SET rev = excluded.rev, kind = excluded.kind, level = excluded.level, "
    "state = excluded.state, payload = excluded.payload, batch_id = excluded.batch_id, "
    "ingested_at = excluded.ingested_at "
    "WHERE excluded.rev > alerts.rev AND excluded.gateway_id = alerts.gateway_id"
)


def iso(dt: datetime) -> str:
    """Fixed-width UTC text: text order is time order."""
    return utc(dt).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


class SqliteStore(HubStore):
    backend = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path
        self._lock = threading.Lock()
        self.location = str(path.parent)

    @classmethod
    def open(cls, directory: Path, *, create: bool = True) -> SqliteStore:
        if directory.exists() and not directory.is_dir():
            raise StoreOperatorError(
                f"hub store {directory} is not a directory", "give a directory or a postgresql:// URL"
            )
        path = directory / SQLITE_FILE
        if not create and not path.exists():
            raise StoreOperatorError(f"no hub store in {directory} (no {SQLITE_FILE})", "check --store")
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_private(path)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        except (OSError, sqlite3.Error) as exc:
            raise StoreOperatorError(
                f"cannot open hub store {path}: {exc}", "check the directory and its permissions"
            ) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreOperatorError(f"{path}: cannot use WAL (journal_mode={mode})", "use a local filesystem")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            store = cls(conn, path)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreOperatorError(f"hub store {path} is unusable: {exc}", "restore it from a backup") from exc
        except BaseException:
            conn.close()
            raise
        return store

    # -- schema -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(SQLITE_MIGRATIONS_TABLE)
            applied = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
            if applied and max(applied) > LATEST:
                raise StoreOperatorError(
                    f"hub store {self._path} has schema version {max(applied)}, this hub knows up to {LATEST}",
                    "run a newer edge-hub",
                )
            for m in MIGRATIONS:
                if m.version in applied:
                    continue
                for statement in m.sqlite:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.description, iso(datetime.now(UTC))),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- writes -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"hub store busy: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError(f"hub store write failed: {exc}") from exc
            except BaseException:
                _rollback(conn)
                raise

    def ingest(
        self, gateway_id: str, batch_id: str, readings: Sequence[Reading], *, now: datetime | None = None
    ) -> IngestResult:
        if not readings:
            return IngestResult(0, 0)
        at = iso(now or datetime.now(UTC))
        rows = [
            (
                r.uid,
                gateway_id,
                r.seq,
                str(r.vital),
                r.value,
                r.unit,
                iso(r.measured_at),
                iso(r.received_at),
                r.device_id,
                r.source_format,
                r.patient_id,
                _json(sorted(str(f) for f in r.flags)),
                _json(dict(r.extra)),
                int(r.clock_from_device),
                batch_id,
                at,
            )
            for r in readings
        ]
        with self._write() as conn:
            cur = conn.executemany(_INSERT_READING, rows)
            stored = cur.rowcount
        return IngestResult(stored, len(rows) - stored)

    def ingest_alerts(
        self, gateway_id: str, batch_id: str, alerts: Sequence[AlertLike], *, now: datetime | None = None
    ) -> IngestResult:
        if not alerts:
            return IngestResult(0, 0)
        at = iso(now or datetime.now(UTC))
        rows = [
            (a.alert_id, gateway_id, a.rev, *alert_fields(a.payload), _json(dict(a.payload)), batch_id, at)
            for a in newest_alerts(alerts)
        ]
        with self._write() as conn:
            stored = conn.executemany(_UPSERT_ALERT, rows).rowcount
        return IngestResult(stored, len(alerts) - stored)

    def record_status(
        self, gateway_id: str, doc: Mapping[str, object], *, province: str | None = None, now: datetime | None = None
    ) -> None:
        at = iso(now or datetime.now(UTC))
        with self._write() as conn:
            conn.execute(
                "INSERT INTO gateways (gateway_id, province, online, last_seen, status) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (gateway_id) DO UPDATE SET province = coalesce(excluded.province, gateways.province), "
                "online = excluded.online, last_seen = excluded.last_seen, status = excluded.status",
                (gateway_id, province, int(bool(doc.get("online"))), at, _json(dict(doc))),
            )

    # -- reads --------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"hub store read failed: {exc}") from exc

    def gateways(self) -> list[GatewayRecord]:
        rows = self._query("SELECT gateway_id, province, online, last_seen, status FROM gateways ORDER BY gateway_id")
        return [GatewayRecord(g, p, bool(o), from_iso(s), json.loads(d)) for g, p, o, s, d in rows]

    def count_readings(self, gateway_id: str | None = None) -> int:
        if gateway_id is None:
            return int(self._query("SELECT count(*) FROM readings")[0][0])
        return int(self._query("SELECT count(*) FROM readings WHERE gateway_id = ?", (gateway_id,))[0][0])

    def uids(self, gateway_id: str | None = None) -> set[str]:
        if gateway_id is None:
            return {r[0] for r in self._query("SELECT uid FROM readings")}
        return {r[0] for r in self._query("SELECT uid FROM readings WHERE gateway_id = ?", (gateway_id,))}

    def iter_readings(self, since: datetime | None = None) -> Iterator[StoredReading]:
        where = "" if since is None else "AND ingested_at >= ?"
        extra_params: tuple[Any, ...] = () if since is None else (iso(since),)
        key: tuple[str, int, str] = ("", -(2**63), "")
        while True:
            rows = self._query(
                f"SELECT {_READING_COLUMNS} FROM readings WHERE (gateway_id, seq, uid) > (?, ?, ?) {where} "
                f"ORDER BY gateway_id, seq, uid LIMIT {PAGE_SIZE}",
                (*key, *extra_params),
            )
            for row in rows:
                yield _stored_reading(row)
            if len(rows) < PAGE_SIZE:
                return
            last = rows[-1]
            key = (last[1], last[2], last[0])

    def alerts(self, gateway_id: str | None = None) -> list[StoredAlert]:
        sql = "SELECT alert_id, gateway_id, rev, payload, batch_id, ingested_at FROM alerts"
        rows = (
            self._query(sql + " ORDER BY alert_id")
            if gateway_id is None
            else self._query(sql + " WHERE gateway_id = ? ORDER BY alert_id", (gateway_id,))
        )
        return [StoredAlert(a, g, int(r), json.loads(p), b, from_iso(t)) for a, g, r, p, b, t in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _stored_reading(row: tuple[Any, ...]) -> StoredReading:
    return stored_reading_from_row(row, to_time=from_iso, from_json=json.loads)


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _create_private(path: Path) -> None:
    """Make ``path`` empty with mode 0600 if missing (SQLite gives its -wal and -shm the same)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)
