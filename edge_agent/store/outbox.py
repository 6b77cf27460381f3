"""The readings outbox: leased batches (``lease`` / ``ack`` / ``release``), the older
``pending_batch`` / ``mark_synced`` by uid, and the dead letters.

Nothing leaves the pending state before the hub acknowledged it (DESIGN §6). A batch's seqs are
recorded in ``batches``, so an acknowledgement that arrives after a restart marks exactly that
batch's readings, and an unacknowledged batch is re-sent (same id, those of its readings still
pending) before any new one.

With ``lazy_leases`` (the store's fsync window is on) a new batch's row is not written by its own
commit, and not at all while the hub's ack may still come in the usual round trip: once a lease
is ``LEASE_ROW_AFTER_S`` old (store clock) and still unacknowledged, its row rides along in the
next readings commit (``ride_along``) or is written before the writer's next fsync
(``save_leases(aged_only=True)``), whichever comes first; at ``flush`` and at close every row owed
is written. The ack of a batch online comes within a second, so its row is never written (issue
14: a lease's row and its deletion at the ack were about two WAL frames every few seconds, the
most of the sync's bookkeeping). So, as for the rest of the sync's bookkeeping, a crash or power
cut loses the rows of the leases younger than that (or than one fsync window): their readings are
then pending and sent again in a new batch after the restart, and the hub keeps each uid once.

A row that fails to open (tampered, key gone) leaves the outbox for the dead letters
(``synced = 2``): counted, logged, never leased again.

Threads: rows are read and opened on the caller's thread (the reader connection); every write
runs on the writer thread, through ``call`` (the store's writer queue) or because the caller is
already a writer command (``ack``, ``mark_synced``, ``dead_letter``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from device_drivers.records import Reading
from edge_agent.store import acked as acked_ranges
from edge_agent.store import codec
from edge_agent.store.acked import PENDING, AckedRanges
from edge_agent.store.connection import is_full
from edge_agent.store.errors import StoreError, StoreFullError
from edge_agent.store.leases import Lease, LeaseBook, encode_seqs
from edge_agent.store.reader import Decoder, Reader
from edge_agent.store.results import Batch
from edge_agent.store.rows import SELECT_READING, seq_of
from edge_agent.store.space import SpaceManager
from edge_agent.store.state import BufferState
from edge_agent.store.writer import RunOnWriter

log = logging.getLogger(__name__)

_LEASE_TRIES = 8  # plans per lease() when batches vanish under it (acknowledged meanwhile, all dead)
# A lazy lease's row is written once its ack is this late (store clock): beyond a round trip to the
# hub online (tens to hundreds of ms, bench_sync), short of the sync's ack timeout, so that a late
# ack after a restart still marks exactly its batch.
LEASE_ROW_AFTER_S = 5.0


def ack_chunks(uids: Iterable[str], gateway_id: str, size: int) -> list[list[int]]:
    """Pure: this gateway's seqs in ``uids``, sorted, deduplicated, in chunks of ``size``."""
    seqs = sorted({s for s in (seq_of(u, gateway_id) for u in uids) if s is not None})
    return [seqs[i : i + size] for i in range(0, len(seqs), size)]


