"""Dashboard and scoring queries (callers' threads): readings in a time window, optionally for
one patient, device or vital, through the deferred indexes plus the unindexed tail, in one read
transaction. The SQL is built by a pure function."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from device_drivers.records import Reading, Vital
from edge_agent.store import codec
from edge_agent.store.keys import KeyManager
from edge_agent.store.reader import Decoder, Reader
from edge_agent.store.rows import SELECT_READING


def recent_query(
    *,
    since_us: int,
    upto: int,
    pidx: bytes | None,
    device_id: str | None,
    vital_code: int | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """Pure: SQL and arguments for the newest ``limit`` readings measured at or after
    ``since_us`` (newest first): indexed rows from the index tables, the tail above ``upto`` by seq."""
    extra = ""
    extra_args: list[Any] = []
    if device_id is not None:
        extra += " AND r.device_id = ?"
        extra_args.append(device_id)
    if vital_code is not None:
        extra += " AND r.vital = ?"
        extra_args.append(vital_code)
    cols = SELECT_READING
    if pidx is not None:
        sql = (
            f"SELECT {cols} FROM ix_patient i JOIN readings r ON r.seq = i.seq "
            f"WHERE i.pidx = ? AND i.measured_us >= ?{extra} "
            f"UNION ALL SELECT {cols} FROM readings r "
            f"WHERE r.seq > ? AND r.pidx = ? AND r.measured_us >= ?{extra} "
            "ORDER BY 2 DESC, 1 DESC LIMIT ?"
        )
        return sql, [pidx, since_us, *extra_args, upto, pidx, since_us, *extra_args, limit]
    sql = (
        f"SELECT {cols} FROM ix_time i JOIN readings r ON r.seq = i.seq WHERE i.measured_us >= ?{extra} "
        f"UNION ALL SELECT {cols} FROM readings r WHERE r.seq > ? AND r.measured_us >= ?{extra} "
        "ORDER BY 2 DESC, 1 DESC LIMIT ?"
    )
    return sql, [since_us, *extra_args, upto, since_us, *extra_args, limit]


class DashboardQueries:
    def __init__(self, *, reader: Reader, decoder: Decoder, keys: KeyManager) -> None:
        self._reader = reader
        self._decoder = decoder
        self._keys = keys

    def recent(
        self,
        *,
        since: datetime,
        patient_id: str | None = None,
        device_id: str | None = None,
        vital: str | None = None,
        limit: int = 10000,
    ) -> list[Reading]:
        """Readings measured at or after ``since`` (oldest first; the newest ``limit`` when more).
        A patient's rows are found by the keyed hash and re-checked on the decrypted patient id."""
        since_us = codec.to_us(since)
        vital_code = codec.VITAL_CODES[Vital(vital)] if vital is not None else None
        pidx = self._keys.query_pidx(patient_id) if patient_id is not None else None

        def q(conn: sqlite3.Connection) -> list[Any]:
            upto = int(conn.execute("SELECT value FROM meta WHERE key = 'indexed_upto'").fetchone()[0])
            sql, args = recent_query(
                since_us=since_us, upto=upto, pidx=pidx, device_id=device_id, vital_code=vital_code, limit=limit
            )
            return conn.execute(sql, args).fetchall()

        rows = self._reader.read(q)
        out = []
        for row in reversed(rows):
            r = self._decoder.reading(row)
            if r is None or (patient_id is not None and r.patient_id != patient_id):
                continue
            out.append(r)
        return out
