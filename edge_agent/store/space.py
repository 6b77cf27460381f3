"""Space management (writer thread): the space level from used pages and free filesystem, write
transactions that survive a full disk (checkpoint, release the emergency reserve, retry),
purging synced history for room, and the WAL checkpoint when short of space.

Which readings to keep at each level is pure logic in ``policy.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.store import policy
from edge_agent.store.acked import SYNCED
from edge_agent.store.connection import is_corrupt, is_full
from edge_agent.store.errors import StoreCorruptError, StoreFullError
from edge_agent.store.indexes import DeferredIndex
from edge_agent.store.reserve import EmergencyReserve
from edge_agent.store.state import BufferState

log = logging.getLogger(__name__)
T = TypeVar("T")


def persist_max_seq(w: sqlite3.Connection, state: BufferState) -> None:
    """Inside a transaction: record the highest seq in meta (uids are never reused, even after
    every row was deleted)."""
    top = max(state.last_seq, state.persisted_max_seq)
    if top > state.persisted_max_seq:
        w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('max_seq', ?)", (str(top),))


class SpaceManager:
    def __init__(
        self,
        w: sqlite3.Connection,
        *,
        path: Path,
        page_size: int,
        space: policy.SpacePolicy,
        reserve: EmergencyReserve,
        state: BufferState,
        index: DeferredIndex,
    ) -> None:
        self._w = w
        self._path = path
        self._page_size = page_size
        self.policy = space
        self._reserve = reserve
        self._reserve_released = False
        self._state = state
        self._index = index

    # --- measuring ------------------------------------------------------------------------------

    def _used_bytes(self) -> int:
        pages = self._w.execute("PRAGMA page_count").fetchone()[0]
        free = self._w.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages - free) * self._page_size

    def _fs_free(self) -> int | None:
        try:
            st = os.statvfs(self._path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def level(self) -> policy.Level:
        free = self._fs_free()
        if free is not None:
            # pages in the WAL are written a second time into the database at the next checkpoint
            with contextlib.suppress(OSError):
                free -= os.stat(f"{self._path}-wal").st_size
        return self.policy.level(self._used_bytes(), free)

    def level_before_batch(self, batch_len: int) -> policy.Level:
        """The level for the next batch, after purging synced history when under pressure, and
        with the emergency reserve recreated once space is back."""
        level = self.level()
        if level >= policy.Level.PRESSURE and self.purge_synced(limit=max(1000, batch_len)):
            level = self.level()
        if self._reserve_released and level is policy.Level.NORMAL and self._reserve.ensure():
            self._reserve_released = False
        return level

    def ack_chunk(self) -> int:
        """Readings per acknowledgement transaction: small ones need little WAL on a nearly full disk."""
        level, disk_full = self._state.space()
        return 1000 if level is policy.Level.NORMAL and not disk_full else 50

    # --- writing --------------------------------------------------------------------------------

    def checkpoint(self) -> None:
        try:
            self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("event=store_checkpoint_failed error=%s", exc)

    def _release_reserve(self) -> bool:
        if self._reserve.release():
            self._reserve_released = True
            return True
        return False

    def txn(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` in one write transaction. On a full disk, checkpoint, then release the
        emergency reserve, and try again; then raise StoreFullError."""
        w = self._w
        for attempt in range(3):
            try:
                w.execute("BEGIN IMMEDIATE")
                out = fn()
                w.execute("COMMIT")
                if self._state.short_of_space:
                    self.checkpoint()  # short of space: keep the WAL from holding a second copy
                return out
            except BaseException as exc:
                if w.in_transaction:
                    w.execute("ROLLBACK")
                if not isinstance(exc, sqlite3.Error):
                    raise
                if not is_full(exc):
                    if is_corrupt(exc):
                        raise StoreCorruptError(str(self._path), [str(exc)]) from exc
                    raise
                if attempt == 0:
                    self.checkpoint()  # let the WAL start over in the space it already has
                    continue
                if attempt == 1 and self._release_reserve():
                    self.checkpoint()
                    continue
                self._state.mark_disk_full()
                raise StoreFullError(f"cannot {what}: disk or quota full") from exc
        raise AssertionError("unreachable")

    def purge_synced(self, *, limit: int, cutoff_us: int | None = None) -> int:
        """Delete up to ``limit`` synced readings, oldest first (received before ``cutoff_us``
        when given). Returns how many were deleted; never touches unsynced rows."""
        w = self._w
        sql = f"SELECT seq, measured_us, pidx FROM readings r WHERE {SYNCED}"
        args: tuple[Any, ...] = ()
        if cutoff_us is not None:
            sql += " AND measured_us + received_delta_us < ?"
            args = (cutoff_us,)
        rows = w.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        if not rows:
            return 0
        state = self._state

        def do() -> None:
            persist_max_seq(w, state)
            self._index.delete_rows(rows)

        try:
            self.txn(do, "purge synced readings")
        except StoreFullError:
            log.warning("event=store_purge_failed reason=disk_full")
            return 0
        state.purged(len(rows))
        if cutoff_us is None:
            log.info("event=store_purged_synced_for_space rows=%d", len(rows))
        return len(rows)
