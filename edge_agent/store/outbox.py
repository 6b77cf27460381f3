"""The readings outbox: oldest pending first (``pending_batch``, callers' threads), and
acknowledgements (``mark_synced``, writer thread). Nothing leaves the pending state before the
hub acknowledged it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from device_drivers.records import Reading
from edge_agent.store.reader import Decoder, Reader
from edge_agent.store.rows import SELECT_READING, seq_of
from edge_agent.store.space import SpaceManager
from edge_agent.store.state import BufferState


def ack_chunks(uids: Iterable[str], gateway_id: str, size: int) -> list[list[int]]:
    """Pure: this gateway's seqs in ``uids``, sorted, deduplicated, in chunks of ``size``."""
    seqs = sorted({s for s in (seq_of(u, gateway_id) for u in uids) if s is not None})
    return [seqs[i : i + size] for i in range(0, len(seqs), size)]


class Outbox:
    def __init__(
        self,
        w: sqlite3.Connection,
        *,
        gateway_id: str,
        reader: Reader,
        decoder: Decoder,
        space: SpaceManager,
        state: BufferState,
    ) -> None:
        self._w = w
        self._gateway_id = gateway_id
        self._reader = reader
        self._decoder = decoder
        self._space = space
        self._state = state

    def pending_batch(self, limit: int) -> list[Reading]:
        """Oldest-first unsynced readings, decrypted (rows that fail to decrypt are skipped and counted)."""
        with self._state.lock:
            wm = self._state.low_wm
        if wm is None or limit <= 0:
            return []
        rows = self._reader.read(
            lambda r: r.execute(
                f"SELECT {SELECT_READING} FROM readings r WHERE seq >= ? AND synced = 0 ORDER BY seq LIMIT ?",
                (wm, limit),
            ).fetchall()
        )
        return [x for x in map(self._decoder.reading, rows) if x is not None]

    def oldest_pending_age_s(self, low_wm: int | None, now_us: int) -> float | None:
        if low_wm is None:
            return None
        row = self._reader.read(
            lambda r: r.execute(
                "SELECT measured_us + received_delta_us FROM readings "
                "WHERE seq >= ? AND synced = 0 ORDER BY seq LIMIT 1",
                (low_wm,),
            ).fetchone()
        )
        return None if row is None else max(0.0, (now_us - row[0]) / 1e6)

    def ack_chunks(self, uids: Sequence[str]) -> list[list[int]]:
        """The seqs to mark, in transactions small enough to commit on a nearly full disk."""
        return ack_chunks(uids, self._gateway_id, self._space.ack_chunk())

    def mark_synced(self, seqs: list[int]) -> int:
        """Writer thread: mark ``seqs`` (sorted) acknowledged in one transaction; returns how many
        left the pending state."""
        w = self._w
        state = self._state

        def do() -> int:
            before = w.total_changes
            # 0 -> 1 keeps the record the same size (SQLite stores both constants in the header),
            # so an acknowledgement never grows the database, even on a full disk
            w.executemany("UPDATE readings SET synced = 1 WHERE seq = ? AND synced = 0", [(s,) for s in seqs])
            return w.total_changes - before

        changed = self._space.txn(do, "record the hub's acknowledgement")
        with state.lock:
            state.pending -= changed
            wm = state.low_wm
        if wm is not None and wm in seqs:
            nxt = w.execute("SELECT MIN(seq) FROM readings WHERE seq >= ? AND synced = 0", (wm,)).fetchone()[0]
            with state.lock:
                if state.low_wm == wm:
                    state.low_wm = nxt
        return changed
