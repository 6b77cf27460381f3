"""The alert lane: alerts sealed like readings, saved (writer thread, ahead of any reading
backlog) before synced history when space is short, loaded for the dashboard, and an outbox of
their own. Every save makes a new revision, stored with the alert; the hub acknowledges
``(alert_id, rev)``, and only that revision is marked synced, so an acknowledgement arriving
after a restart, or after a newer revision was saved, can never mark the wrong one. A pending
revision that fails to open goes to the dead letters (``dead_us``), counted and logged."""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime

from edge_agent.store import codec
from edge_agent.store.errors import StoreError, StoreFullError
from edge_agent.store.keys import KeyManager
from edge_agent.store.reader import Decoder, Reader
from edge_agent.store.results import PendingAlert
from edge_agent.store.rows import ALERT_COLS, alert_aad
from edge_agent.store.space import SpaceManager
from edge_agent.store.state import BufferState
from edge_agent.store.writer import RunOnWriter

log = logging.getLogger(__name__)


def alert_acks(acks: Iterable[object]) -> list[tuple[str, int]]:
    """Pure: check acknowledgements are ``(alert_id, rev)`` pairs (a bare id is refused: it
    cannot say which revision the hub saw)."""
    out: list[tuple[str, int]] = []
    for a in acks:
        if isinstance(a, (tuple, list)) and len(a) == 2 and isinstance(a[0], str) and type(a[1]) is int:
            out.append((a[0], a[1]))
        else:
            raise TypeError(f"acknowledge alerts with (alert_id, rev) pairs, got {type(a).__name__}")
    return out


class AlertLane:
    def __init__(
        self,
        w: sqlite3.Connection,
        *,
        gateway_id: str,
        keys: KeyManager,
        space: SpaceManager,
        state: BufferState,
        reader: Reader,
        decoder: Decoder,
        clock: Callable[[], datetime],
        call: RunOnWriter,
    ) -> None:
        self._w = w
        self._gateway_id = gateway_id
        self._keys = keys
        self._space = space
        self._state = state
        self._reader = reader
        self._decoder = decoder
        self._clock = clock
        self._call = call

    def save(self, alert_id: str, plain: bytes, *, is_open: int, updated_us: int) -> int:
        """Writer thread: insert or update an alert (``plain``: codec.alert_plaintext) as a new,
        pending revision; returns the revision after COMMIT. Raises StoreFullError if even purging
        synced history leaves no room, StoreError if SQLite fails otherwise."""
        w = self._w
        keys = self._keys

        def write() -> tuple[int, int, int]:  # (rev, change of pending, change of dead letters)
            key_id = keys.current_id
            c = int(keys.cipher)
            row = w.execute("SELECT rev, synced_us, dead_us FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            rev = 1 if row is None else row[0] + 1
            sealed = keys.sealer.seal(
                key_id, keys.cipher, plain, alert_aad(self._gateway_id, alert_id, rev, updated_us, is_open, key_id, c)
            )
            w.execute(
                "INSERT INTO alerts (alert_id, rev, updated_us, is_open, key_id, cipher, synced_us, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (alert_id) DO UPDATE SET rev = excluded.rev, "
                "updated_us = excluded.updated_us, is_open = excluded.is_open, key_id = excluded.key_id, "
                "cipher = excluded.cipher, synced_us = NULL, dead_us = NULL, payload = excluded.payload",
                (alert_id, rev, updated_us, is_open, key_id, c, sealed),
            )
            if row is None:
                return rev, 1, 0
            was_pending = row[1] is None and row[2] is None
            return rev, 0 if was_pending else 1, -1 if row[2] is not None else 0

        try:
            try:
                rev, pending, dead = self._space.txn(write, "store the alert")
            except StoreFullError:
                if not self._space.purge_synced(limit=2000):  # alerts go ahead of synced history
                    raise
                rev, pending, dead = self._space.txn(write, "store the alert")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store the alert: {exc}") from exc
        self._state.alerts_changed(pending=pending, dead_letter=dead)
        return rev

    def load(self, *, open_only: bool = False) -> list[dict[str, object]]:
        """Alerts (payload dicts) ordered by last update; ``open_only``: state is not 'cleared'."""
        where = " WHERE is_open = 1" if open_only else ""
        rows = self._reader.read(
            lambda r: r.execute(f"SELECT {ALERT_COLS} FROM alerts{where} ORDER BY updated_us").fetchall()
        )
        return [a for a in map(self._decoder.alert, rows) if a is not None]

    def pending(self, limit: int) -> list[PendingAlert]:
        """Unacknowledged alert revisions, oldest update first (callers' thread); a revision that
        fails to open goes to the dead letters."""
        rows = self._reader.read(
            lambda r: r.execute(
                f"SELECT {ALERT_COLS} FROM alerts WHERE synced_us IS NULL AND dead_us IS NULL "
                "ORDER BY updated_us LIMIT ?",
                (limit,),
            ).fetchall()
        )
        out: list[PendingAlert] = []
        failed: list[tuple[str, int]] = []
        for row in rows:
            a = self._decoder.alert(row)
            if a is None:
                failed.append((row[0], row[1]))
            else:
                out.append(PendingAlert(alert_id=row[0], rev=row[1], updated_at=codec.from_us(row[2]), payload=a))
        if failed:
            self._call(functools.partial(self.dead_letter, failed))
        return out

    def dead_letter(self, revs: list[tuple[str, int]]) -> int:
        """Writer thread: move pending alert revisions that failed to open to the dead letters."""
        w = self._w

        def do() -> int:
            now_us = codec.to_us(self._clock())
            before = w.total_changes
            w.executemany(
                "UPDATE alerts SET dead_us = ? "
                "WHERE alert_id = ? AND rev = ? AND synced_us IS NULL AND dead_us IS NULL",
                [(now_us, a, rev) for a, rev in revs],
            )
            return w.total_changes - before

        try:
            n = self._space.txn(do, "move unreadable alerts to the dead letters")
        except StoreFullError:
            log.warning("event=store_dead_letter_deferred table=alerts rows=%d reason=disk_full", len(revs))
            return 0
        if n:
            log.error("event=store_dead_letter table=alerts rows=%d", n)
        self._state.alerts_changed(pending=-n, dead_letter=n)
        return n

    def mark_synced(self, acks: list[tuple[str, int]]) -> int:
        """Writer thread: mark the acknowledged revisions synced; an alert whose stored revision is
        newer than the one acknowledged stays pending (the hub has not seen the update)."""
        w = self._w

        def write() -> int:
            now_us = codec.to_us(self._clock())
            before = w.total_changes
            w.executemany(
                "UPDATE alerts SET synced_us = ? "
                "WHERE alert_id = ? AND rev = ? AND synced_us IS NULL AND dead_us IS NULL",
                [(now_us, a, rev) for a, rev in acks],
            )
            return w.total_changes - before

        changed = self._space.txn(write, "record the hub's alert acknowledgement")
        self._state.alerts_changed(pending=-changed)
        return changed
