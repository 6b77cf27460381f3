"""The deferred indexes (``ix_patient``, ``ix_time``): readings are copied into them in batches
(every ``every`` readings or ``interval_s``), so a one-reading commit touches one page; queries
scan the short tail above ``meta.indexed_upto`` by seq. Writer thread only, inside the caller's
transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from edge_agent.store import codec


class DeferredIndex:
    def __init__(
        self,
        w: sqlite3.Connection,
        *,
        indexed_upto: int,
        every: int,
        interval_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._w = w
        self.indexed_upto = indexed_upto  # as committed in meta.indexed_upto
        self._every = every
        self._interval_us = int(interval_s * 1_000_000)
        self._clock = clock
        self._last_us = codec.to_us(clock())

    def index_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Index reading rows (INSERT_READING column order) that arrived below ``indexed_upto``."""
        self._w.executemany(
            "INSERT OR IGNORE INTO ix_patient (pidx, measured_us, seq) VALUES (?, ?, ?)",
            [(r[5], r[1], r[0]) for r in rows if r[5] is not None],
        )
        self._w.executemany(
            "INSERT OR IGNORE INTO ix_time (measured_us, seq) VALUES (?, ?)", [(r[1], r[0]) for r in rows]
        )

    def tail_if_due(self, top: int, *, force: bool = False) -> int | None:
        """Inside a transaction: move readings above ``indexed_upto`` up to ``top`` into the index
        tables when enough have gathered (or enough time passed). Returns the new mark (pass it
        to :meth:`committed` after COMMIT), or None."""
        tail = top - self.indexed_upto
        if tail <= 0:
            return None
        due = force or tail >= self._every
        if not due and codec.to_us(self._clock()) - self._last_us < self._interval_us:
            return None
        w = self._w
        upto = self.indexed_upto
        w.execute(
            "INSERT OR IGNORE INTO ix_patient (pidx, measured_us, seq) "
            "SELECT pidx, measured_us, seq FROM readings WHERE seq > ? AND seq <= ? AND pidx IS NOT NULL",
            (upto, top),
        )
        w.execute(
            "INSERT OR IGNORE INTO ix_time (measured_us, seq) "
            "SELECT measured_us, seq FROM readings WHERE seq > ? AND seq <= ?",
            (upto, top),
        )
        w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('indexed_upto', ?)", (str(top),))
        return top

    def committed(self, new_upto: int | None) -> None:
        if new_upto is not None:
            self.indexed_upto = new_upto
            self._last_us = codec.to_us(self._clock())

    def delete_rows(self, rows: Sequence[tuple[int, int, bytes | None]]) -> None:
        """Inside a transaction: delete readings (seq, measured_us, pidx) and their index entries."""
        w = self._w
        w.executemany("DELETE FROM readings WHERE seq = ?", [(r[0],) for r in rows])
        w.executemany("DELETE FROM ix_time WHERE measured_us = ? AND seq = ?", [(r[1], r[0]) for r in rows])
        w.executemany(
            "DELETE FROM ix_patient WHERE pidx = ? AND measured_us = ? AND seq = ?",
            [(r[2], r[1], r[0]) for r in rows if r[2] is not None],
        )
