"""The adaptive commit window (issue 14): long when readings trickle in, short under load, and a
reading still exists only once its commit is done; connections with a bounded page cache and
large, rare WAL checkpoints."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device_drivers.records import Reading
from edge_agent.config import StoreConfig
from edge_agent.store.connection import (
    CHECKPOINT_WAL_BYTES,
    READER_CACHE_KIB,
    WRITER_CACHE_KIB,
    connect_reader,
    connect_writer,
    fsync_wal,
    without_own_fsync,
)
from edge_agent.store.writer import GroupCommitWriter

from .conftest import GW, T0, OpenStore, make_reading, spot


def test_a_trickle_waits_for_the_window_and_a_crowd_commits_at_once(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=30_000))  # a window far longer than the test
    one = s.submit([make_reading(1)])
    time.sleep(0.2)
    assert not one.done()  # trickling: waits for companions, not stored yet
    crowd = [s.submit([make_reading(i)]) for i in range(2, 65)]  # now 64 wait: commit without the window
    assert all(len(f.result(10).stored) == 1 for f in [one, *crowd])
    assert s.stats().commits == 1  # the lone reading rode along in the same transaction


def test_a_command_waits_for_the_window_and_a_barrier_cuts_it_short(open_store: OpenStore) -> None:
    """A command (the sync's ack) behind waiting readings does not force an extra commit."""
    s = open_store(config=StoreConfig(group_commit_ms=30_000))
    first = s.submit([make_reading(1)])
    ack = threading.Thread(target=s.mark_synced, args=([f"{GW}:1"],))
    ack.start()
    time.sleep(0.3)
    assert not first.done() and ack.is_alive()  # both wait for the window
    s.flush(10)  # a barrier: commits now, then the command runs
    ack.join(10)
    assert first.done() and not ack.is_alive()
    assert s.stats().pending == 0  # the command ran after the reading's commit, in order


def test_the_default_window_is_one_second() -> None:
    assert StoreConfig().group_commit_ms == 1000


def test_connections_bound_their_page_cache_and_checkpoint_rarely(tmp_path: Path) -> None:
    w = connect_writer(tmp_path / "db.sqlite3", page_size=512, synchronous="FULL")
    r = connect_reader(tmp_path / "db.sqlite3")
    try:
        assert w.execute("PRAGMA cache_size").fetchone()[0] == -WRITER_CACHE_KIB
        assert r.execute("PRAGMA cache_size").fetchone()[0] == -READER_CACHE_KIB
        assert w.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == CHECKPOINT_WAL_BYTES // 512
    finally:
        r.close()
        w.close()


def test_bookkeeping_commits_without_its_own_fsync_and_restores_full(tmp_path: Path) -> None:
    w = connect_writer(tmp_path / "db.sqlite3", page_size=512, synchronous="FULL")
    try:
        seen = without_own_fsync(w, lambda: w.execute("PRAGMA synchronous").fetchone()[0], "FULL")
        assert seen == 1  # NORMAL while the bookkeeping runs
        assert w.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for the readings
        with pytest.raises(ZeroDivisionError):
            without_own_fsync(w, lambda: 1 / 0, "FULL")
        assert w.execute("PRAGMA synchronous").fetchone()[0] == 2  # restored after a failure too
        assert without_own_fsync(w, lambda: w.execute("PRAGMA synchronous").fetchone()[0], "NORMAL") == 2
    finally:
        w.close()


def test_acks_wait_for_the_window_and_survive_a_reopen(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=30_000))
    s.submit([make_reading(i) for i in range(1, 65)]).result(10)  # 64: committed at once
    batch = s.lease(10)
    assert s.ack(batch.id) == 10
    s.close()
    assert open_store().stats().pending == 54


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_a_deferred_commit_is_fsynced_by_the_writer_within_one_window_when_no_reading_comes() -> None:
    syncs: list[float] = []
    commits: list[float] = []

    def commit(batch: list[Reading]) -> list[bool]:
        commits.append(time.monotonic())
        return [True] * len(batch)

    w = GroupCommitWriter(commit, window_s=0.3, sync_wal=lambda: syncs.append(time.monotonic()))
    w.start()
    try:
        t0 = time.monotonic()
        assert w.submit_urgent(lambda: 7, defers_sync=True).result(5) == 7  # an alert: no fsync yet
        assert not syncs
        assert _wait(lambda: len(syncs) == 1)
        assert 0.25 <= syncs[0] - t0 < 2.0 and w.deferred_syncs == 1  # about one window later
        time.sleep(0.5)
        assert len(syncs) == 1  # once: nothing else is owed

        # a reading arriving after a deferred commit commits no later than the fsync was due, and
        # its own fsync (synchronous=FULL) is the one owed: the writer makes none of its own
        t1 = time.monotonic()
        w.call(lambda: None, defers_sync=True, wait_window=True)  # the sync's ack
        time.sleep(0.1)
        w.submit([make_reading(1)]).result(5)
        assert commits[-1] - t1 < 0.3 + 0.2
        time.sleep(0.6)
        assert len(syncs) == 1 and w.deferred_syncs == 1

        # a command that does not defer its fsync owes nothing
        w.submit_urgent(lambda: None).result(5)
        time.sleep(0.6)
        assert len(syncs) == 1
    finally:
        w.stop(5)


