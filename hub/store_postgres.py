"""The hub store on PostgreSQL (psycopg 3), for several ingest workers on one database.

A batch goes in with one ``COPY`` into a session temporary table and one ``INSERT … SELECT …
ORDER BY uid ON CONFLICT (uid) DO NOTHING``, in one transaction: the database dedupes, not the
worker (DESIGN §8). Rows are inserted in uid order, so two workers writing overlapping batches
wait for each other instead of deadlocking; a deadlock or serialization failure that happens
anyway is retried. A lost connection is reopened on the next call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from device_drivers.records import Reading
from hub.errors import StoreError, StoreOperatorError
from hub.schema import LATEST, MIGRATIONS, PG_MIGRATIONS_TABLE
from hub.store import (
    READING_COLUMN_LIST,
    AlertLike,
    FleetSample,
    IngestResult,
    alert_fields,
    newest_alerts,
    redact_url,
    utc,
)
from hub.store_sql import (
    SqlStore,
    allocate_command_sql,
    record_result_sql,
    upsert_alert_sql,
    upsert_fleet_sample_sql,
    upsert_gateway_sql,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATION_LOCK = 0x5E_4855_4201  # pg_advisory_xact_lock key: one migrating worker at a time
RETRIES = 5  # deadlock / serialization failure retries per call
CONNECT_TIMEOUT_S = 10

_READING_COLUMNS = READING_COLUMN_LIST
_TEMP_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming_readings (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MERGE = (
    f"INSERT INTO readings ({_READING_COLUMNS}) SELECT {_READING_COLUMNS} FROM incoming_readings "
    "ORDER BY uid ON CONFLICT (uid) DO NOTHING"
)
_UPSERT_ALERT = upsert_alert_sql("%s")
_UPSERT_GATEWAY = upsert_gateway_sql("%s")
_UPSERT_FLEET_SAMPLE = upsert_fleet_sample_sql("%s")
_ALLOCATE_COMMAND = allocate_command_sql("%s")
_RECORD_RESULT = record_result_sql("%s")
COMMAND_LOCK = "station-edge/commands/"  # + gateway id: pg_advisory_xact_lock(hashtext(...))
# SQLSTATE classes that retrying cannot fix: bad credentials, no such database, no privilege.
_OPERATOR_SQLSTATES = {"28000", "28P01", "3D000", "42501"}


class PostgresStore(SqlStore):
    backend = "postgresql"
    placeholder: ClassVar[str] = "%s"

    def __init__(self, url: str) -> None:
        self._url = url
        self.location = redact_url(url)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    @classmethod
    def open(cls, url: str) -> PostgresStore:
        store = cls(url)
        with store._lock:
            store._migrate(store._connection())
        return store

    # -- connection ---------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
            self._conn = None
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            state = getattr(exc, "sqlstate", None)
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if state in _OPERATOR_SQLSTATES or "does not exist" in text or "authentication failed" in text:
                raise StoreOperatorError(
                    f"cannot use the hub database {self.location}: {text}", "check the URL, the database and the role"
                ) from exc
            raise StoreError(f"cannot reach the hub database {self.location}: {text}") from exc
        try:
            if self._schema_present(conn):  # a reconnect: open() creates it after migrating
                conn.execute(_TEMP_TABLE)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"hub database {self.location}: {exc}") from exc
        self._conn = conn
        return conn

    @staticmethod
    def _schema_present(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
        row = conn.execute("SELECT to_regclass('readings') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def _run(self, what: str, fn: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        """``fn(conn)`` under the lock, retried on deadlock / serialization failure; psycopg's
        errors become :class:`StoreError`."""
        with self._lock:
            for attempt in range(RETRIES + 1):
                conn = self._connection()
                try:
                    return fn(conn)
                except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                    if attempt == RETRIES:
                        raise StoreError(f"hub database {what}: {type(exc).__name__} after {RETRIES} retries") from exc
                    log.warning("event=store_retry what=%s error=%s attempt=%d", what, type(exc).__name__, attempt + 1)
                    time.sleep(0.01 * 2**attempt)
                except psycopg.Error as exc:
                    if getattr(exc, "sqlstate", None) in _OPERATOR_SQLSTATES:
                        raise StoreOperatorError(f"hub database {what}: {exc}", "check the role's privileges") from exc
                    raise StoreError(f"hub database {what} failed: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute(PG_MIGRATIONS_TABLE)
                applied = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
                if applied and max(applied) > LATEST:
                    raise StoreOperatorError(
                        f"hub database {self.location} has schema version {max(applied)}, "
                        f"this hub knows up to {LATEST}",
                        "run a newer edge-hub",
                    )
                for m in MIGRATIONS:
                    if m.version in applied:
                        continue
                    for statement in m.postgresql:
                        conn.execute(statement.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, description, applied_at) VALUES (%s, %s, %s)",
                        (m.version, m.description, datetime.now(UTC)),
                    )
            conn.execute(_TEMP_TABLE)
        except StoreOperatorError:
            raise
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) in _OPERATOR_SQLSTATES:
                raise StoreOperatorError(
                    f"cannot migrate the hub database {self.location}: {exc}", "check the role"
                ) from exc
            raise StoreError(f"cannot migrate the hub database {self.location}: {exc}") from exc

    def schema_version(self) -> int:
        def q(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
            return int(row[0] or 0) if row else 0

        return self._run("read", q)

    # -- writes -------------------------------------------------------------------------------

    def ingest(
        self, gateway_id: str, batch_id: str, readings: Sequence[Reading], *, now: datetime | None = None
    ) -> IngestResult:
        if not readings:
            return IngestResult(0, 0)
        rows = self._reading_rows(gateway_id, batch_id, readings, now or datetime.now(UTC))

        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY incoming_readings ({_READING_COLUMNS}) FROM STDIN".encode()) as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(_MERGE.encode())
                return cur.rowcount

        stored = self._run("ingest", write)
        return IngestResult(stored, len(rows) - stored)

    def ingest_alerts(
        self, gateway_id: str, batch_id: str, alerts: Sequence[AlertLike], *, now: datetime | None = None
    ) -> IngestResult:
        if not alerts:
            return IngestResult(0, 0)
        at = utc(now or datetime.now(UTC))
        rows = [
            (a.alert_id, gateway_id, a.rev, *alert_fields(a.payload), Jsonb(dict(a.payload)), batch_id, at)
            for a in newest_alerts(alerts)
        ]

        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
            stored = 0
            with conn.transaction(), conn.cursor() as cur:
                for row in rows:
                    cur.execute(_UPSERT_ALERT, row)
                    stored += cur.rowcount
            return stored

        stored = self._run("ingest_alerts", write)
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

        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            conn.execute(_UPSERT_GATEWAY, params)

        self._run("record_status", write)

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
        params = (cmd_id, gateway_id, province, kind, utc(issued_at), utc(expires_at), Jsonb(dict(args)), gateway_id)

        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
            # one allocation per gateway at a time across every hub process: no two get max + 1
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (COMMAND_LOCK + gateway_id,))
                row = conn.execute(_ALLOCATE_COMMAND.encode(), params).fetchone()
            assert row is not None
            return int(row[0])

        return self._run("allocate_command", write)

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
        params = (state, detail, utc(result_at), Jsonb(dict(data)), cmd_id, gateway_id)

        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
            return conn.execute(_RECORD_RESULT.encode(), params).rowcount == 1

        return self._run("record_command_result", write)

    def record_fleet_samples(self, samples: Sequence[FleetSample], *, now: datetime, keep_after: datetime) -> int:
        rows = self._fleet_sample_rows(samples, now)

        def write(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
            with conn.transaction(), conn.cursor() as cur:
                if rows:
                    cur.executemany(_UPSERT_FLEET_SAMPLE, rows)
                cur.execute("DELETE FROM fleet_samples WHERE bucket_at < %s", (utc(keep_after),))
                return cur.rowcount

        return self._run("record_fleet_samples", write)

    # -- reads --------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._run("read", lambda conn: conn.execute(sql.encode(), params).fetchall())

    def _time_param(self, dt: datetime) -> datetime:
        return utc(dt)

    def _bool_param(self, value: bool) -> bool:
        return value

    def _to_time(self, value: Any) -> datetime:
        return utc(value)

    def _json_param(self, doc: Mapping[str, object]) -> Any:
        return Jsonb(dict(doc))

    def _from_json(self, value: Any) -> Any:
        return value  # psycopg loads jsonb already

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
