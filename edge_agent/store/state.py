"""The store's in-memory counters, pure logic: no I/O, every field guarded by ``lock``.

The writer thread changes them only after a COMMIT (a reading counts only once it is
committed); callers read consistent snapshots for ``stats()``. Loaded from the database at open
(see ``opening.load_state``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from device_drivers.records import Reading
from edge_agent.store.policy import Level


@dataclass(frozen=True, slots=True)
class Snapshot:
    stored_total: int
    pending: int
    low_wm: int | None
    disk_full: bool
    decrypt_failures: int
    level: str
    pending_alerts: int
    last_seq: int
    commits: int
    dropped_by_reason: dict[str, dict[str, int]]


@dataclass(eq=False, slots=True)
class BufferState:
    last_seq: int = 0  # highest seq committed (or whose drop was recorded)
    persisted_max_seq: int = 0  # meta.max_seq as committed
    stored_total: int = 0
    pending: int = 0
    low_wm: int | None = None  # lowest unsynced seq (None: nothing pending)
    pending_alerts: int = 0
    commits: int = 0
    overflow_max_seq: int = 0  # highest seq dropped but not yet recorded in the database
    level: Level = Level.NORMAL
    disk_full: bool = False
    dropped: dict[str, Counter[str]] = field(default_factory=dict)  # reason -> vital -> count (committed)
    unpersisted: Counter[tuple[str, str]] = field(default_factory=Counter)  # (vital, reason) not yet written
    decrypt_failed: set[tuple[str, str]] = field(default_factory=set)
    alert_revs_sent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def short_of_space(self) -> bool:
        return self.level is not Level.NORMAL or self.disk_full

    def seen_last_seq(self) -> int:
        """Highest seq ever committed or dropped."""
        with self.lock:
            return max(self.last_seq, self.overflow_max_seq)

    def count_unrecorded(self, drops: Iterable[tuple[Reading, str]]) -> None:
        """Drops the database could not record (yet): kept here, written with a later batch."""
        with self.lock:
            for r, reason in drops:
                self.unpersisted[(str(r.vital), reason)] += 1
                self.overflow_max_seq = max(self.overflow_max_seq, r.seq)

    def take_unrecorded(self) -> tuple[Counter[tuple[str, str]], int]:
        with self.lock:
            return Counter(self.unpersisted), self.overflow_max_seq

    def readings_committed(
        self,
        counts: Counter[tuple[str, str]],
        recorded: Counter[tuple[str, str]],
        max_seq: int,
        seqs: Sequence[int],
    ) -> None:
        """After a readings transaction committed: ``seqs`` stored, ``counts`` drops written (of
        which ``recorded`` came from the unrecorded counter), meta.max_seq now ``max_seq`` if any."""
        with self.lock:
            self.commits += 1
            for (vital, reason), n in counts.items():
                self.dropped.setdefault(reason, Counter())[vital] += n
            self.unpersisted.subtract(recorded)
            self.unpersisted = +self.unpersisted
            if counts:
                self.persisted_max_seq = max(self.persisted_max_seq, max_seq)
            if seqs:
                self.last_seq = max(self.last_seq, *seqs)
                self.stored_total += len(seqs)
                self.pending += len(seqs)
                lo = min(seqs)
                self.low_wm = lo if self.low_wm is None else min(self.low_wm, lo)

    def space_seen(self, level: Level, hit_full: bool) -> None:
        with self.lock:
            self.disk_full = hit_full or level >= Level.FULL
            self.level = Level.FULL if hit_full and level < Level.FULL else level

    def decrypt_failed_first(self, table: str, row: str) -> bool:
        """Record a row that failed to open; True the first time for that row."""
        with self.lock:
            first = (table, row) not in self.decrypt_failed
            self.decrypt_failed.add((table, row))
        return first

    def snapshot(self) -> Snapshot:
        with self.lock:
            by_reason = {reason: dict(c) for reason, c in self.dropped.items()}
            for (vital, reason), n in self.unpersisted.items():
                per = by_reason.setdefault(reason, {})
                per[vital] = per.get(vital, 0) + n
            return Snapshot(
                stored_total=self.stored_total,
                pending=self.pending,
                low_wm=self.low_wm,
                disk_full=self.disk_full,
                decrypt_failures=len(self.decrypt_failed),
                level=self.level.name.lower(),
                pending_alerts=self.pending_alerts,
                last_seq=max(self.last_seq, self.overflow_max_seq),
                commits=self.commits,
                dropped_by_reason=by_reason,
            )
