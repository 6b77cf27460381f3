"""The store's in-memory counters, pure logic: no I/O, every change under one private lock.

The writer thread changes them only after a COMMIT (a reading counts only once it is
committed); callers read consistent snapshots for ``stats()``. Loaded from the database at open
(see ``opening.load_state``). The other modules never take the lock: each change they make is
one method here (``readings_committed``, ``left_pending``, ``advance_low_wm``, ``purged``,
``alerts_changed`` ...). Fields that only the writer thread writes (``last_seq``,
``persisted_max_seq``) may be read there directly.
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
    dead_letter: int = 0
    dead_letter_alerts: int = 0


@dataclass(eq=False, slots=True)
class BufferState:
    last_seq: int = 0  # highest seq committed (or whose drop was recorded)
    persisted_max_seq: int = 0  # meta.max_seq as committed
    stored_total: int = 0
    pending: int = 0  # readings with synced = 0 (dead letters are not pending)
    low_wm: int | None = None  # lowest unsynced seq (None: nothing pending)
    pending_alerts: int = 0
    dead_letter: int = 0  # readings that failed to open, moved out of the outbox (synced = 2)
    dead_letter_alerts: int = 0  # pending alerts that failed to open (alerts.dead_us set)
    commits: int = 0
    overflow_max_seq: int = 0  # highest seq dropped but not yet recorded in the database
    level: Level = Level.NORMAL
    disk_full: bool = False
    dropped: dict[str, Counter[str]] = field(default_factory=dict)  # reason -> vital -> count (committed)
    unpersisted: Counter[tuple[str, str]] = field(default_factory=Counter)  # (vital, reason) not yet written
    decrypt_failed: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # --- space ----------------------------------------------------------------------------------

    @property
    def short_of_space(self) -> bool:
        with self._lock:
            return self.level is not Level.NORMAL or self.disk_full

    def space(self) -> tuple[Level, bool]:
        """(level, disk_full), read together."""
        with self._lock:
            return self.level, self.disk_full

    def space_seen(self, level: Level, hit_full: bool) -> None:
        with self._lock:
            self.disk_full = hit_full or level >= Level.FULL
            self.level = Level.FULL if hit_full and level < Level.FULL else level

    def mark_disk_full(self) -> None:
        """A synchronous write found no room even after the checkpoint and the emergency reserve."""
        with self._lock:
            self.disk_full = True

    # --- readings -------------------------------------------------------------------------------

    def seen_last_seq(self) -> int:
        """Highest seq ever committed or dropped."""
        with self._lock:
            return max(self.last_seq, self.overflow_max_seq)

    def low_watermark(self) -> int | None:
        """The lowest seq that may still be pending (None: nothing pending)."""
        with self._lock:
            return self.low_wm

    def count_unrecorded(self, drops: Iterable[tuple[Reading, str]]) -> None:
        """Drops the database could not record (yet): kept here, written with a later batch."""
        with self._lock:
            for r, reason in drops:
                self.unpersisted[(str(r.vital), reason)] += 1
                self.overflow_max_seq = max(self.overflow_max_seq, r.seq)

    def take_unrecorded(self) -> tuple[Counter[tuple[str, str]], int]:
        with self._lock:
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
        with self._lock:
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

    def left_pending(self, n: int, *, dead_letter: bool = False) -> int | None:
        """After COMMIT: ``n`` readings left the pending state, acknowledged by the hub or (with
        ``dead_letter``) moved to the dead letters. Returns the low watermark, which the caller
        moves on with :meth:`advance_low_wm` when it was one of those readings."""
        with self._lock:
            self.pending -= n
            if dead_letter:
                self.dead_letter += n
            return self.low_wm

    def advance_low_wm(self, old: int, new: int | None) -> None:
        """Move the low watermark from ``old`` to ``new`` (unless it moved meanwhile)."""
        with self._lock:
            if self.low_wm == old:
                self.low_wm = new

    def purged(self, n: int) -> None:
        """After COMMIT: ``n`` synced readings deleted, ``meta.max_seq`` brought up to ``last_seq``."""
        with self._lock:
            self.persisted_max_seq = max(self.persisted_max_seq, self.last_seq)
            self.stored_total -= n

    # --- alerts ---------------------------------------------------------------------------------

    def alerts_changed(self, *, pending: int = 0, dead_letter: int = 0) -> None:
        """After COMMIT: the number of pending and of dead-lettered alerts changed by these amounts."""
        with self._lock:
            self.pending_alerts += pending
            self.dead_letter_alerts += dead_letter

    # --- failures and snapshots -----------------------------------------------------------------

    def decrypt_failed_first(self, table: str, row: str) -> bool:
        """Record a row that failed to open; True the first time for that row."""
        with self._lock:
            first = (table, row) not in self.decrypt_failed
            self.decrypt_failed.add((table, row))
        return first

    def level_name(self) -> str:
        with self._lock:
            return self.level.name.lower()

    def snapshot(self) -> Snapshot:
        with self._lock:
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
                dead_letter=self.dead_letter,
                dead_letter_alerts=self.dead_letter_alerts,
            )
