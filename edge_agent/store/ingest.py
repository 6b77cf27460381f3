"""Storing readings (the group-commit writer's ``commit_batch``, writer thread): apply the space
policy, seal, insert in one transaction with the drop counts, index the tail when due, and
only after COMMIT count the readings as stored. A full disk degrades (purge synced history,
then continuous streams, then everything) and never kills the writer."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from device_drivers.records import Reading
from edge_agent.store import acked as acked_ranges
from edge_agent.store import policy
from edge_agent.store.acked import AckedRanges
from edge_agent.store.connection import is_corrupt, is_full
from edge_agent.store.envelope import NONCE_LEN
from edge_agent.store.errors import StoreCorruptError
from edge_agent.store.indexes import DeferredIndex
from edge_agent.store.keys import KeyManager
from edge_agent.store.rows import INSERT_READING, INSERT_READING_OR_IGNORE, Row, seal_readings
from edge_agent.store.space import SpaceManager
from edge_agent.store.state import BufferState

log = logging.getLogger(__name__)


class ReadingIngest:
    def __init__(
        self,
        w: sqlite3.Connection,
        *,
        path: Path,
        gateway_id: str,
        keys: KeyManager,
        space: SpaceManager,
        index: DeferredIndex,
        state: BufferState,
        acked: AckedRanges,
        clock: Callable[[], datetime],
    ) -> None:
        self._w = w
        self._acked = acked  # shared with the outbox (writer thread): a row stored in a range leaves it
        self._path = path
        self._gateway_id = gateway_id
        self._keys = keys
        self._space = space
        self._index = index
        self._state = state
        self._clock = clock
        self._last_kept: dict[tuple[str, str], int] = {}  # downsampling: (device, vital) -> µs kept
        # called just before COMMIT (SQLite then runs without the GIL): the writer seals ahead
        self.before_commit: Callable[[], None] = lambda: None
        # inside the transaction, before COMMIT: other rows owed that ride along (the outbox's
        # leases); returns what to do once committed
        self.ride_along: Callable[[], Callable[[], None] | None] = lambda: None

    def count_overflow(self, readings: Sequence[Reading]) -> None:
        """The writer's FIFO was full: these readings are dropped and counted (queue_full)."""
        self._state.count_unrecorded((r, "queue_full") for r in readings)
        log.warning("event=store_queue_full dropped=%d", len(readings))

    def _seal(self, readings: Sequence[Reading], key_id: int) -> list[Row]:
        keys = self._keys
        return seal_readings(
            readings,
            gateway_id=self._gateway_id,
            key_id=key_id,
            cipher=keys.cipher,
            encrypt=keys.sealer.aead(key_id, keys.cipher).encrypt,
            pidx=keys.pidx,
            nonces=os.urandom(NONCE_LEN * len(readings)),  # one random draw per batch
        )

    def preseal(self, readings: Sequence[Reading]) -> list[Row] | None:
        """Seal ``readings`` ahead of their commit, on the writer's helper thread while the writer
        commits the batch before them (issue 14: SQLite's COMMIT runs without the GIL). Uses the data key
        current now; ``commit_batch`` keeps a row only if its key is still the current one when the
        batch commits, and seals again otherwise. None when sealing here failed (a key rotated or
        destroyed meanwhile, a reading the codec refuses): the writer seals, and reports, as before."""
        try:
            return self._seal(readings, self._keys.current_id)
        except Exception:  # any failure is the writer's to meet and report
            return None

    def commit_batch(self, batch: list[Reading], presealed: Sequence[Row | None] | None = None) -> list[bool]:
        """Store what the space policy allows of ``batch``; one flag per reading (True: committed).
        ``presealed``: rows from :meth:`preseal`, one per reading (None: not sealed yet)."""
        self._keys.maybe_rotate(self._w)
        level = self._space.level_before_batch(len(batch))
        key_id = self._keys.current_id
        saved_kept = dict(self._last_kept)
        plan = policy.plan_batch(batch, level, self._last_kept, self._space.policy.downsample_s)
        sealed = self._sealed_rows(batch, plan.keep, key_id, presealed)
        drops: list[tuple[int, str]] = [(i, plan.reason) for i in plan.drop]
        keep = list(plan.keep)
        hit_full = False
        purged = False
        for _attempt in range(4):
            try:
                stored, dup = self._write(batch, [sealed[i] for i in keep], keep, drops)
                break
            except sqlite3.Error as exc:
                self._last_kept = saved_kept
                if not is_full(exc):
                    if is_corrupt(exc):
                        raise StoreCorruptError(str(self._path), [str(exc)]) from exc
                    raise
                hit_full = True
                spot, cont = policy.spot_only(batch, keep)
                if not purged:  # first make room from history the hub already has
                    purged = True
                    if self._space.purge_synced(limit=max(1000, 4 * len(batch))):
                        continue
                if cont:  # then continuous streams go, before any spot check
                    keep = spot
                    drops += [(i, "disk_full") for i in cont]
                else:
                    drops += [(i, "disk_full") for i in keep]
                    keep = []
        else:
            # even the drop counts could not be written: keep them in memory, persist later
            stored, dup = [], []
            self._state.count_unrecorded((batch[i], reason) for i, reason in drops)
            log.warning("event=store_drops_unrecorded dropped=%d reason=disk_full", len(drops))
            drops = []
        self._state.space_seen(level, hit_full)
        if self._state.short_of_space or hit_full:
            self._space.checkpoint()  # short of space: keep the WAL from holding a second copy
        if hit_full or drops:
            log.warning(
                "event=store_drops level=%s stored=%d dropped=%d disk_full=%s",
                self._state.level_name(),
                len(stored),
                len(drops) + len(dup),
                hit_full,
            )
        flags = [False] * len(batch)
        for i in stored:
            flags[i] = True
        return flags

    def _sealed_rows(
        self, batch: list[Reading], keep: Sequence[int], key_id: int, presealed: Sequence[Row | None] | None
    ) -> dict[int, Row]:
        """The rows of ``keep``: presealed ones sealed with ``key_id`` (the current key, whose
        ``data_keys`` row the writer wrote when it rotated) and this store's cipher; the others
        sealed now. A presealed row of another key (a rotation came between) is sealed again."""
        if presealed is None:
            return dict(zip(keep, self._seal([batch[i] for i in keep], key_id), strict=True))
        cipher = int(self._keys.cipher)
        out: dict[int, Row] = {}
        missing: list[int] = []
        for i in keep:
            row = presealed[i]
            if row is not None and row[6] == key_id and row[7] == cipher and row[0] == batch[i].seq:
                out[i] = row
            else:
                missing.append(i)
        if missing:
            out.update(zip(missing, self._seal([batch[i] for i in missing], key_id), strict=True))
        return out

    def _write(
        self, batch: list[Reading], rows: list[Row], keep: list[int], drops: list[tuple[int, str]]
    ) -> tuple[list[int], list[int]]:
        """One transaction: insert ``rows``, count ``drops``, index the tail when due.

        Returns (indexes stored, indexes dropped as duplicates). Counters change only after COMMIT.
        """
        w = self._w
        state = self._state
        overflow, overflow_max = state.take_unrecorded()
        dup: list[int] = []
        stored = list(keep)
        w.execute("BEGIN IMMEDIATE")
        try:
            try:
                w.executemany(INSERT_READING, rows)
            except sqlite3.IntegrityError:
                # a seq already in the buffer: start over row by row, store the others, count the duplicates
                w.execute("ROLLBACK")
                w.execute("BEGIN IMMEDIATE")
                stored, dup = [], []
                for i, row in zip(keep, rows, strict=True):
                    cur = w.execute(INSERT_READING_OR_IGNORE, row)
                    (stored if cur.rowcount == 1 else dup).append(i)
            counts: Counter[tuple[str, str]] = Counter()
            for i, reason in drops:
                counts[(str(batch[i].vital), reason)] += 1
            for i in dup:
                counts[(str(batch[i].vital), "duplicate")] += 1
            counts.update(overflow)
            if counts:
                w.executemany(
                    "INSERT INTO drop_counts (vital, reason, count) VALUES (?, ?, ?) "
                    "ON CONFLICT (vital, reason) DO UPDATE SET count = count + excluded.count",
                    [(v, reason, n) for (v, reason), n in counts.items()],
                )
            max_seq = max(
                [state.last_seq, overflow_max, *(batch[i].seq for i, _ in drops), *(batch[i].seq for i in dup)]
            )
            if counts and max_seq > state.persisted_max_seq:
                w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('max_seq', ?)", (str(max_seq),))
            upto = self._index.indexed_upto
            if dup:
                row_of = dict(zip(keep, rows, strict=True))
                written = [row_of[i] for i in stored]
            else:
                written = rows  # every row went in (a row's seq is its first column)
            top = self._acked.top
            held = [row[0] for row in written if row[0] <= top and row[0] in self._acked] if top else None
            unheld = None
            if held:  # stored below an acknowledged range (edge_agent.store.acked): pending, not held
                unheld = self._acked.without(held)
                acked_ranges.persist(w, self._acked.ranges, unheld)
            late = [row for row in written if row[0] <= upto]
            if late:
                self._index.index_rows(late)
            new_upto = self._index.tail_if_due(max(state.last_seq, max([row[0] for row in written], default=0)))
            rode = self.ride_along()
            self.before_commit()
            w.execute("COMMIT")
        except BaseException:
            if w.in_transaction:
                w.execute("ROLLBACK")
            raise
        # committed: now the counters
        if rode is not None:
            rode()
        if unheld is not None:
            self._acked.replace(unheld)
        state.readings_committed(counts, overflow, max_seq, [batch[i].seq for i in stored])
        self._index.committed(new_upto)
        return stored, dup
