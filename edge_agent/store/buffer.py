"""BufferStore: the encrypted offline buffer (readings outbox, alert lane, dashboard queries).

A thin facade over the modules of this package, each with one job (see docs/storage.md). It owns
the threading: the group-commit writer thread owns the write connection and runs every write
(readings, sync marks, alerts, retention) in submission order; queries run on the caller's thread
on a second connection (WAL lets them read while the writer commits). ``submit`` and
``submit_alert`` never block: they queue and return a future that resolves after COMMIT (alerts
go ahead of any reading backlog).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from device_drivers.records import Reading
from edge_agent.config import StoreConfig
from edge_agent.store import codec, opening, policy
from edge_agent.store.acked import AckedRanges
from edge_agent.store.alerts import AlertLane, alert_acks
from edge_agent.store.connection import files_size, fsync_wal, fsyncs_every_commit, without_own_fsync
from edge_agent.store.dashboard import DashboardQueries
from edge_agent.store.envelope import Cipher, choose_cipher
from edge_agent.store.errors import StoreClosedError, StoreError
from edge_agent.store.indexes import DeferredIndex
from edge_agent.store.ingest import ReadingIngest
from edge_agent.store.keys import KeyManager, open_keystore
from edge_agent.store.leases import LeaseBook
from edge_agent.store.outbox import Outbox
from edge_agent.store.reader import Decoder, Reader
from edge_agent.store.reserve import EmergencyReserve
from edge_agent.store.results import Batch, PendingAlert, RetentionResult, StoreStats
from edge_agent.store.retention import Retention
from edge_agent.store.rows import alert_columns
from edge_agent.store.space import SpaceManager
from edge_agent.store.state import BufferState
from edge_agent.store.visits import VisitLane, visit_plaintext
from edge_agent.store.writer import CommitResult, GroupCommitWriter

__all__ = ["Batch", "BufferStore", "PendingAlert", "RetentionResult", "StoreStats"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class BufferStore:
    """The offline buffer. Create with :meth:`open`; see the module docstring for threading."""

    path: Path
    gateway_id: str
    config: StoreConfig
    _clock: Callable[[], datetime]
    _synchronous: str
    _closed: bool
    _integrity_checked: bool
    _keys: KeyManager
    _state: BufferState
    _w: sqlite3.Connection  # the writer thread's connection
    _index: DeferredIndex
    _reader: Reader
    _ingest: ReadingIngest
    _outbox: Outbox
    _alerts: AlertLane
    _dashboard: DashboardQueries
    _visits: VisitLane
    _retention: Retention
    _writer: GroupCommitWriter

    def __init__(self) -> None:  # use BufferStore.open
        raise TypeError("use BufferStore.open(...)")

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        gateway_id: str,
        keystore_path: Path,
        config: StoreConfig,
        cipher: Cipher | str | None = None,
        page_size: int = 512,
        synchronous: str = "FULL",
        max_db_bytes: int | None = None,
        reserve_bytes: int = 8 * 1024 * 1024,
        emergency_reserve_bytes: int = 1024 * 1024,
        downsample_s: float = 60.0,
        key_rotation_days: float = 1.0,
        max_queued: int = 20_000,
        max_batch: int = 2_000,
        index_every: int = 256,
        index_interval_s: float = 30.0,
        max_in_flight: int = 8,
        lease_timeout_s: float | None = 600.0,
        clock: Callable[[], datetime] | None = None,
    ) -> BufferStore:
        """Create or open; migrate; integrity_check after an unclean shutdown; create the keystore
        (0600) if absent, refuse one readable by group/other; start the group-commit writer.

        Keyword arguments beyond the contract: ``cipher`` forces the cipher for new records
        (default: AES-256-GCM when the CPU has AES instructions, else ChaCha20-Poly1305);
        ``page_size`` applies to a new database; ``max_db_bytes`` caps the file with SQLite's
        ``max_page_count`` (a hard cap for tests and for filesystems without quotas);
        ``reserve_bytes`` is the free space the store tries to leave on the filesystem;
        ``emergency_reserve_bytes`` is the size of the file the store deletes when the filesystem
        is full, so acknowledgements and purges can still commit (0: none); ``max_in_flight`` bounds
        the batches leased and not yet acknowledged; a lease older than ``lease_timeout_s`` is
        released by the next ``lease`` (None: only ``release_leases`` releases); ``clock`` (UTC)
        is the only time source the store reads.
        """
        path = Path(path)
        clock = clock or (lambda: datetime.now(UTC))
        # fsync less often than commits (issue 14): the commits run with synchronous=NORMAL and
        # the writer fsyncs the WAL within fsync_window_ms (store/writer.py, "Deferred fsync")
        wanted_sync = synchronous
        defer_fsync = fsyncs_every_commit(synchronous) and config.fsync_window_ms > config.group_commit_ms
        if defer_fsync:
            synchronous = "NORMAL"
        chosen = choose_cipher(cipher)
        quota = int(config.quota_mb * 1024 * 1024)
        if max_db_bytes is not None:
            quota = min(quota, max_db_bytes)  # a hard cap is a quota the policy must see coming
        space_policy = policy.SpacePolicy(quota_bytes=quota, reserve_bytes=reserve_bytes, downsample_s=downsample_s)
        reserve = EmergencyReserve(path.with_name(path.name + "-reserve"), emergency_reserve_bytes)

        keys = KeyManager(
            open_keystore(Path(keystore_path), path, now=clock()),
            gateway_id=gateway_id,
            cipher=chosen,
            rotation=timedelta(days=key_rotation_days),
            clock=clock,
        )
        db = opening.open_database(
            path,
            gateway_id=gateway_id,
            keys=keys,
            page_size=page_size,
            synchronous=synchronous,
            max_db_bytes=max_db_bytes,
            clock=clock,
        )
        reserve.ensure()

        self = object.__new__(cls)
        self.path = path
        self.gateway_id = gateway_id
        self.config = config
        self._clock = clock
        self._synchronous = synchronous
        self._closed = False
        self._integrity_checked = db.integrity_checked
        self._keys = keys
        self._state = state = db.state
        self._w = w = db.w
        self._index = index = DeferredIndex(
            w, indexed_upto=db.indexed_upto, every=index_every, interval_s=index_interval_s, clock=clock
        )
        space = SpaceManager(
            w, path=path, page_size=db.page_size, space=space_policy, reserve=reserve, state=state, index=index
        )
        self._reader = reader = Reader(path)
        decoder = Decoder(keys.sealer, gateway_id, state)
        acked = AckedRanges(db.acked)
        self._ingest = ReadingIngest(
            w,
            path=path,
            gateway_id=gateway_id,
            keys=keys,
            space=space,
            index=index,
            state=state,
            acked=acked,
            clock=clock,
        )
        self._writer = GroupCommitWriter(
            self._ingest.commit_batch,
            window_s=config.group_commit_ms / 1000.0,
            max_batch=max_batch,
            max_queued=max_queued,
            on_overflow=self._ingest.count_overflow,
            sync_wal=self._save_leases_and_fsync if fsyncs_every_commit(wanted_sync) else None,
            sync_window_s=max(config.group_commit_ms, config.fsync_window_ms) / 1000.0,
            readings_defer_sync=defer_fsync,
            sync_now=policy.holds_spot_check,
            prepare=self._ingest.preseal,
        )
        self._ingest.before_commit = self._writer.prepare_ahead
        self._outbox = Outbox(
            w,
            gateway_id=gateway_id,
            reader=reader,
            decoder=decoder,
            space=space,
            state=state,
            book=LeaseBook(db.leases),
            clock=clock,
            call=self._call_bookkeeping,
            max_in_flight=max_in_flight,
            lease_timeout_s=lease_timeout_s,
            acked=acked,
            lazy_leases=defer_fsync,
        )
        self._ingest.ride_along = self._outbox.ride_along
        self._alerts = AlertLane(
            w,
            gateway_id=gateway_id,
            keys=keys,
            space=space,
            state=state,
            reader=reader,
            decoder=decoder,
            clock=clock,
            call=self._call,
        )
        self._dashboard = DashboardQueries(reader=reader, decoder=decoder, keys=keys)
        self._visits = VisitLane(w, gateway_id=gateway_id, keys=keys, reader=reader)
        self._retention = Retention(w, keys=keys, space=space, retention_days=config.retention_days)
        self._writer.start()
        snap = state.snapshot()
        log.info(
            "event=store_open path=%s cipher=%s last_seq=%d pending=%d dead_letter=%d batches_to_resend=%d "
            "integrity_checked=%s",
            path,
            chosen.label,
            snap.last_seq,
            snap.pending,
            snap.dead_letter,
            len(db.leases),
            db.integrity_checked,
        )
        return self

    # --- threading ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``fn`` on the writer thread, after everything queued before it."""
        if self._closed:
            raise StoreClosedError("store is closed")
        return self._writer.call(fn, timeout)

    def _call_bookkeeping(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """``_call`` for the sync's bookkeeping (leases, acks, dead letters): it waits for the
        readings' window instead of cutting it short, and commits without an fsync of its own
        (connection.without_own_fsync: the next reading commit, or the writer's deferred fsync
        within one window, makes it durable; a power cut before that means readings are sent
        again, and the hub keeps each uid once)."""
        if self._closed:
            raise StoreClosedError("store is closed")
        return self._writer.call(
            functools.partial(without_own_fsync, self._w, fn, self._synchronous),
            timeout,
            wait_window=True,
            defers_sync=True,
        )

    def _save_leases_and_fsync(self) -> None:
        """Writer thread: the fsync the writer owes (store/writer.py), with the rows owed for
        leases old enough to have missed their ack written first (store/outbox.py), so they are as
        durable as the rest."""
        self._outbox.save_leases(aged_only=True)  # never raises: bookkeeping only
        fsync_wal(self.path)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("store is closed")

    # --- readings -------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Highest Reading.seq ever committed or dropped (0 for a new store)."""
        return self._state.seen_last_seq()

    def submit(self, readings: Sequence[Reading]) -> Future[CommitResult]:
        """Queue readings for the group-commit writer; the future resolves after COMMIT."""
        self._check_open()
        return self._writer.submit(readings)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is committed."""
        if self._closed:
            return
        self._writer.call(self._outbox.save_leases, timeout)

    # --- outbox ---------------------------------------------------------------------------------

    def lease(self, limit: int) -> Batch:
        """The next batch for the hub: a batch leased before and released (by ``release_leases``,
        the lease timeout or a restart) is re-sent first, with its id and those of its readings
        still pending; else up to ``limit`` of the oldest pending readings that no other batch
        holds, under a new id recorded with its readings' seqs. Empty (``id == ""``) when
        ``max_in_flight`` batches are in flight or nothing is pending. Rows that fail to decrypt
        go to the dead letters. Waits for the writer (at most a group-commit window)."""
        self._check_open()
        return self._outbox.lease(limit)

    def ack(self, batch_id: str) -> int:
        """The hub committed batch ``batch_id`` (leased in this run or before a restart): its
        readings still pending leave that state; returns how many. 0 for an unknown or already
        acknowledged batch. Raises StoreFullError if even that cannot commit."""
        return self._call_bookkeeping(functools.partial(self._outbox.ack, batch_id))

    def release_leases(self, older_than_s: float | None = None) -> int:
        """Make leased, unacknowledged batches leasable again (on reconnect: all; else those leased
        at least ``older_than_s`` seconds ago); ``lease`` re-sends them with the same ids. Returns
        how many were released."""
        self._check_open()
        return self._outbox.release(older_than_s)

    def pending_batch(self, limit: int) -> list[Reading]:
        """Oldest-first unsynced readings, decrypted, leases ignored (rows that fail to decrypt go
        to the dead letters). For tests and tools; the sync uses ``lease``/``ack``."""
        self._check_open()
        return self._outbox.pending_batch(limit)

    def mark_synced(self, uids: Sequence[str]) -> int:
        """Mark readings acknowledged by the hub; returns how many left the pending state."""
        return sum(
            self._call_bookkeeping(functools.partial(self._outbox.mark_synced, c))
            for c in self._outbox.ack_chunks(uids)
        )

    # --- dashboard / scoring queries --------------------------------------------------------------

    def recent(
        self,
        *,
        since: datetime,
        patient_id: str | None = None,
        device_id: str | None = None,
        vital: str | None = None,
        limit: int = 10000,
    ) -> list[Reading]:
        """Readings measured at or after ``since`` (oldest first; the newest ``limit`` when more)."""
        return self._dashboard.recent(since=since, patient_id=patient_id, device_id=device_id, vital=vital, limit=limit)

    # --- visits (the dashboard's; sealed, edge_agent.store.visits) --------------------------------

    def save_visit(self, visit_id: str, payload: dict[str, object], *, is_open: bool, updated_at: datetime) -> int:
        """Insert or replace a visit (sealed) and wait for COMMIT; returns its new revision."""
        plain = visit_plaintext(payload)
        return self._call(
            functools.partial(
                self._visits.save, visit_id, plain, is_open=int(is_open), updated_us=codec.to_us(updated_at)
            )
        )

    def load_visits(self, *, open_only: bool = True) -> list[dict[str, object]]:
        """Visits (payload dicts with ``visit_id``), oldest change first."""
        self._check_open()
        return self._visits.load(open_only=open_only)

    # --- alerts lane ----------------------------------------------------------------------------

    def submit_alert(self, alert_id: str, payload: dict[str, object], *, updated_at: datetime) -> Future[int]:
        """Queue an insert or update of an alert (sealed like readings) ahead of any reading
        backlog; never blocks. The future resolves with the alert's new revision after COMMIT (the
        revision is pending until the hub acknowledges it), or raises StoreFullError (the disk is
        full even after purging synced history) or StoreError. ``payload`` is serialised now.

        The commit shares the fsync of the readings' commit (issue 14): it is made without one
        of its own, and the next reading commit, or the writer's deferred fsync within one window,
        makes it durable. So a power cut loses at most one window of alerts, as of readings."""
        self._check_open()
        plain, is_open, updated_us = alert_columns(payload, updated_at)
        save = functools.partial(self._alerts.save, alert_id, plain, is_open=is_open, updated_us=updated_us)
        return self._writer.submit_urgent(
            functools.partial(without_own_fsync, self._w, save, self._synchronous), defers_sync=True
        )

    def save_alert(self, alert_id: str, payload: dict[str, object], *, updated_at: datetime) -> int:
        """``submit_alert`` and wait for COMMIT; returns the new revision."""
        self._check_open()
        plain, is_open, updated_us = alert_columns(payload, updated_at)
        return self._writer.call_urgent(
            functools.partial(self._alerts.save, alert_id, plain, is_open=is_open, updated_us=updated_us)
        )

    def load_alerts(self, *, open_only: bool = False) -> list[dict[str, object]]:
        """Alerts (payload dicts) ordered by last update; ``open_only``: state is not 'cleared'."""
        return self._alerts.load(open_only=open_only)

    def pending_alerts(self, limit: int) -> list[PendingAlert]:
        """Unacknowledged alert revisions, oldest update first, each with its ``rev`` (stored with
        the alert, so it survives restarts). Revisions that fail to decrypt go to the dead letters."""
        self._check_open()
        return self._alerts.pending(limit)

    def mark_alerts_synced(self, acks: Iterable[tuple[str, int]]) -> int:
        """Mark acknowledged ``(alert_id, rev)`` pairs synced; an alert whose stored revision is no
        longer ``rev`` (updated since it was sent) stays pending. Returns how many were marked.
        A bare alert id raises TypeError: it cannot say which revision the hub saw."""
        pairs = alert_acks(acks)
        return self._call_bookkeeping(functools.partial(self._alerts.mark_synced, pairs))

    # --- retention, status, closing -------------------------------------------------------------

    def run_retention(self, now: datetime | None = None) -> RetentionResult:
        """Delete synced readings (and synced, cleared alerts) older than ``retention_days``;
        destroy data keys that no row uses any more. Unsynced rows are never deleted."""
        when = now or self._clock()
        result = self._call(functools.partial(self._retention.run, when))
        cutoff_us = codec.to_us(when - timedelta(days=self.config.retention_days))
        self._call(functools.partial(self._visits.purge_closed, cutoff_us))
        return result

    def rotate_data_key(self, timeout: float | None = None) -> int:
        """Start a new data key now, on the writer thread after everything queued before it
        (a remote ``rotate-keys``); returns its id. Rows already sealed keep their key until
        retention destroys it. :class:`KeystoreError` when the keystore cannot be written."""
        return self._call(functools.partial(self._keys.rotate_now, self._w), timeout)

    def stats(self) -> StoreStats:
        size = files_size(self.path)
        snap = self._state.snapshot()
        dropped: dict[str, int] = {}
        for per_vital in snap.dropped_by_reason.values():
            for vital, n in per_vital.items():
                dropped[vital] = dropped.get(vital, 0) + n
        age = None
        if not self._closed:
            try:
                age = self._outbox.oldest_pending_age_s(snap.low_wm, codec.to_us(self._clock()))
            except StoreError as exc:  # status must report a full or failing disk, not fail on it
                log.warning("event=store_stats_partial missing=oldest_pending_age_s error=%s", type(exc).__name__)
        batches, leased = self._outbox.in_flight()
        return StoreStats(
            stored_total=snap.stored_total,
            pending=snap.pending,
            oldest_pending_age_s=age,
            bytes_on_disk=size,
            dropped=dropped,
            disk_full=snap.disk_full,
            integrity_checked_at_start=self._integrity_checked,
            integrity_ok=True,  # a failed check refuses to open (StoreCorruptError)
            cipher=self._keys.cipher.label,
            decrypt_failures=snap.decrypt_failures,
            dropped_by_reason=snap.dropped_by_reason,
            space_level=snap.level,
            queued=self._writer.queued_readings,
            pending_alerts=snap.pending_alerts,
            last_seq=snap.last_seq,
            commits=snap.commits,
            dead_letter=snap.dead_letter,
            dead_letter_alerts=snap.dead_letter_alerts,
            batches_in_flight=batches,
            leased=leased,
        )

    def close(self) -> None:
        """Flush, index the tail, record a clean shutdown, stop the writer, close connections."""
        if self._closed:
            return
        try:
            self._writer.call(self._outbox.save_leases)
            self._writer.call(functools.partial(opening.finish, self._w, self._index, self._state))
        finally:
            self._closed = True
            self._writer.stop()
            self._reader.close()
            self._w.close()
        log.info("event=store_closed path=%s", self.path)

    @property
    def deferred_syncs(self) -> int:
        """fsyncs the writer made itself for commits made without one (store/writer.py)."""
        return self._writer.deferred_syncs

    @property
    def spot_syncs(self) -> int:
        """fsyncs made at once for a commit holding a spot check (store/writer.py)."""
        return self._writer.spot_syncs

    @staticmethod
    def quarantine(path: Path, now: datetime) -> Path:
        """Move a database that failed its integrity check (and its WAL and shared-memory files)
        aside as ``<name>.corrupt-<UTC time>``, so a fresh store can start; returns the new path.
        The keystore is left alone: it still opens whatever can be recovered from the old file.
        Only for a closed store; the decision to discard the buffer belongs to the caller."""
        return opening.quarantine(path, now)

    def __enter__(self) -> BufferStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
