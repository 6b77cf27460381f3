"""Acknowledged seq ranges instead of a row rewrite per acknowledged reading (issue 14): the same
guarantees (pending until the hub's ack, re-sent across restarts, retention only of synced rows),
far fewer WAL frames, rows never rewritten, and a table kept short by bridging gaps that hold
no pending row."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import StoreConfig
from edge_agent.store.acked import PENDING, AckedRanges, runs

from .conftest import GW, T0, OpenStore, make_reading


def _table(db: Path) -> tuple[list[tuple[int, int]], dict[int, int]]:
    conn = sqlite3.connect(db)
    try:
        ranges = conn.execute("SELECT lo, hi FROM acked ORDER BY lo").fetchall()
        flags = dict(conn.execute("SELECT seq, synced FROM readings").fetchall())
        return ranges, flags
    finally:
        conn.close()


@given(st.lists(st.integers(1, 200), max_size=60), st.lists(st.integers(1, 200), max_size=60))
def test_ranges_hold_exactly_the_seqs_added(first: list[int], second: list[int]) -> None:
    a = AckedRanges(runs(first))
    a.replace(a.with_seqs(second))
    assert {s for s in range(0, 202) if s in a} == set(first) | set(second)
    ranges = a.ranges
    assert all(lo <= hi for lo, hi in ranges)
    assert all(ranges[i][1] + 1 < ranges[i + 1][0] for i in range(len(ranges) - 1))  # disjoint, not adjacent


def test_runs_and_bad_ranges() -> None:
    assert runs([7, 1, 2, 3, 3]) == [(1, 3), (7, 7)]
    assert AckedRanges.merged([(5, 9), (1, 4), (12, 12)]) == ((1, 9), (12, 12))
    assert "x" not in AckedRanges([(1, 3)])
    with pytest.raises(ValueError):
        AckedRanges([(4, 3)])


def test_an_ack_records_ranges_not_rows_and_they_survive_a_crash_and_a_close(
    open_store: OpenStore, tmp_path: Path
) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=1))
    s.submit([make_reading(i) for i in range(1, 101)]).result(5)
    first, second = s.lease(40), s.lease(40)
    assert s.ack(second.id) == 40 and s.ack(first.id) == 40
    s.flush()
    ranges, flags = _table(s.path)
    assert ranges == [(1, 80)]  # merged: the two batches are one run
    assert set(flags.values()) == {0}  # no row was rewritten
    st = s.stats()
    assert st.pending == 20 and st.batches_in_flight == 0
    assert [r.seq for r in s.lease(100).readings] == list(range(81, 101))  # only the unacknowledged
    assert s.ack("no-such-batch") == 0

    # a crash (a copy of the live files), and a clean close: the ranges are the record either way
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy(f"{s.path}{suffix}", crashed / f"buffer.sqlite3{suffix}")
    shutil.copy(tmp_path / "keystore.json", crashed / "keystore.json")
    s.close()
    ranges, flags = _table(s.path)
    assert ranges == [(1, 80)] and set(flags.values()) == {0}  # a close rewrites no row either
    again = open_store(path=crashed / "buffer.sqlite3", keystore=crashed / "keystore.json")
    st = again.stats()
    assert st.pending == 20 and st.stored_total == 100
    assert [r.seq for r in again.lease(100).readings] == list(range(81, 101))
    assert _table(again.path)[0] == [(1, 80)]


def test_an_ack_writes_a_few_wal_frames_not_a_page_per_row(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=1), page_size=512)
    s.submit([make_reading(i) for i in range(1, 301)]).result(5)
    batch = s.lease(200)
    s.flush()
    wal = Path(f"{s.path}-wal")
    before = wal.stat().st_size
    changes = s._w.total_changes
    assert s.ack(batch.id) == 200
    s.flush()
    frames = (wal.stat().st_size - before) / (512 + 24)
    assert frames <= 6, frames  # the batches row and one range (a row rewrite per reading: ~60)
    assert s._w.total_changes - changes <= 2


def test_gaps_without_pending_rows_are_bridged_and_retention_deletes_only_synced_rows(
    open_store: OpenStore,
) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=1, retention_days=1))
    s.submit([make_reading(i) for i in (*range(1, 41), *range(45, 101))]).result(5)  # 41-44 never stored
    assert s.mark_synced([f"{GW}:{i}" for i in range(1, 31)]) == 30
    assert s.mark_synced([f"{GW}:{i}" for i in range(51, 61)]) == 10
    s.flush()
    assert _table(s.path)[0] == [(1, 30), (51, 60)]  # 31-40 and 45-50 are pending: the gap stays
    assert s.mark_synced([f"{GW}:{i}" for i in (*range(31, 41), *range(45, 51))]) == 16
    s.flush()
    assert _table(s.path)[0] == [(1, 60)]  # 41-44 were never stored: bridged, no row rewritten
    assert set(_table(s.path)[1].values()) == {0}
    assert s.stats().pending == 40 and [r.seq for r in s.lease(100).readings] == list(range(61, 101))
    later = T0 + timedelta(days=30)
    assert s.run_retention(later).readings_deleted == 56  # the held ones; 61-100 are pending
    assert sorted(_table(s.path)[1]) == list(range(61, 101)) and s.stats().pending == 40


def test_a_row_stored_later_inside_a_range_is_pending(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=1))
    s.submit([make_reading(i) for i in (*range(1, 11), *range(13, 21))]).result(5)
    assert s.mark_synced([f"{GW}:{i}" for i in range(1, 21)]) == 18
    s.flush()
    assert _table(s.path)[0] == [(1, 20)]  # 11 and 12 were never stored: bridged
    s.submit([make_reading(12)]).result(5)  # an out-of-order submission lands in the range
    s.flush()
    assert _table(s.path)[0] == [(1, 11), (13, 20)]
    assert s.stats().pending == 1 and [r.seq for r in s.lease(10).readings] == [12]


@given(st.lists(st.integers(1, 60), max_size=30), st.lists(st.integers(1, 60), max_size=10))
def test_without_takes_exactly_those_seqs_out(held: list[int], out: list[int]) -> None:
    a = AckedRanges(runs(held))
    a.replace(a.without(out))
    assert {q for q in range(0, 62) if q in a} == set(held) - set(out)
    assert a.top == max(set(held) - set(out), default=0)


def test_pending_queries_agree_with_the_ranges(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=1))
    s.submit([make_reading(i) for i in range(1, 21)]).result(5)
    s.mark_synced([f"{GW}:{i}" for i in (1, 2, 3, 7, 8, 20)])
    s.flush()
    assert [r.seq for r in s.pending_batch(100)] == [4, 5, 6, *range(9, 20)]
    conn = sqlite3.connect(s.path)
    try:
        got = [q for (q,) in conn.execute(f"SELECT seq FROM readings r WHERE {PENDING} ORDER BY seq")]
    finally:
        conn.close()
    assert got == [4, 5, 6, *range(9, 20)]
    assert s.stats().pending == 14 and s.stats().oldest_pending_age_s is not None


def test_when_a_range_cannot_be_written_the_rows_are_marked_instead(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full-disk fallback (a range may need a new page; 0 -> 1 in place never does), and the
    cost the ranges save: the same ack rewrites a page per few rows."""

    def full(*_a: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("edge_agent.store.acked.persist", full)
    s = open_store(config=StoreConfig(group_commit_ms=1), page_size=512)
    s.submit([make_reading(i) for i in range(1, 301)]).result(5)
    batch = s.lease(200)
    s.flush()
    before = s._w.total_changes
    assert s.ack(batch.id) == 200
    s.flush()
    assert s._w.total_changes - before >= 200  # one row rewrite per reading
    ranges, flags = _table(s.path)
    assert ranges == [] and sorted(q for q, v in flags.items() if v == 1) == list(range(1, 201))
    assert s.stats().pending == 100 and [r.seq for r in s.lease(300).readings] == list(range(201, 301))
