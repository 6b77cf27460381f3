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
from typing import Any, ClassVar

from device_drivers.records import Reading
from hub.errors import StoreError, StoreOperatorError
from hub.schema import LATEST, MIGRATIONS, SQLITE_MIGRATIONS_TABLE
from hub.store import (
    READING_COLUMN_LIST,
    SQLITE_FILE,
    AlertLike,
    FleetSample,
    IngestResult,
    alert_fields,
    newest_alerts,
    utc,
)
from hub.store_sql import (
    SqlStore,
    allocate_command_sql,
    dump_json,
    record_result_sql,
    upsert_alert_sql,
    upsert_fleet_sample_sql,
    upsert_gateway_sql,
)

BUSY_TIMEOUT_MS = 30_000
PRIVATE_MODE = 0o600

_READING_COLUMNS = READING_COLUMN_LIST
_INSERT_READING = (
    f"INSERT INTO readings ({_READING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (uid) DO NOTHING"
)
_UPSERT_ALERT = upsert_alert_sql("?")
_UPSERT_GATEWAY = upsert_gateway_sql("?")
_UPSERT_FLEET_SAMPLE = upsert_fleet_sample_sql("?")
_ALLOCATE_COMMAND = allocate_command_sql("?")
_RECORD_RESULT = record_result_sql("?")


def iso(dt: datetime) -> str:
    """Fixed-width UTC text: text order is time order."""
    return utc(dt).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


class SqliteStore(SqlStore):
    backend = "sqlite"
    placeholder: ClassVar[str] = "?"

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
        rows = self._reading_rows(gateway_id, batch_id, readings, now or datetime.now(UTC))
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
            (a.alert_id, gateway_id, a.rev, *alert_fields(a.payload), dump_json(dict(a.payload)), batch_id, at)
            for a in newest_alerts(alerts)
        ]
        with self._write() as conn:
            stored = conn.executemany(_UPSERT_ALERT, rows).rowcount
        return IngestResult(stored, len(alerts) - stored)

    def record_status(
        self,
        gateway_id: str,
        doc: Mapping[str, object],
        *,
        province: str | None = None,
        now: datetime | None = None,
        seen: datetime | None = None,
        replay: bool = False,
    ) -> None:
        params = self._gateway_params(gateway_id, doc, province, now or datetime.now(UTC), seen, replay)
        with self._write() as conn:
            conn.execute(_UPSERT_GATEWAY, params)

    def allocate_command(
        self,
        *,
        cmd_id: str,
        gateway_id: str,
        province: str | None,
        kind: str,
        args: Mapping[str, object],
        issued_at: datetime,
        expires_at: datetime,
    ) -> int:
        at, until = iso(issued_at), iso(expires_at)
        params = (cmd_id, gateway_id, province, kind, at, until, dump_json(dict(args)), gateway_id)
        with self._write() as conn:  # BEGIN IMMEDIATE: one writer at a time, so max + 1 is ours
            row = conn.execute(_ALLOCATE_COMMAND, params).fetchone()
        return int(row[0])

    def record_command_result(
        self,
        *,
        cmd_id: str,
        gateway_id: str,
        state: str,
        detail: str | None,
        data: Mapping[str, object],
        result_at: datetime,
    ) -> bool:
        params = (state, detail, iso(result_at), dump_json(dict(data)), cmd_id, gateway_id)
        with self._write() as conn:
            return conn.execute(_RECORD_RESULT, params).rowcount == 1

    def record_fleet_samples(self, samples: Sequence[FleetSample], *, now: datetime, keep_after: datetime) -> int:
        rows = self._fleet_sample_rows(samples, now)
        with self._write() as conn:
            conn.executemany(_UPSERT_FLEET_SAMPLE, rows)
            return conn.execute("DELETE FROM fleet_samples WHERE bucket_at < ?", (iso(keep_after),)).rowcount

    # -- reads --------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"hub store read failed: {exc}") from exc

    def _time_param(self, dt: datetime) -> str:
        return iso(dt)

    def _bool_param(self, value: bool) -> int:
        return int(value)

    def _to_time(self, value: Any) -> datetime:
        return from_iso(value)

    def _json_param(self, doc: Mapping[str, object]) -> Any:
        return dump_json(dict(doc))

    def _from_json(self, value: Any) -> Any:
        return json.loads(value)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


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
