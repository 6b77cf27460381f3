"""The read side (callers' threads): the query connection, one read transaction per query, and
opening rows with failures reported (logged once per row, counted, the row skipped)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from device_drivers.records import Reading
from edge_agent.store.connection import connect_reader, is_corrupt
from edge_agent.store.envelope import Sealer
from edge_agent.store.errors import DecryptError, StoreClosedError, StoreCorruptError, StoreError
from edge_agent.store.rows import open_alert, open_reading
from edge_agent.store.state import BufferState

log = logging.getLogger(__name__)
T = TypeVar("T")


class Reader:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn = connect_reader(path)
        self._lock = threading.Lock()
        self.closed = False

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction (it sees one committed state of the database)."""
        if self.closed:
            raise StoreClosedError("store is closed")
        with self._lock:
            r = self._conn
            try:
                r.execute("BEGIN")
                try:
                    return fn(r)
                finally:
                    if r.in_transaction:
                        r.execute("COMMIT")
            except sqlite3.DatabaseError as exc:  # BEGIN and COMMIT included: callers see StoreError only
                if is_corrupt(exc):
                    raise StoreCorruptError(str(self._path), [str(exc)]) from exc
                raise StoreError(f"query failed: {exc}") from exc

    def close(self) -> None:
        self.closed = True
        with self._lock:
            self._conn.close()


class Decoder:
    """Opens rows; a row that fails is never returned, it is logged and counted."""

    def __init__(self, sealer: Sealer, gateway_id: str, state: BufferState) -> None:
        self._sealer = sealer
        self._gateway_id = gateway_id
        self._state = state

    def reading(self, row: Sequence[Any]) -> Reading | None:
        try:
            return open_reading(row, self._sealer, self._gateway_id)
        except (DecryptError, ValueError, KeyError, TypeError) as exc:
            self._report("readings", str(row[0]), exc)
            return None

    def alert(self, row: Sequence[Any]) -> dict[str, object] | None:
        try:
            return open_alert(row, self._sealer, self._gateway_id)
        except (DecryptError, ValueError) as exc:
            self._report("alerts", str(row[0]), exc)
            return None

    def _report(self, table: str, row: str, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, DecryptError) else f"bad payload ({type(exc).__name__})"
        if self._state.decrypt_failed_first(table, row):
            log.error("event=store_decrypt_failed table=%s row=%s reason=%s", table, row, reason)
