"""Acknowledged seq ranges (issue 14): the hub's acknowledgements without a row rewrite each.

Marking each acknowledged reading ``synced = 1`` rewrote the pages of every row of every batch:
about a quarter of the WAL frames at a station's load. Instead an acknowledgement records the
batch's readings as seq ranges in the small ``acked`` table (``lo`` to ``hi``, disjoint, merged
when adjacent), in the same transaction as before, and a reading is pending when ``synced = 0``
and no range holds its seq (:data:`PENDING`). The ranges are folded into the rows' ``synced``
column in bulk (:func:`fold`: one pass over contiguous pages, about a quarter of the frames the
per-batch updates cost) once :data:`FOLD_ROWS` readings wait, and at every open and clean close,
so tools that read the file directly (``edge-provision decommission`` counts ``synced = 0``) see
the truth after a clean stop. After a crash they may count up to ``FOLD_ROWS`` acknowledged
readings as pending (the safe side) until the agent opens the store again.

Guarantees unchanged (DESIGN §6): a reading leaves pending only in the transaction that records
its batch's acknowledgement; retention and the full-disk purge delete only synced rows
(:data:`SYNCED`: folded, or held by a range).

:class:`AckedRanges` is pure (the table in memory, writer thread); :func:`fold` runs on the
writer's connection.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Iterable, Sequence

FOLD_ROWS = 4096  # acknowledged readings held as ranges before they are folded into the rows

# For a row of ``readings r``: a range holds its seq; it is pending; it is synced (may be deleted).
_HELD = "COALESCE((SELECT a.hi FROM acked a WHERE a.lo <= r.seq ORDER BY a.lo DESC LIMIT 1), 0) >= r.seq"
PENDING = f"r.synced = 0 AND NOT {_HELD}"
SYNCED = f"(r.synced = 1 OR (r.synced = 0 AND {_HELD}))"


def runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, deduplicated ``seqs`` as inclusive runs: ``[1, 2, 3, 7]`` -> ``[(1, 3), (7, 7)]``."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


class AckedRanges:
    """The ``acked`` table in memory: disjoint inclusive ranges, sorted, adjacent ones merged."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._ranges: tuple[tuple[int, int], ...] = ()
        self._los: list[int] = []
        self.replace(self.merged(ranges))

    @staticmethod
    def merged(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
        out: list[tuple[int, int]] = []
        for lo, hi in sorted(ranges):
            if hi < lo:
                raise ValueError(f"bad range {lo}-{hi}")
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return tuple(out)

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        return self._ranges

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect.bisect_right(self._los, seq) - 1
        return i >= 0 and self._ranges[i][1] >= seq

    def with_seqs(self, seqs: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """The ranges once ``seqs`` are added (not applied: see :meth:`replace`)."""
        return self.merged([*self._ranges, *runs(seqs)])

    def replace(self, ranges: tuple[tuple[int, int], ...]) -> None:
        """After COMMIT: the table now holds ``ranges`` (as returned by :meth:`with_seqs`, or ())."""
        self._ranges = ranges
        self._los = [lo for lo, _ in ranges]


def persist(w: sqlite3.Connection, old: Sequence[tuple[int, int]], new: Sequence[tuple[int, int]]) -> None:
    """Inside the caller's transaction: make the ``acked`` table go from ``old`` to ``new``."""
    gone = set(old) - set(new)
    added = set(new) - set(old)
    if gone:
        w.executemany("DELETE FROM acked WHERE lo = ?", [(lo,) for lo, _ in gone])
    if added:
        w.executemany("INSERT OR REPLACE INTO acked (lo, hi) VALUES (?, ?)", sorted(added))


def fold(w: sqlite3.Connection) -> int:
    """Inside the caller's transaction: mark the rows the ranges hold ``synced = 1`` (dead letters
    keep 2) and empty the table; returns how many rows changed. (0 -> 1 keeps each record the same
    size, so a fold never grows the database, even on a full disk.)"""
    before = w.total_changes
    ranges = w.execute("SELECT lo, hi FROM acked ORDER BY lo").fetchall()
    if not ranges:
        return 0
    w.executemany("UPDATE readings SET synced = 1 WHERE seq BETWEEN ? AND ? AND synced = 0", ranges)
    changed = w.total_changes - before
    w.execute("DELETE FROM acked")
    return changed
