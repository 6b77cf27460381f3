"""The visits lane: the dashboard's visits (who is being measured, on which devices), sealed like
readings, so no patient identifier is ever on disk in clear. Saved on the writer thread, loaded on
callers' threads; closed visits older than the retention period are deleted with the readings.

A row's clear columns say only whether the visit is open and when it changed; the payload (patient
identifier and its kind, age band, pregnancy, devices, the nurse's observations) is sealed with the
current data key and additional data binding it to its row, revision and the gateway."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from edge_agent.store.envelope import Cipher, aad
from edge_agent.store.errors import DecryptError, StoreError
from edge_agent.store.keys import KeyManager
from edge_agent.store.reader import Reader

VISIT_COLS = "visit_id, rev, updated_us, is_open, key_id, cipher, CAST(payload AS BLOB)"


def visit_aad(gateway_id: str, visit_id: str, rev: int, updated_us: int, is_open: int, key_id: int, c: int) -> bytes:
    """Pure: the additional data of one visit revision."""
    return aad("visits", gateway_id, visit_id, (rev, updated_us, is_open, key_id, c))


def visit_plaintext(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


class VisitLane:
    def __init__(self, w: sqlite3.Connection, *, gateway_id: str, keys: KeyManager, reader: Reader) -> None:
        self._w = w
        self._gateway_id = gateway_id
        self._keys = keys
        self._reader = reader

    def save(self, visit_id: str, plain: bytes, *, is_open: int, updated_us: int) -> int:
        """Writer thread: insert or replace a visit as a new revision; returns it after COMMIT."""
        w = self._w
        keys = self._keys
        try:
            w.execute("BEGIN IMMEDIATE")
            row = w.execute("SELECT rev FROM visits WHERE visit_id = ?", (visit_id,)).fetchone()
            rev = 1 if row is None else int(row[0]) + 1
            key_id = keys.current_id
            c = int(keys.cipher)
            sealed = keys.sealer.seal(
                key_id, keys.cipher, plain, visit_aad(self._gateway_id, visit_id, rev, updated_us, is_open, key_id, c)
            )
            w.execute(
                "INSERT INTO visits (visit_id, rev, updated_us, is_open, key_id, cipher, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (visit_id) DO UPDATE SET rev = excluded.rev, "
                "updated_us = excluded.updated_us, is_open = excluded.is_open, key_id = excluded.key_id, "
                "cipher = excluded.cipher, payload = excluded.payload",
                (visit_id, rev, updated_us, is_open, key_id, c, sealed),
            )
            w.execute("COMMIT")
        except sqlite3.Error as exc:
            if w.in_transaction:
                w.execute("ROLLBACK")
            raise StoreError(f"cannot store the visit: {exc}") from exc
        return rev

    def load(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        """Visits (payload dicts, plus ``visit_id``), oldest change first; rows that fail to open
        are skipped (a StoreError names the first when nothing opened)."""
        where = " WHERE is_open = 1" if open_only else ""
        rows = self._reader.read(
            lambda r: r.execute(f"SELECT {VISIT_COLS} FROM visits{where} ORDER BY updated_us").fetchall()
        )
        return [v for v in map(self._open, rows) if v is not None]

    def _open(self, row: Sequence[Any]) -> dict[str, Any] | None:
        visit_id, rev, updated_us, is_open, key_id, cipher, payload = row
        try:
            plain = self._keys.sealer.open(
                key_id,
                Cipher(cipher),
                bytes(payload),
                visit_aad(self._gateway_id, visit_id, rev, updated_us, is_open, key_id, cipher),
                table="visits",
                row=str(visit_id),
            )
            doc = json.loads(plain)
        except (DecryptError, KeyError, ValueError):
            return None
        if not isinstance(doc, dict):
            return None
        doc["visit_id"] = visit_id
        return doc

    def purge_closed(self, cutoff_us: int) -> int:
        """Writer thread: delete closed visits last changed before ``cutoff_us``; returns how many."""
        w = self._w
        try:
            w.execute("BEGIN IMMEDIATE")
            n = w.execute("DELETE FROM visits WHERE is_open = 0 AND updated_us < ?", (cutoff_us,)).rowcount
            w.execute("COMMIT")
        except sqlite3.Error:
            if w.in_transaction:
                w.execute("ROLLBACK")
            return 0
        return int(n)
