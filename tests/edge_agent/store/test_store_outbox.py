"""The readings outbox: leased batches acknowledged by id, across restarts; re-sends; bounds;
release and expiry on the store's clock; dead letters for rows that fail to open."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from edge_agent.config import StoreConfig
from edge_agent.store import Batch, BufferStore
from edge_agent.store.outbox import LEASE_ROW_AFTER_S

from .conftest import GW, T0, Clock, OpenStore, make_reading, spot


def _seqs(b: Batch) -> list[int]:
    return [r.seq for r in b.readings]


def _filled(open_store: OpenStore, n: int = 10) -> Path:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, n + 1)]).result(5)
    s.close()
    return Path(s.path)


def _edit(path: Path, *sql: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for q in sql:
            conn.execute(q)
    conn.close()


# --- leases and acks -----------------------------------------------------------------------------


def test_lease_then_ack_marks_exactly_that_batch(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 11)]).result(5)
    b1 = s.lease(4)
    b2 = s.lease(4)  # no ack in between: other readings
    assert _seqs(b1) == [1, 2, 3, 4] and _seqs(b2) == [5, 6, 7, 8]
    assert b1.id and b2.id and b1.id != b2.id and b1.attempt == b2.attempt == 1
    assert b1.readings == tuple(s.pending_batch(4)) and b1.uids == tuple(f"{GW}:{i}" for i in range(1, 5))
    st = s.stats()
    assert (st.batches_in_flight, st.leased, st.pending) == (2, 8, 10)
    assert s.ack(b2.id) == 4
    assert s.ack(b2.id) == 0 and s.ack("no-such-batch") == 0 and s.ack("") == 0  # idempotent, unknown ids
    assert [r.seq for r in s.pending_batch(100)] == [1, 2, 3, 4, 9, 10]
    assert _seqs(s.lease(4)) == [9, 10]
    st = s.stats()
    assert (st.batches_in_flight, st.leased, st.pending) == (2, 6, 6)


def test_ack_after_restart_marks_the_batch_leased_before(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 11)]).result(5)
    b1, b2 = s.lease(3), s.lease(3)
    s.close()  # the hub's acks are still on their way
    s = open_store()
    assert s.ack(b2.id) == 3  # exactly the readings of b2, leased before the restart
    assert [r.seq for r in s.pending_batch(100)] == [1, 2, 3, 7, 8, 9, 10]
    assert s.ack(b1.id) == 3
    assert [r.seq for r in s.pending_batch(100)] == [7, 8, 9, 10]
    left = sqlite3.connect(s.path).execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    assert left == 0  # acknowledged batches are forgotten


def test_unacknowledged_batches_are_resent_after_restart_with_their_ids(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 11)]).result(5)
    b1, b2 = s.lease(3), s.lease(3)
    s.close()
    s = open_store()
    r1, r2, r3 = s.lease(100), s.lease(100), s.lease(100)
    assert (r1.id, r1.readings, r1.attempt) == (b1.id, b1.readings, 2)  # re-sent first, same batch
    assert (r2.id, r2.readings, r2.attempt) == (b2.id, b2.readings, 2)
    assert _seqs(r3) == [7, 8, 9, 10] and r3.id not in (b1.id, b2.id) and r3.attempt == 1
    assert s.ack(r1.id) == 3 and s.ack(b2.id) == 3 and s.ack(r3.id) == 4
    assert s.stats().pending == 0 and s.lease(100).readings == ()


def test_in_flight_batches_are_bounded(open_store: OpenStore) -> None:
    s = open_store(max_in_flight=2)
    s.submit([make_reading(i) for i in range(1, 11)]).result(5)
    b1, b2 = s.lease(2), s.lease(2)
    full = s.lease(2)
    assert full.id == "" and full.readings == () and s.ack(full.id) == 0
    assert s.ack(b1.id) == 2
    assert _seqs(s.lease(2)) == [5, 6]
    assert s.stats().batches_in_flight == 2 and b2.id


def test_release_makes_batches_leasable_again_with_the_same_ids(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 8)]).result(5)
    b1, b2 = s.lease(3), s.lease(3)
    assert s.release_leases() == 2  # e.g. on reconnect
    assert s.stats().batches_in_flight == 0
    r1, r2, r3 = s.lease(3), s.lease(3), s.lease(3)
    assert (r1.id, r1.readings, r1.attempt) == (b1.id, b1.readings, 2)
    assert (r2.id, r2.readings) == (b2.id, b2.readings)
    assert _seqs(r3) == [7]
    assert s.release_leases() == 3 and s.release_leases() == 0


def test_leases_expire_on_the_store_clock(open_store: OpenStore) -> None:
    clock = Clock()
    s = open_store(clock=clock, lease_timeout_s=60)
    s.submit([make_reading(i) for i in range(1, 11)]).result(5)
    b1 = s.lease(3)
    assert b1.leased_at == T0
    clock.advance(seconds=30)
    b2 = s.lease(3)
    assert _seqs(b2) == [4, 5, 6]  # b1 is 30 s old: still in flight
    clock.advance(seconds=31)
    again = s.lease(3)  # b1 is 61 s old: expired, re-sent
    assert (again.id, again.readings, again.attempt, again.leased_at) == (b1.id, b1.readings, 2, clock.t)
    assert s.release_leases(older_than_s=40) == 0  # b2 is 31 s old
    assert s.release_leases(older_than_s=31) == 1
    assert s.lease(3).id == b2.id


def test_resent_batch_holds_only_what_is_still_pending(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 11)]).result(5)
    b = s.lease(5)
    assert s.mark_synced([f"{GW}:2", f"{GW}:4"]) == 2  # acknowledged by uid meanwhile
    s.release_leases()
    again = s.lease(5)
    assert again.id == b.id and _seqs(again) == [1, 3, 5]
    assert s.ack(b.id) == 3
    # a batch whose readings were all acknowledged by uid is forgotten when it comes up again
    c = s.lease(2)
    s.mark_synced(list(c.uids))
    s.release_leases()
    nxt = s.lease(2)
    assert nxt.id != c.id and _seqs(nxt) == [8, 9]
    assert s.ack(c.id) == 0


def test_old_outbox_api_still_works_next_to_leases(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 6)]).result(5)
    b = s.lease(3)
    assert [r.seq for r in s.pending_batch(10)] == [1, 2, 3, 4, 5]  # leases ignored
    assert s.mark_synced(list(b.uids)) == 3
    assert s.ack(b.id) == 0 and s.stats().pending == 2


def test_lease_limit_must_be_positive(open_store: OpenStore) -> None:
    s = open_store(clock=Clock())
    with pytest.raises(ValueError):
        s.lease(0)
    assert s.lease(10) == Batch("", (), T0, 0)  # nothing pending: an empty batch


def test_lease_and_ack_work_on_a_full_disk(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=1, quota_mb=1024), max_db_bytes=200 * 1024)
    seq = 0
    dropped = 0
    while dropped < 50:
        res = s.submit([spot(seq + i) for i in range(1, 51)]).result(10)
        seq += 50
        dropped += len(res.dropped)
    assert s.stats().disk_full
    total = s.stats().pending
    acked = 0
    while True:
        b = s.lease(500)
        if not b.readings:
            break
        acked += s.ack(b.id)
    assert acked == total and s.stats().pending == 0


def _batch_rows(path: Path | str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT batch_id FROM batches ORDER BY n")]
    finally:
        conn.close()


def test_a_lease_row_rides_along_with_a_readings_commit_once_its_ack_is_late(open_store: OpenStore) -> None:
    clock = Clock()
    s = open_store(config=StoreConfig(group_commit_ms=10, fsync_window_ms=60_000), clock=clock)
    s.submit([make_reading(i) for i in range(1, 7)]).result(5)
    b1 = s.lease(3)
    assert _batch_rows(s.path) == []  # not by a commit of its own
    s.submit([make_reading(7)]).result(5)
    assert _batch_rows(s.path) == []  # young: its ack normally comes within a round trip
    clock.advance(seconds=LEASE_ROW_AFTER_S - 0.001)
    s.submit([make_reading(8)]).result(5)
    assert _batch_rows(s.path) == []
    clock.advance(seconds=0.001)
    s.submit([make_reading(9)]).result(5)
    assert _batch_rows(s.path) == [b1.id]  # late: in the readings' transaction
    b2 = s.lease(3)
    clock.advance(seconds=LEASE_ROW_AFTER_S)
    assert s.ack(b2.id) == 3  # acknowledged before any commit carried its row: never written
    s.submit([make_reading(10)]).result(5)
    assert _batch_rows(s.path) == [b1.id]
    assert s.ack(b1.id) == 3 and _batch_rows(s.path) == []
    s.close()


def test_a_lease_row_stays_owed_when_its_readings_transaction_rolls_back(open_store: OpenStore) -> None:
    clock = Clock()
    s = open_store(config=StoreConfig(group_commit_ms=10, fsync_window_ms=60_000), clock=clock)
    s.submit([make_reading(i) for i in range(1, 7)]).result(5)
    b1 = s.lease(3)
    outbox, w = s._outbox, s._w
    clock.advance(seconds=LEASE_ROW_AFTER_S)

    def rolled_back() -> object:  # a readings transaction that carried the row, then failed
        w.execute("BEGIN IMMEDIATE")
        after = outbox.ride_along()
        w.execute("ROLLBACK")
        return after

    assert s._call(rolled_back) is not None
    assert _batch_rows(s.path) == []
    s.flush()  # still owed: written by the next chance
    assert _batch_rows(s.path) == [b1.id]
    s.close()


def _wait_for_deferred_fsync(s: BufferStore, after: int) -> None:
    deadline = time.monotonic() + 5
    while s.deferred_syncs <= after and time.monotonic() < deadline:  # no readings come: the writer's fsync
        time.sleep(0.01)
    assert s.deferred_syncs > after


def test_a_late_lease_row_is_written_before_the_deferred_fsync_and_every_owed_row_at_close(
    open_store: OpenStore,
) -> None:
    clock = Clock()
    s = open_store(config=StoreConfig(group_commit_ms=10, fsync_window_ms=200), clock=clock)
    s.submit([make_reading(i) for i in range(1, 8)]).result(5)
    synced = s.deferred_syncs
    b1 = s.lease(3)
    _wait_for_deferred_fsync(s, synced)
    assert _batch_rows(s.path) == []  # young at that fsync: not written
    clock.advance(seconds=LEASE_ROW_AFTER_S)
    synced = s.deferred_syncs
    assert s.mark_synced([f"{GW}:7"]) == 1  # bookkeeping (no readings commit to ride along): an fsync owed
    _wait_for_deferred_fsync(s, synced)
    assert _batch_rows(s.path) == [b1.id]  # late at this one: written first
    b2 = s.lease(3)  # young
    s.close()
    assert _batch_rows(s.path) == [b1.id, b2.id]  # at close, whatever their age
    s = open_store(config=StoreConfig(group_commit_ms=10, fsync_window_ms=200), clock=clock)
    assert s.ack(b2.id) == 3 and s.ack(b1.id) == 3  # the acks after a restart mark exactly those


def test_without_the_fsync_window_a_lease_row_is_written_at_once(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=10, fsync_window_ms=10))
    s.submit([make_reading(i) for i in range(1, 7)]).result(5)
    b1 = s.lease(3)
    assert _batch_rows(s.path) == [b1.id]


def test_lease_not_recorded_on_a_full_disk_is_still_sent_and_acknowledged(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    s = open_store(
        config=StoreConfig(group_commit_ms=1, quota_mb=1024),
        max_db_bytes=200 * 1024,
        emergency_reserve_bytes=0,
        max_in_flight=10_000,
    )
    seq = 0
    dropped = 0
    while dropped < 50:
        res = s.submit([spot(seq + i) for i in range(1, 51)]).result(10)
        seq += 50
        dropped += len(res.dropped)
    leased: list[Batch] = []
    with caplog.at_level(logging.WARNING, logger="edge_agent.store"):
        for _ in range(500):  # one reading per batch until a batch row no longer fits
            leased.append(s.lease(1))
            s.flush()  # a lease's row is written with the next commit, at flush or before the fsync
            if "event=store_lease_not_persisted" in caplog.text:
                break
    assert "event=store_lease_not_persisted" in caplog.text
    unrecorded = leased.pop()
    assert unrecorded.readings and unrecorded.id
    assert all(s.ack(b.id) == 1 for b in leased)
    s.close()
    s = open_store()  # the unrecorded lease is gone; its reading is leased again under a new id
    again = s.lease(1)
    assert again.readings == unrecorded.readings and again.id != unrecorded.id
    assert s.ack(unrecorded.id) == 0 and s.ack(again.id) == 1


# --- dead letters --------------------------------------------------------------------------------

TAMPER = [
    "UPDATE readings SET payload = substr(payload, 1, length(payload) - 1) WHERE seq = 2",
    "UPDATE readings SET vital = 1 WHERE seq = 2",
    "UPDATE readings SET key_id = 77 WHERE seq = 2",  # key gone
]


@pytest.mark.parametrize("sql", TAMPER)
def test_rows_that_fail_to_open_go_to_the_dead_letters(
    open_store: OpenStore, sql: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _filled(open_store, 4)
    _edit(path, sql)
    s = open_store()
    assert s.stats().pending == 4
    with caplog.at_level(logging.ERROR, logger="edge_agent.store"):
        b = s.lease(10)
    assert _seqs(b) == [1, 3, 4]
    assert "event=store_dead_letter table=readings rows=1 seqs=2" in caplog.text
    st = s.stats()
    assert (st.pending, st.dead_letter, st.decrypt_failures, st.stored_total) == (3, 1, 1, 4)
    assert s.ack(b.id) == 3
    assert s.lease(10).readings == ()  # never leased again
    assert s.pending_batch(10) == [] and s.stats().oldest_pending_age_s is None
    s.close()
    s = open_store()
    st = s.stats()
    assert (st.pending, st.dead_letter) == (0, 1)  # the state is on disk
    assert s.lease(10).readings == ()


def test_pending_batch_also_moves_failures_to_the_dead_letters(open_store: OpenStore) -> None:
    path = _filled(open_store, 4)
    _edit(path, "UPDATE readings SET device_id = 'other' WHERE seq = 3")
    s = open_store()
    assert [r.seq for r in s.pending_batch(10)] == [1, 2, 4]
    assert (s.stats().pending, s.stats().dead_letter) == (3, 1)
    assert [r.seq for r in s.pending_batch(10)] == [1, 2, 4] and s.stats().decrypt_failures == 1


def test_dead_letter_at_the_low_watermark_moves_it_on(open_store: OpenStore) -> None:
    path = _filled(open_store, 3)
    _edit(path, "UPDATE readings SET vital = 1 WHERE seq = 1")
    s = open_store()
    assert _seqs(s.lease(1)) == [2]  # seq 1 died on the way
    assert _seqs(s.lease(5)) == [3]
