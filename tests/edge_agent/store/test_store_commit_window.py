"""The adaptive commit window (issue 14): long when readings trickle in, short under load, and a
reading still exists only once its commit is done; connections with a bounded page cache and
large, rare WAL checkpoints."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edge_agent.config import StoreConfig
from edge_agent.store.connection import (
    CHECKPOINT_WAL_BYTES,
    READER_CACHE_KIB,
    WRITER_CACHE_KIB,
    connect_reader,
    connect_writer,
    without_own_fsync,
)

from .conftest import GW, OpenStore, make_reading


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