def test_a_deferred_fsync_that_fails_is_logged_and_the_writer_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise OSError(5, "Input/output error")

    w = GroupCommitWriter(lambda b: [True] * len(b), window_s=0.05, sync_wal=fail)
    w.start()
    try:
        w.submit_urgent(lambda: None, defers_sync=True).result(5)
        assert _wait(lambda: "event=store_deferred_sync_failed" in caplog.text)
        assert w.deferred_syncs == 0
        assert w.submit([make_reading(1)]).result(5).stored == (f"{GW}:1",)
    finally:
        w.stop(5)


def test_an_alert_shares_the_readings_fsync_and_is_made_durable_alone_within_a_window(
    open_store: OpenStore,
) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=200, fsync_window_ms=0))  # every reading commit fsyncs
    assert s.submit_alert("a1", {"alert_id": "a1", "state": "raised"}, updated_at=T0).result(5) == 1
    assert [a["alert_id"] for a in s.load_alerts()] == ["a1"]  # visible at once, before any fsync
    assert _wait(lambda: s.deferred_syncs == 1)  # no reading came: the writer fsynced the WAL itself
    alert = s.submit_alert("a2", {"alert_id": "a2", "state": "raised"}, updated_at=T0)
    s.submit([make_reading(1)]).result(5)  # the reading's commit carries the alert's fsync
    assert alert.result(5) == 1
    time.sleep(0.6)
    assert s.deferred_syncs == 1
    assert s._w.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for the readings


def test_with_an_fsync_window_readings_commit_at_once_and_the_writer_fsyncs_once_a_window() -> None:
    """Commits every few ms, one fsync per sync window, never later than the window after the
    first commit not yet fsynced, and the one still owed at stop is made."""
    syncs: list[float] = []
    commits: list[float] = []

    def commit(batch: list[Reading]) -> list[bool]:
        commits.append(time.monotonic())
        return [True] * len(batch)

    w = GroupCommitWriter(
        commit,
        window_s=0.01,
        sync_wal=lambda: syncs.append(time.monotonic()),
        sync_window_s=0.3,
        readings_defer_sync=True,
    )
    w.start()
    t0 = time.monotonic()
    try:
        for i in range(1, 51):  # a reading every 20 ms for about a second
            w.submit([make_reading(i)]).result(5)
            time.sleep(0.02)
        assert len(commits) == 50  # each committed within its 10 ms window, not held for the fsync
        assert 2 <= len(syncs) <= 5, syncs
        assert syncs[0] - t0 >= 0.25 and all(b - a >= 0.25 for a, b in itertools.pairwise(syncs))
        assert _wait(lambda: syncs[-1] > commits[-1])  # the last commits are fsynced within a window
        assert syncs[-1] - commits[-1] < 0.3 + 0.2
        n = len(syncs)
        time.sleep(0.5)
        assert len(syncs) == n  # nothing owed: no fsync for nothing
        w.call(lambda: None)  # any command may have written: it owes an fsync in this mode
        w.stop(5)  # ... which stop makes at once
        assert len(syncs) == n + 1
    finally:
        w.stop(5)


def test_the_store_defers_its_readings_fsync_to_the_fsync_window(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=5, fsync_window_ms=400))
    assert s._w.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the writer fsyncs
    t0 = time.monotonic()
    s.submit([make_reading(1)]).result(5)
    assert time.monotonic() - t0 < 0.3  # committed (visible, crash-safe) without waiting for the fsync
    assert s.recent(since=T0)[0].seq == 1 and s.deferred_syncs == 0
    assert _wait(lambda: s.deferred_syncs == 1)
    s.save_visit("v1", {"visit_id": "v1"}, is_open=True, updated_at=T0)  # any commit is covered
    assert _wait(lambda: s.deferred_syncs == 2)
    # a spot check (a blood pressure: nobody takes it again by itself) is durable before it exists
    s.submit([spot(2)]).result(5)
    assert s.spot_syncs == 1 and s.deferred_syncs == 2
    s.submit([make_reading(3), make_reading(4)]).result(5)  # a stream's seconds wait for the window
    assert s.spot_syncs == 1
    full = open_store(
        path=s.path.with_name("full.sqlite3"),
        keystore=s.path.with_name("full-keystore.json"),
        config=StoreConfig(group_commit_ms=5, fsync_window_ms=5),
    )
    assert full._w.execute("PRAGMA synchronous").fetchone()[0] == 2  # a window no longer than the commit's
    full.submit([make_reading(1)]).result(5)
    time.sleep(0.1)
    assert full.deferred_syncs == 0  # each commit fsynced itself
    assert StoreConfig().fsync_window_ms == 15000 and StoreConfig().group_commit_ms == 1000


def test_fsync_wal_without_a_wal_file_is_a_no_op(tmp_path: Path) -> None:
    fsync_wal(tmp_path / "nothing.sqlite3")
    w = connect_writer(tmp_path / "db.sqlite3", page_size=512, synchronous="FULL")
    try:
        w.execute("CREATE TABLE t (x)")
        fsync_wal(tmp_path / "db.sqlite3")  # the real file: no error
    finally:
        w.close()
