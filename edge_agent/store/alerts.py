"""The alert lane: alerts sealed like readings, saved (writer thread) ahead of synced history
when space is short, loaded for the dashboard, and an outbox of their own (pending until the hub
acknowledged the revision it was sent)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from edge_agent.store import codec
from edge_agent.store.errors import StoreFullError
from edge_agent.store.keys import KeyManager
from edge_agent.store.reader import Decoder, Reader
from edge_agent.store.rows import ALERT_COLS, alert_aad
from edge_agent.store.space import SpaceManager
from edge_agent.store.state import BufferState


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
    ) -> None:
        self._w = w
        self._gateway_id = gateway_id
        self._keys = keys
        self._space = space
        self._state = state
        self._reader = reader
        self._decoder = decoder
        self._clock = clock

    def save(self, alert_id: str, plain: bytes, *, is_open: int, updated_us: int) -> None:
        """Writer thread: insert or update an alert (``plain``: codec.alert_plaintext) and make it
        pending again. Raises StoreFullError if even purging synced history leaves no room."""
        w = self._w
        keys = self._keys

        def write() -> bool:
            key_id = keys.current_id
            c = int(keys.cipher)
            row = w.execute("SELECT rev, synced_us FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            rev = 1 if row is None else row[0] + 1
            sealed = keys.sealer.seal(
                key_id, keys.cipher, plain, alert_aad(self._gateway_id, alert_id, rev, updated_us, is_open, key_id, c)
            )
            w.execute(
                "INSERT INTO alerts (alert_id, rev, updated_us, is_open, key_id, cipher, synced_us, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (alert_id) DO UPDATE SET rev = excluded.rev, "
                "updated_us = excluded.updated_us, is_open = excluded.is_open, key_id = excluded.key_id, "
                "cipher = excluded.cipher, synced_us = NULL, payload = excluded.payload",
                (alert_id, rev, updated_us, is_open, key_id, c, sealed),
            )
            return row is None or row[1] is not None

        try:
            newly_pending = self._space.txn(write, "store the alert")
        except StoreFullError:
            if not self._space.purge_synced(limit=2000):  # alerts go ahead of synced history
                raise
            newly_pending = self._space.txn(write, "store the alert")
        if newly_pending:
            with self._state.lock:
                self._state.pending_alerts += 1

    def load(self, *, open_only: bool = False) -> list[dict[str, object]]:
        """Alerts (payload dicts) ordered by last update; ``open_only``: state is not 'cleared'."""
        where = " WHERE is_open = 1" if open_only else ""
        rows = self._reader.read(
            lambda r: r.execute(f"SELECT {ALERT_COLS} FROM alerts{where} ORDER BY updated_us").fetchall()
        )
        return [a for a in map(self._decoder.alert, rows) if a is not None]

    def pending(self, limit: int) -> list[dict[str, object]]:
        """Unacknowledged alerts, oldest update first; remembers which revision was handed out."""
        rows = self._reader.read(
            lambda r: r.execute(
                f"SELECT {ALERT_COLS} FROM alerts WHERE synced_us IS NULL ORDER BY updated_us LIMIT ?", (limit,)
            ).fetchall()
        )
        out = []
        for row in rows:
            a = self._decoder.alert(row)
            if a is not None:
                with self._state.lock:
                    self._state.alert_revs_sent[row[0]] = row[1]
                out.append(a)
        return out

    def take_sent_revs(self, alert_ids: Sequence[str]) -> dict[str, int | None]:
        """The revision handed out for each alert (None: not handed out by ``pending``)."""
        with self._state.lock:
            return {a: self._state.alert_revs_sent.pop(a, None) for a in alert_ids}

    def mark_synced(self, revs: dict[str, int | None]) -> int:
        """Writer thread: mark alerts acknowledged; an alert updated after its revision was handed
        out stays pending (the hub has not seen the update)."""
        w = self._w

        def write() -> int:
            now_us = codec.to_us(self._clock())
            before = w.total_changes
            for a, rev in revs.items():
                if rev is None:
                    w.execute("UPDATE alerts SET synced_us = ? WHERE alert_id = ? AND synced_us IS NULL", (now_us, a))
                else:
                    w.execute(
                        "UPDATE alerts SET synced_us = ? WHERE alert_id = ? AND rev = ? AND synced_us IS NULL",
                        (now_us, a, rev),
                    )
            return w.total_changes - before

        changed = self._space.txn(write, "record the hub's alert acknowledgement")
        with self._state.lock:
            self._state.pending_alerts -= changed
        return changed
