"""The group-commit writer: one thread, one FIFO, bounded in readings.

Readings submitted close together share one transaction: the writer waits up to the window
(counted from the first reading waiting) or until ``commit_at`` readings are queued, then hands
the batch (at most ``max_batch`` readings) to ``commit_batch`` on its own thread, which owns the
write connection. The window so adapts to the load (issue 14): when readings trickle in (a
station's few per second) it stretches to the whole window (``group_commit_ms``, 1 s), so one
fsync'd commit carries many readings and an SD card sees few small writes; when they pour in (a
glucometer's memory, a backlog) a commit goes as soon as ``commit_at`` readings wait. A reading
still exists only once its commit is done: a power cut loses at most one window of readings,
and an alert on a reading waits at most one window. Commands
(mark synced, alerts, retention, flush barriers) go through the same FIFO, so they run in
submission order and never race the readings. A command cuts the window of the readings queued
before it short, unless it is queued with ``wait_window``: the sync's leases and acks (every few
seconds) then wait for the window to end instead of costing one more fsync'd commit each.

The FIFO holds at most ``max_queued`` readings: a submission that does not fit is not queued
and ``on_overflow`` is told (the store counts those readings as dropped); it never blocks the
caller. (A submission larger than the bound is still accepted when the queue is empty.)

Urgent commands (alerts: ``submit_urgent``) have a lane of their own that the writer serves
before anything else waiting, in their own submission order: an alert waits at most for the
transaction already running, never for a backlog of readings.

Deferred fsync (issue 14): a command queued with ``defers_sync`` (the sync's bookkeeping, and the
alerts of ``submit_urgent(..., defers_sync=True)``) commits with ``synchronous=NORMAL``: it is
visible at once and survives a crash of the process, and the next reading commit's fsync makes
it durable against a power cut. If no reading commit comes within one window, the writer fsyncs
the WAL itself (``sync_wal``), so a power cut still loses at most one window; an SD card sees one
small write a window instead of one per alert.

With ``readings_defer_sync`` the reading commits defer their fsync too (the store's
``fsync_window_ms`` longer than its commit window): every commit is then made with
``synchronous=NORMAL`` and the writer fsyncs the WAL once ``sync_window_s`` after the first commit
not yet fsynced. A reading still exists (for the nurse, the scorer, the sync) once committed, and
survives a crash of the process; a power cut loses at most ``sync_window_s`` of commits. The
reason is the SD card: each fsync re-writes the WAL's last, partly filled 4 KiB page, which at a
station's few readings a second cost more bytes than the readings themselves (bench_station).
Except where ``sync_now(batch)`` says so (the store: a batch holding a spot check, a measurement
nobody can take again by itself, unlike a second of a continuous stream): that commit is fsynced
before its futures resolve, so it exists only once durable, as with ``synchronous=FULL``.

Sealing ahead (issue 14): with ``prepare``, the writer hands the chunks waiting behind the batch it
is committing to one helper thread (``prepare_ahead``, called by ``commit_batch`` just before its
COMMIT, during which SQLite runs without the GIL), and gives the results to the next
``commit_batch`` with the readings, one entry per reading (None where a chunk was not prepared).
The store seals readings there, so batch N+1 is sealed while batch N commits; ``commit_batch``
stays the judge of what is written (it checks each prepared row against the current data key).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from device_drivers.records import Reading
from edge_agent.store.errors import StoreClosedError, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What happened to one submission: uids stored (committed) and uids dropped (counted)."""

    stored: tuple[str, ...]
    dropped: tuple[str, ...]


@dataclass(slots=True)
class _Chunk:
    readings: Sequence[Reading]
    future: Future[CommitResult]
    at: float
    prepared: Future[Sequence[Any] | None] | None = None  # prepare(readings) on the helper thread


@dataclass(slots=True)
class _Command(Generic[T]):
    fn: Callable[[], T]
    future: Future[T]
    cuts: bool = True  # cuts the window of the readings waiting before it short
    defers_sync: bool = False  # commits without an fsync: durable at the next one (<= one window)


_SYNC = object()  # _take: the deferred fsync is due and nothing else is waiting


class CommitBatch(Protocol):
    """commit_batch(readings[, prepared]) -> one flag per reading: True stored, False dropped.
    ``prepared`` (only when the writer has ``prepare``): one entry per reading, None if unprepared."""

    def __call__(self, batch: list[Reading], prepared: Sequence[Any] | None = None, /) -> list[bool]: ...


# prepare(readings) -> one entry per reading (handed to commit_batch), or None (nothing prepared)
Prepare = Callable[[Sequence[Reading]], Sequence[Any] | None]


class RunOnWriter(Protocol):
    """Run ``fn`` on the writer thread after everything queued before it, and wait (``call``)."""

    def __call__(self, fn: Callable[[], T], timeout: float | None = None) -> T: ...