def _for_log(text: str, limit: int = 64) -> str:
    """A value from outside (a batch id off the network) made safe for a one-line log."""
    return repr(text[:limit])


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
        book: LeaseBook,
        clock: Callable[[], datetime],
        call: RunOnWriter,
        max_in_flight: int,
        lease_timeout_s: float | None,
        acked: AckedRanges | None = None,
        lazy_leases: bool = False,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._w = w
        self._gateway_id = gateway_id
        self._reader = reader
        self._decoder = decoder
        self._space = space
        self._state = state
        self._book = book
        self._clock = clock
        self._call = call
        self._max_in_flight = max_in_flight
        self._timeout_us = None if lease_timeout_s is None else int(lease_timeout_s * 1_000_000)
        self._lease_lock = threading.Lock()  # one lease at a time picks readings
        self._acked = acked or AckedRanges()  # writer thread: the acked table in memory
        self._lazy = lazy_leases
        self._unsaved: dict[str, None] = {}  # writer thread: ids of leases whose row is owed, in order

    # --- leases (callers' threads) ----------------------------------------------------------------

    def lease(self, limit: int) -> Batch:
        """The next batch to send: a released one first (same id), else up to ``limit`` of the
        oldest pending readings in no other batch. Empty when ``max_in_flight`` batches are in
        flight or nothing is pending."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        with self._lease_lock:
            now = self._clock()
            for _ in range(_LEASE_TRIES):
                now = self._clock()
                if self._timeout_us is not None:
                    expired = self._book.release(codec.to_us(now) - self._timeout_us)
                    if expired:
                        log.warning("event=store_leases_expired batches=%d", expired)
                if self._book.in_flight()[0] >= self._max_in_flight:
                    break
                old = self._book.next_resend()
                rows = self._rows_of(old.seqs) if old is not None else self._free_rows(limit)
                readings, failed = self._open_rows(rows)
                out = self._call(functools.partial(self._commit_lease, old, readings, failed, now))
                if out is not None:
                    return out
            return Batch("", (), now, 0)

    def release(self, older_than_s: float | None = None) -> int:
        """Make leased batches leasable again (all, or those leased at least ``older_than_s``
        seconds ago by the store's clock); returns how many. For a reconnect, or a lost ack."""
        cutoff = None if older_than_s is None else codec.to_us(self._clock()) - int(older_than_s * 1_000_000)
        n = self._book.release(cutoff)
        if n:
            log.info("event=store_leases_released batches=%d", n)
        return n

    def in_flight(self) -> tuple[int, int]:
        """(batches in flight, readings in them)."""
        return self._book.in_flight()

    def _rows_of(self, seqs: Sequence[int]) -> list[Any]:
        """The rows of a batch still pending (seqs sorted)."""
        want = set(seqs)
        rows = self._reader.read(
            lambda r: r.execute(
                f"SELECT {SELECT_READING} FROM readings r WHERE seq BETWEEN ? AND ? AND {PENDING} ORDER BY seq",
                (seqs[0], seqs[-1]),
            ).fetchall()
        )
        return [row for row in rows if row[0] in want]

    def _free_rows(self, limit: int) -> list[Any]:
        """Up to ``limit`` of the oldest pending rows that no batch holds."""
        wm = self._state.low_watermark()
        if wm is None:
            return []
        taken = self._book.leased_seqs()
        rows = self._reader.read(
            lambda r: r.execute(
                f"SELECT {SELECT_READING} FROM readings r WHERE seq >= ? AND {PENDING} ORDER BY seq LIMIT ?",
                (wm, limit + len(taken)),
            ).fetchall()
        )
        return [row for row in rows if row[0] not in taken][:limit]

    def _open_rows(self, rows: Sequence[Any]) -> tuple[list[Reading], list[int]]:
        """(readings opened, seqs of the rows that failed to open)."""
        readings: list[Reading] = []
        failed: list[int] = []
        for row in rows:
            r = self._decoder.reading(row)
            if r is None:
                failed.append(row[0])
            else:
                readings.append(r)
        return readings, failed

    # --- writer thread ----------------------------------------------------------------------------

    def _commit_lease(
        self, old: Lease | None, readings: list[Reading], failed: list[int], now: datetime
    ) -> Batch | None:
        """Writer thread: dead-letter ``failed``, record the lease, hand out the batch. None: the
        plan went stale (the batch was acknowledged meanwhile, or had nothing left): plan again."""
        dead = self.dead_letter(failed)
        now_us = codec.to_us(now)
        w = self._w
        if old is not None:
            current = self._book.get(old.batch_id)
            if current is None or current.in_flight:
                return None
            if not readings:  # every reading of it was acknowledged or dead-lettered meanwhile
                self._forget(current)
                return None
            lease = dataclasses.replace(current, leased_us=now_us, attempt=current.attempt + 1, in_flight=True)
            if current.persisted:
                with contextlib.suppress(StoreFullError):  # on a full disk only the attempt count is lost
                    self._space.txn(
                        lambda: w.execute(
                            "UPDATE batches SET leased_us = ?, attempt = ? WHERE batch_id = ?",
                            (now_us, lease.attempt, lease.batch_id),
                        ),
                        "record a re-sent batch",
                    )
            self._book.put(lease)
            log.info(
                "event=store_batch_resent batch=%s readings=%d attempt=%d", lease.batch_id, len(readings), lease.attempt
            )
            return Batch(lease.batch_id, tuple(readings), now, lease.attempt)
        if not readings:
            return None if dead else Batch("", (), now, 0)
        seqs = tuple(r.seq for r in readings)
        batch_id = secrets.token_hex(8)
        while self._book.get(batch_id) is not None:  # pragma: no cover - 64 random bits
            batch_id = secrets.token_hex(8)
        lease = Lease(batch_id, seqs, now_us, 1, in_flight=True, persisted=False)
        self._book.put(lease)
        self._unsaved[batch_id] = None
        if not self._lazy:
            self.save_leases()
        return Batch(batch_id, tuple(readings), now, 1)

    def _owed_leases(self, *, aged_only: bool) -> list[Lease]:
        """Leases whose row is still owed (those acknowledged or forgotten meanwhile drop out);
        ``aged_only``: only those leased ``LEASE_ROW_AFTER_S`` ago or earlier."""
        owed = [x for x in map(self._book.get, self._unsaved) if x is not None and not x.persisted]
        if len(owed) != len(self._unsaved):
            self._unsaved = dict.fromkeys(x.batch_id for x in owed)
        if aged_only and owed:
            cutoff_us = codec.to_us(self._clock()) - int(LEASE_ROW_AFTER_S * 1_000_000)
            return [x for x in owed if x.leased_us <= cutoff_us]
        return owed

    def _insert_leases(self, owed: Sequence[Lease]) -> None:
        self._w.executemany(
            "INSERT INTO batches (batch_id, leased_us, attempt, seqs) VALUES (?, ?, ?, ?)",
            [(x.batch_id, x.leased_us, x.attempt, encode_seqs(x.seqs)) for x in owed],
        )

    def _settled(self, owed: Sequence[Lease], *, written: bool) -> None:
        """After COMMIT (``written``) or after giving up on a full disk: no longer owed."""
        for x in owed:
            self._unsaved.pop(x.batch_id, None)
        if written:
            self._book.mark_persisted(x.batch_id for x in owed)
            return
        for x in owed:  # still sent: an ack in this run marks it; after a restart its readings go in a new batch
            log.warning(
                "event=store_lease_not_persisted batch=%s readings=%d reason=disk_full", x.batch_id, len(x.seqs)
            )

    def save_leases(self, *, aged_only: bool = False) -> None:
        """Writer thread: write the rows still owed for leases (``aged_only``: those of leases at
        least ``LEASE_ROW_AFTER_S`` old), in their own transaction. Never raises: on a full disk
        they are given up (logged); on another error they stay owed and the next commit, fsync or
        close tries again."""
        owed = self._owed_leases(aged_only=aged_only)
        if not owed:
            return
        try:
            self._space.txn(lambda: self._insert_leases(owed), "record the leased batch")
        except StoreFullError:
            self._settled(owed, written=False)
            return
        except (sqlite3.Error, StoreError) as exc:
            log.warning("event=store_lease_save_failed batches=%d error=%s", len(owed), type(exc).__name__)
            return
        self._settled(owed, written=True)

    def ride_along(self) -> Callable[[], None] | None:
        """Writer thread, inside the readings transaction: write the rows owed for leases at
        least ``LEASE_ROW_AFTER_S`` old (in a savepoint: on a full disk the readings still commit).
        Returns what to do after COMMIT; if the transaction rolls back instead, the rows stay owed."""
        if not self._unsaved:
            return None
        owed = self._owed_leases(aged_only=True)
        if not owed:
            return None
        w = self._w
        w.execute("SAVEPOINT leases")
        try:
            self._insert_leases(owed)
        except sqlite3.Error as exc:
            w.execute("ROLLBACK TO leases")
            w.execute("RELEASE leases")
            if not is_full(exc):
                raise
            self._settled(owed, written=False)
            return None
        w.execute("RELEASE leases")
        return functools.partial(self._settled, owed, written=True)

    def _forget(self, lease: Lease) -> None:
        self._unsaved.pop(lease.batch_id, None)
        if lease.persisted:
            with contextlib.suppress(StoreFullError):  # else loaded again at the next open, forgotten then
                self._space.txn(
                    lambda: self._w.execute("DELETE FROM batches WHERE batch_id = ?", (lease.batch_id,)),
                    "forget a finished batch",
                )
        self._book.remove(lease.batch_id)

    def ack(self, batch_id: str) -> int:
        """Writer thread: the hub committed batch ``batch_id``; its readings still pending leave
        that state and the batch is forgotten. Returns how many readings left the pending state
        (0 for an unknown or already acknowledged batch)."""
        lease = self._book.get(batch_id)
        if lease is None:
            log.info("event=store_ack_unknown_batch batch=%s", _for_log(batch_id))
            return 0
        self._unsaved.pop(batch_id, None)  # acknowledged before its row was written: never written
        size = self._space.ack_chunk()
        chunks = [list(lease.seqs[i : i + size]) for i in range(0, len(lease.seqs), size)] or [[]]
        changed = 0
        for k, chunk in enumerate(chunks):  # small transactions on a nearly full disk; idempotent
            last = k == len(chunks) - 1
            changed += self.mark_synced(chunk, forget_batch=lease.batch_id if last and lease.persisted else None)
        self._book.remove(batch_id)
        return changed

    def mark_synced(self, seqs: list[int], *, forget_batch: str | None = None) -> int:
        """Writer thread: mark ``seqs`` (sorted) acknowledged in one transaction (and delete the
        batch ``forget_batch`` in it); returns how many left the pending state.

        The readings are recorded as seq ranges in ``acked`` (edge_agent.store.acked), not by
        rewriting each row; gaps left with no pending row are bridged, so the table stays short."""
        w = self._w
        acked = self._acked
        old = acked.ranges
        new = old
        newly: list[int] = []

        def do(ranges: bool) -> int:
            nonlocal new, newly
            new = old
            newly = []
            if seqs:
                want = set(seqs)
                rows = w.execute(
                    f"SELECT seq FROM readings r WHERE seq BETWEEN ? AND ? AND {PENDING}", (seqs[0], seqs[-1])
                ).fetchall()
                newly = [s for (s,) in rows if s in want]
                if newly and ranges:
                    new = acked_ranges.bridge_gaps(w, acked.with_seqs(newly))
                    acked_ranges.persist(w, old, new)
                elif newly:
                    # 0 -> 1 keeps the record the same size (SQLite stores both constants in the
                    # header), so this form never grows the database, even on a full disk
                    w.executemany("UPDATE readings SET synced = 1 WHERE seq = ? AND synced = 0", [(s,) for s in newly])
            if forget_batch is not None:
                w.execute("DELETE FROM batches WHERE batch_id = ?", (forget_batch,))
            return len(newly)

        what = "record the hub's acknowledgement"
        try:
            changed = self._space.txn(lambda: do(True), what)
        except StoreFullError:  # a range may need a new page: mark the rows themselves instead
            changed = self._space.txn(lambda: do(False), what)
        acked.replace(new)
        self._left_pending(changed, newly)
        return changed

    def dead_letter(self, seqs: Sequence[int]) -> int:
        """Writer thread: move pending rows that failed to open to the dead letters (``synced = 2``);
        returns how many moved. On a full disk they stay pending and are tried again next time."""
        seqs = [s for s in seqs if s not in self._acked]  # acknowledged meanwhile: not dead, gone
        if not seqs:
            return 0
        w = self._w

        def do() -> int:
            before = w.total_changes
            w.executemany("UPDATE readings SET synced = 2 WHERE seq = ? AND synced = 0", [(s,) for s in seqs])
            return w.total_changes - before

        try:
            n = self._space.txn(do, "move unreadable readings to the dead letters")
        except StoreFullError:
            log.warning("event=store_dead_letter_deferred table=readings rows=%d reason=disk_full", len(seqs))
            return 0
        if n:
            log.error("event=store_dead_letter table=readings rows=%d seqs=%s", n, encode_seqs(seqs)[:200])
        self._left_pending(n, seqs, dead_letter=True)
        return n

    def _left_pending(self, n: int, seqs: Sequence[int], *, dead_letter: bool = False) -> None:
        wm = self._state.left_pending(n, dead_letter=dead_letter)
        if wm is not None and wm in seqs:
            nxt = self._w.execute(f"SELECT MIN(seq) FROM readings r WHERE seq >= ? AND {PENDING}", (wm,)).fetchone()[0]
            self._state.advance_low_wm(wm, nxt)

    # --- by uid (callers' threads, then the writer) -------------------------------------------

    def pending_batch(self, limit: int) -> list[Reading]:
        """Oldest-first pending readings, decrypted, leases ignored; rows that fail to open go to
        the dead letters."""
        wm = self._state.low_watermark()
        if wm is None or limit <= 0:
            return []
        rows = self._reader.read(
            lambda r: r.execute(
                f"SELECT {SELECT_READING} FROM readings r WHERE seq >= ? AND {PENDING} ORDER BY seq LIMIT ?",
                (wm, limit),
            ).fetchall()
        )
        readings, failed = self._open_rows(rows)
        if failed:
            self._call(functools.partial(self.dead_letter, failed))
        return readings

    def oldest_pending_age_s(self, low_wm: int | None, now_us: int) -> float | None:
        if low_wm is None:
            return None
        row = self._reader.read(
            lambda r: r.execute(
                "SELECT measured_us + received_delta_us FROM readings r "
                f"WHERE seq >= ? AND {PENDING} ORDER BY seq LIMIT 1",
                (low_wm,),
            ).fetchone()
        )
        return None if row is None else max(0.0, (now_us - row[0]) / 1e6)

    def ack_chunks(self, uids: Sequence[str]) -> list[list[int]]:
        """The seqs to mark, in transactions small enough to commit on a nearly full disk."""
        return ack_chunks(uids, self._gateway_id, self._space.ack_chunk())
