"""Acknowledged seq ranges (issue 14): the hub's acknowledgements without a row rewrite each.

Marking each acknowledged reading ``synced = 1`` rewrote the pages of every row of every batch:
about a quarter of the WAL frames at a station's load. Instead an acknowledgement records the
batch's readings as seq ranges in the small ``acked`` table (``lo`` to ``hi``, disjoint, merged
when adjacent), in the same transaction as before, and a reading is pending when ``synced = 0``
and no range holds its seq (:data:`PENDING`).

The ranges are the record: they are never folded back into the rows (a bulk ``UPDATE`` of the
acknowledged rows cost every row's page twice more, once in the WAL and once at the checkpoint:
about 500 B per reading over an hour at a station's load, bench_station). The table stays a few
rows long because a gap between two ranges is bridged (:func:`bridge_gaps`) as soon as no
pending row is left in it: a gap then holds only seqs that were never stored (dropped readings),
dead letters (``synced = 2``, which neither predicate counts as held) or rows already marked
``synced = 1``. A row stored later with a seq inside a range (the store never does this itself:
seqs are committed in order; a caller of ``submit`` might) takes its seq out of the ranges in the
transaction that stores it (:meth:`AckedRanges.without`), so it is pending as it should be.

Guarantees unchanged (DESIGN §6): a reading leaves pending only in the transaction that records
its batch's acknowledgement; retention and the full-disk purge delete only synced rows
(:data:`SYNCED`: marked, or held by a range). ``edge-provision decommission`` reads the ranges too.

:class:`AckedRanges` is pure (the table in memory, writer thread); :func:`persist` and
:func:`bridge_gaps` run on the writer's connection inside the caller's transaction.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Iterable, Sequence

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

    @property
    def top(self) -> int:
        """The highest seq a range holds (0: none)."""
        return self._ranges[-1][1] if self._ranges else 0

    def without(self, seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
        """The ranges once ``seqs`` are taken out of them (not applied: see :meth:`replace`)."""
        out = list(self._ranges)
        for s in sorted(set(seqs)):
            i = bisect.bisect_right([lo for lo, _ in out], s) - 1
            if i < 0 or out[i][1] < s:
                continue
            lo, hi = out[i]
            out[i : i + 1] = [r for r in ((lo, s - 1), (s + 1, hi)) if r[0] <= r[1]]
        return tuple(out)

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


def bridge_gaps(w: sqlite3.Connection, ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Inside the caller's transaction: ``ranges`` with every gap that holds no ``synced = 0`` row
    bridged (its rows are absent, dead letters or already marked synced: none is pending, so the
    predicates read the same). One rowid range probe per gap."""
    if len(ranges) < 2:
        return ranges
    out = [ranges[0]]
    for lo, hi in ranges[1:]:
        prev_lo, prev_hi = out[-1]
        pending = w.execute(
            "SELECT EXISTS (SELECT 1 FROM readings WHERE seq > ? AND seq < ? AND synced = 0)", (prev_hi, lo)
        ).fetchone()[0]
        if pending:
            out.append((lo, hi))
        else:
            out[-1] = (prev_lo, hi)
    return tuple(out)
