"""BufferStore API on real SQLite files: outbox, queries, alerts, group commit, restarts."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from device_drivers.records import Vital
from edge_agent.config import StoreConfig
from edge_agent.store import BufferStore, Cipher, CommitResult, StoreClosedError

from .conftest import GW, T0, Clock, OpenStore, make_reading, spot


def test_submit_resolves_after_commit_and_reads_back(open_store: OpenStore) -> None:
    s = open_store()
    readings = [make_reading(i) for i in range(1, 21)]
    res = s.submit(readings).result(5)
    assert res == CommitResult(stored=tuple(r.uid for r in readings), dropped=())
    # committed means visible to another connection right now
    n = sqlite3.connect(s.path).execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    assert n == 20
    assert s.pending_batch(100) == readings
    assert s.last_seq == 20


def test_plaintext_never_in_the_file(open_store: OpenStore, tmp_path: Path) -> None:
    s = open_store()
    s.submit([make_reading(1, patient_id="PATIENT-SECRET-42", value=87.25)]).result(5)
    s.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("buffer"))
    assert b"PATIENT-SECRET-42" not in blob
    assert b"masimo-ascii" not in blob  # the source format is sealed too
    assert b"87.25" not in blob


def test_pending_then_mark_synced(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 11)]).result(5)
    batch = s.pending_batch(4)
    assert [r.seq for r in batch] == [1, 2, 3, 4]
    assert s.mark_synced([r.uid for r in batch]) == 4
    assert s.mark_synced([r.uid for r in batch]) == 0  # idempotent
    assert s.mark_synced(["other-gw:5", "garbage"]) == 0
    # acks out of order leave a hole that is still pending
    assert s.mark_synced([f"{GW}:7"]) == 1
    assert [r.seq for r in s.pending_batch(100)] == [5, 6, 8, 9, 10]
    st = s.stats()
    assert (st.pending, st.stored_total) == (5, 10)


def test_state_survives_restart(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 6)]).result(5)
    s.mark_synced([f"{GW}:1", f"{GW}:2"])
    s.save_alert("al-1", {"alert_id": "al-1", "state": "raised"}, updated_at=T0)
    s.close()
    s2 = open_store()
    assert s2.last_seq == 5
    assert [r.seq for r in s2.pending_batch(10)] == [3, 4, 5]
    assert s2.load_alerts() == [{"alert_id": "al-1", "state": "raised"}]
    st = s2.stats()
    assert st.integrity_checked_at_start is False and st.pending == 3 and st.stored_total == 5


def test_last_seq_survives_retention_of_everything(open_store: OpenStore) -> None:
    clock = Clock()
    s = open_store(clock=clock)
    s.submit([make_reading(i) for i in range(1, 6)]).result(5)
    s.mark_synced([f"{GW}:{i}" for i in range(1, 6)])
    clock.advance(days=30)
    assert s.run_retention().readings_deleted == 5
    s.close()
    assert open_store().last_seq == 5  # seq never goes back, so uids stay unique for ever


def test_recent_filters_and_limit(open_store: OpenStore) -> None:
    s = open_store(index_every=7)  # small, so some rows are indexed and some are in the tail
    rs = []
    for i in range(1, 41):
        pid = "P-A" if i % 2 else "P-B"
        vital = Vital.SPO2 if i % 4 else Vital.HEART_RATE
        rs.append(make_reading(i, patient_id=pid, vital=vital, device_id="oxi-1" if i < 30 else "oxi-2"))
    for r in rs:  # one by one, so indexing happens between commits
        s.submit([r])
    s.flush()
    since = T0 + timedelta(seconds=10)
    got = s.recent(since=since)
    assert [r.seq for r in got] == list(range(10, 41))
    got = s.recent(since=since, patient_id="P-A")
    assert [r.seq for r in got] == [i for i in range(10, 41) if i % 2]
    assert all(r.patient_id == "P-A" for r in got)
    got = s.recent(since=since, patient_id="P-B", vital="heart_rate")
    assert [r.seq for r in got] == [i for i in range(10, 41) if i % 4 == 0]
    got = s.recent(since=since, device_id="oxi-2")
    assert [r.seq for r in got] == list(range(30, 41))
    got = s.recent(since=since, limit=5)
    assert [r.seq for r in got] == list(range(36, 41))  # the newest five, oldest first
    assert s.recent(since=since, patient_id="nobody") == []
    assert got == rs[35:40]


def test_recent_same_after_close_reindex(open_store: OpenStore) -> None:
    s = open_store(index_every=10_000, index_interval_s=3600)
    s.submit([make_reading(i) for i in range(1, 31)]).result(5)
    before = s.recent(since=T0, patient_id="P-0001")
    s.close()  # close indexes the tail
    s2 = open_store()
    assert s2.recent(since=T0, patient_id="P-0001") == before
    assert len(before) == 30


def test_group_commit_shares_transactions(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=300))
    futs = [s.submit([make_reading(i)]) for i in range(1, 51)]
    results = [f.result(5) for f in futs]
    assert all(len(r.stored) == 1 for r in results)
    assert s.stats().commits <= 3  # 50 readings inside one window: one commit (slack for a slow CI)


def test_future_not_done_before_window(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=400))
    fut = s.submit([make_reading(1)])
    time.sleep(0.1)
    assert not fut.done()  # still waiting for companions: not stored yet
    assert fut.result(5).stored == (f"{GW}:1",)


def test_flush_waits_for_everything(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=200))
    futs = [s.submit([make_reading(i)]) for i in range(1, 6)]
    s.flush(5)
    assert all(f.done() for f in futs)


def test_submit_from_many_threads(open_store: OpenStore) -> None:
    s = open_store()

    def worker(base: int) -> None:
        for i in range(50):
            s.submit([make_reading(base + i)])

    threads = [threading.Thread(target=worker, args=(k * 1000 + 1,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.flush(10)
    assert s.stats().stored_total == 200


def test_bounded_queue_drops_and_counts(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=500), max_queued=10)
    first = s.submit([make_reading(i) for i in range(1, 9)])
    over = s.submit([make_reading(i) for i in range(9, 14)])  # 8 + 5 > 10: refused, not blocking
    assert over.done() and over.result().dropped == tuple(f"{GW}:{i}" for i in range(9, 14))
    assert len(first.result(5).stored) == 8
    st = s.stats()
    assert st.dropped == {"spo2": 5} and st.dropped_by_reason == {"queue_full": {"spo2": 5}}
    assert s.last_seq == 13
    s.close()
    s2 = open_store()
    assert s2.stats().dropped == {"spo2": 5}  # drop counts persist until the hub is told
    assert s2.last_seq == 13


def test_duplicate_seq_is_dropped_not_fatal(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(1), make_reading(2)]).result(5)
    res = s.submit([make_reading(3), make_reading(2, value=50.0), make_reading(4)]).result(5)
    assert res.stored == (f"{GW}:3", f"{GW}:4") and res.dropped == (f"{GW}:2",)
    assert s.stats().dropped_by_reason == {"duplicate": {"spo2": 1}}
    assert [r.value for r in s.pending_batch(5)] == [97.0] * 4  # the first reading with seq 2 stays


def test_alert_lane(open_store: OpenStore) -> None:
    s = open_store()
    a = {"alert_id": "a1", "state": "raised", "level": "high"}
    s.save_alert("a1", a, updated_at=T0)
    s.save_alert("a2", {"alert_id": "a2", "state": "cleared"}, updated_at=T0 + timedelta(seconds=1))
    assert [x["alert_id"] for x in s.load_alerts()] == ["a1", "a2"]
    assert [x["alert_id"] for x in s.load_alerts(open_only=True)] == ["a1"]
    sent = s.pending_alerts(10)
    assert [(x.alert_id, x.rev) for x in sent] == [("a1", 1), ("a2", 1)]
    assert sent[0].payload == a and sent[0].updated_at == T0
    # a1 changes after it was handed out and before the ack: the change must still go out
    assert s.save_alert("a1", a | {"state": "acknowledged"}, updated_at=T0 + timedelta(seconds=2)) == 2
    assert s.mark_alerts_synced([(x.alert_id, x.rev) for x in sent]) == 1
    again = s.pending_alerts(10)
    assert [(x.alert_id, x.rev, x.payload["state"]) for x in again] == [("a1", 2, "acknowledged")]
    assert s.mark_alerts_synced([("a1", 2)]) == 1
    assert s.pending_alerts(10) == [] and s.stats().pending_alerts == 0
    with pytest.raises(TypeError, match="pairs"):
        s.mark_alerts_synced(["a1"])  # a bare id cannot say which revision


def test_both_ciphers_read_back(open_store: OpenStore) -> None:
    s = open_store(cipher=Cipher.AES_256_GCM)
    s.submit([make_reading(1)]).result(5)
    assert s.stats().cipher == "AES-256-GCM"
    s.close()
    s2 = open_store(cipher="chacha20-poly1305")
    s2.submit([make_reading(2)]).result(5)
    assert s2.stats().cipher == "ChaCha20-Poly1305"
    assert [r.seq for r in s2.pending_batch(10)] == [1, 2]
    ciphers = sqlite3.connect(s2.path).execute("SELECT cipher FROM readings ORDER BY seq").fetchall()
    assert ciphers == [(1,), (2,)]


def test_stats_figures(open_store: OpenStore) -> None:
    clock = Clock()
    s = open_store(clock=clock)
    assert s.stats().oldest_pending_age_s is None
    s.submit([make_reading(1, at=T0), make_reading(2, at=T0 + timedelta(seconds=30))]).result(5)
    clock.advance(seconds=90)
    st = s.stats()
    assert st.pending == 2 and st.oldest_pending_age_s == pytest.approx(90.0)
    assert st.bytes_on_disk > 0 and st.disk_full is False and st.dropped == {}
    s.mark_synced([f"{GW}:1"])
    assert s.stats().oldest_pending_age_s == pytest.approx(60.0)


def test_closed_store_refuses(open_store: OpenStore) -> None:
    s = open_store()
    s.close()
    with pytest.raises(StoreClosedError):
        s.submit([make_reading(1)])
    with pytest.raises(StoreClosedError):
        s.pending_batch(1)
    s.close()  # idempotent


def test_unclean_shutdown_runs_integrity_check(tmp_path: Path) -> None:
    # a store left open by a process that died: fork, open, exit without close
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            s = BufferStore.open(
                tmp_path / "b.sqlite3",
                gateway_id=GW,
                keystore_path=tmp_path / "k.json",
                config=StoreConfig(group_commit_ms=1),
            )
            s.submit([spot(1)]).result(5)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    s = BufferStore.open(tmp_path / "b.sqlite3", gateway_id=GW, keystore_path=tmp_path / "k.json", config=StoreConfig())
    try:
        st = s.stats()
        assert st.integrity_checked_at_start and st.integrity_ok
        assert [r.seq for r in s.pending_batch(5)] == [1]
    finally:
        s.close()
    s = BufferStore.open(tmp_path / "b.sqlite3", gateway_id=GW, keystore_path=tmp_path / "k.json", config=StoreConfig())
    assert s.stats().integrity_checked_at_start is False  # the last shutdown was clean
    s.close()