def _resolve(fut: Future[Any], value: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


def _joined(chunks: list[_Chunk]) -> list[Any]:
    """The chunks' prepared entries in batch order (None for each reading of an unprepared chunk);
    waits for a preparation still running (the writer would only do the same work)."""
    out: list[Any] = []
    for c in chunks:
        got = None
        if c.prepared is not None:
            try:
                got = c.prepared.result()
            except Exception:  # unprepared: commit_batch does the work itself
                got = None
        out.extend(got if got is not None and len(got) == len(c.readings) else [None] * len(c.readings))
    return out


class GroupCommitWriter:
    def __init__(
        self,
        commit_batch: CommitBatch,
        *,
        window_s: float,
        max_batch: int = 2000,
        commit_at: int = 64,
        max_queued: int = 20_000,
        on_overflow: Callable[[Sequence[Reading]], None] = lambda _r: None,
        sync_wal: Callable[[], None] | None = None,
        sync_window_s: float | None = None,
        readings_defer_sync: bool = False,
        sync_now: Callable[[Sequence[Reading]], bool] | None = None,
        prepare: Prepare | None = None,
        name: str = "store-writer",
    ) -> None:
        self._commit_batch = commit_batch
        self._prepare = prepare
        self._helper = None if prepare is None else ThreadPoolExecutor(1, thread_name_prefix=f"{name}-prepare")
        self._window_s = max(0.0, window_s)
        self._max_batch = max_batch
        self._commit_at = max(1, min(commit_at, max_batch))
        self._max_queued = max_queued
        self._on_overflow = on_overflow
        self._items: collections.deque[_Chunk | _Command[Any]] = collections.deque()
        self._urgent: collections.deque[_Command[Any]] = collections.deque()
        self._queued_readings = 0
        self._queued_cuts = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._sync_wal = sync_wal
        self._sync_window_s = self._window_s if sync_window_s is None else max(self._window_s, sync_window_s)
        self._readings_defer_sync = readings_defer_sync and sync_wal is not None
        self._sync_now = sync_now
        self.spot_syncs = 0  # fsyncs made at once for a batch that ``sync_now`` picked
        self.sync_failures = 0  # fsyncs of the WAL that failed (each is tried again a window later)
        self._sync_due: float | None = None  # when a deferred fsync must happen (writer thread only)
        self.deferred_syncs = 0  # fsyncs the writer made itself (not those of synchronous=FULL commits)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def queued_readings(self) -> int:
        return self._queued_readings

    def submit(self, readings: Sequence[Reading]) -> Future[CommitResult]:
        fut: Future[CommitResult] = Future()
        if not readings:
            fut.set_result(CommitResult((), ()))
            return fut
        with self._cond:
            if self._stopping:
                raise StoreClosedError("store is closed")
            if self._queued_readings and self._queued_readings + len(readings) > self._max_queued:
                overflow = True
            else:
                overflow = False
                idle = not self._items
                self._items.append(_Chunk(readings, fut, time.monotonic()))
                self._queued_readings += len(readings)
                # wake the writer only when this changes what it does (issue 14: one wake-up per
                # device chunk cost CPU for nothing): it was idle, or the batch is now full enough
                if idle or self._queued_readings >= self._commit_at:
                    self._cond.notify_all()
        if overflow:
            self._on_overflow(readings)
            fut.set_result(CommitResult((), tuple(r.uid for r in readings)))
        return fut

    def call(
        self, fn: Callable[[], T], timeout: float | None = None, *, wait_window: bool = False, defers_sync: bool = False
    ) -> T:
        """Run ``fn`` on the writer thread after everything queued before it; wait for its result.
        Readings waiting for their window are committed at once, or with ``wait_window`` at its end.
        ``defers_sync``: ``fn`` commits without an fsync (see the module docstring)."""
        if threading.current_thread() is self._thread:
            out = fn()
            if defers_sync or self._readings_defer_sync:
                self._owe_sync()
            return out
        fut: Future[T] = Future()
        with self._cond:
            if self._stopping and not self._thread.is_alive():
                raise StoreClosedError("store is closed")
            self._items.append(_Command(fn, fut, not wait_window, defers_sync))
            self._queued_cuts += not wait_window
            self._cond.notify_all()
        return fut.result(timeout)

    def submit_urgent(self, fn: Callable[[], T], *, defers_sync: bool = False) -> Future[T]:
        """Queue ``fn`` ahead of every reading and command waiting (FIFO among urgent commands);
        never blocks. The future resolves with its result, or its exception. ``defers_sync``:
        ``fn`` commits without an fsync (see the module docstring)."""
        fut: Future[T] = Future()
        with self._cond:
            if self._stopping:
                raise StoreClosedError("store is closed")
            self._urgent.append(_Command(fn, fut, True, defers_sync))
            self._cond.notify_all()
        return fut

    def call_urgent(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """:meth:`submit_urgent` and wait (inline when already on the writer thread)."""
        if threading.current_thread() is self._thread:
            return fn()
        return self.submit_urgent(fn).result(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Commit everything queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._helper is not None and not self._thread.is_alive():
            self._helper.shutdown(wait=True)

    def prepare_ahead(self) -> None:
        """Writer thread, before a step that runs without the GIL (``commit_batch``'s COMMIT): start
        ``prepare`` on the helper thread for the chunks of the next batch not prepared yet."""
        helper, prepare = self._helper, self._prepare
        if helper is None or prepare is None:
            return
        todo: list[_Chunk] = []
        with self._cond:
            n = 0
            for it in self._items:
                if not isinstance(it, _Chunk) or (todo and n + len(it.readings) > self._max_batch):
                    break
                n += len(it.readings)
                if it.prepared is None:
                    todo.append(it)
        for c in todo:
            try:
                c.prepared = helper.submit(prepare, c.readings)
            except RuntimeError:  # the helper is shut down: the writer seals
                return

    # --- the writer thread -------------------------------------------------------------------

    def _owe_sync(self) -> None:
        """Writer thread: a commit without fsync happened; the WAL must be fsynced within a window."""
        if self._sync_wal is not None and self._sync_due is None:
            self._sync_due = time.monotonic() + self._sync_window_s

    def _take(self) -> list[_Chunk] | _Command[Any] | object | None:
        with self._cond:
            while not self._items and not self._urgent:
                if self._sync_due is not None:
                    if self._stopping or time.monotonic() >= self._sync_due:
                        return _SYNC
                    self._cond.wait(self._sync_due - time.monotonic())
                    continue
                if self._stopping:
                    return None
                self._cond.wait()
            if self._urgent:
                return self._urgent.popleft()
            head = self._items[0]
            if isinstance(head, _Command):
                self._items.popleft()
                self._queued_cuts -= head.cuts
                return head
            deadline = head.at + self._window_s
            if self._sync_due is not None:  # this commit's fsync is the deferred one: not later than due
                deadline = min(deadline, self._sync_due)
            while (
                not self._stopping
                and not self._queued_cuts
                and not self._urgent
                and self._queued_readings < self._commit_at
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._urgent:  # an alert arrived during the window: it goes first, the window goes on
                return self._urgent.popleft()
            chunks: list[_Chunk] = []
            n = 0
            while self._items and isinstance(self._items[0], _Chunk):
                nxt = self._items[0]
                assert isinstance(nxt, _Chunk)
                if chunks and n + len(nxt.readings) > self._max_batch:
                    break
                self._items.popleft()
                chunks.append(nxt)
                n += len(nxt.readings)
            self._queued_readings -= n
            return chunks

    def _run(self) -> None:
        while True:
            item = self._take()
            if item is None:
                return
            if item is _SYNC:
                self._deferred_sync()
                continue
            self._handle(item)
            if self._sync_due is not None and time.monotonic() >= self._sync_due:
                self._deferred_sync()  # due while work kept coming: now, before the next item

    def _handle(self, item: list[_Chunk] | _Command[Any] | object) -> None:
        """Writer thread: run one command, or commit one batch and resolve its futures."""
        if isinstance(item, _Command):
            try:
                _resolve(item.future, item.fn())
            except BaseException as exc:
                _resolve(item.future, exc=exc)
            if item.defers_sync or self._readings_defer_sync:  # in that mode every commit is NORMAL
                self._owe_sync()
            return
        assert isinstance(item, list)
        batch = [r for c in item for r in c.readings]
        try:
            prepared = None if self._prepare is None else _joined(item)
            flags = self._commit_batch(batch) if prepared is None else self._commit_batch(batch, prepared)
        except Exception as exc:
            log.error("event=store_commit_failed readings=%d error=%s", len(batch), type(exc).__name__)
            err = exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {exc}")
            for c in item:
                _resolve(c.future, exc=err)
            return
        if not any(flags):
            pass
        elif self._readings_defer_sync:  # committed with synchronous=NORMAL: fsync within the window
            self._owe_sync()
            if self._sync_now is not None and self._sync_now(batch) and self._fsync():  # durable before it exists
                self.spot_syncs += 1
        else:  # a reading was written: its commit (synchronous=FULL) fsynced the WAL
            self._sync_due = None
        every = all(flags)
        pos = 0
        for c in item:
            if every:  # the usual case: one pass over the uids
                _resolve(c.future, CommitResult(tuple([r.uid for r in c.readings]), ()))
                continue
            stored: list[str] = []
            dropped: list[str] = []
            for r in c.readings:
                (stored if flags[pos] else dropped).append(r.uid)
                pos += 1
            _resolve(c.future, CommitResult(tuple(stored), tuple(dropped)))

    def _deferred_sync(self) -> None:
        """Writer thread: fsync the WAL for the commits made without one."""
        if self._fsync():
            self.deferred_syncs += 1

    def _fsync(self) -> bool:
        """Writer thread: fsync the WAL now; nothing is owed after it. False when it failed (logged;
        the next fsync, due within a window, covers the same commits)."""
        self._sync_due = None
        assert self._sync_wal is not None
        try:
            self._sync_wal()
        except OSError as exc:  # tried again a window later; logged the first time and every 100th
            self.sync_failures += 1
            if self.sync_failures == 1 or self.sync_failures % 100 == 0:
                log.warning("event=store_deferred_sync_failed error=%r failures=%d", exc.strerror, self.sync_failures)
            self._owe_sync()
            return False
        return True
