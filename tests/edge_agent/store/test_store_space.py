"""Disk full, quota, downsampling and retention on real files (a real small filesystem when the
test may mount one, else SQLite's max_page_count as the hard limit)."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from device_drivers.records import Reading
from edge_agent.config import StoreConfig
from edge_agent.store import BufferStore
from tests.fixtures import small_tmpfs

from .conftest import GW, T0, Clock, OpenStore, make_reading, spot


def _stream(start: int, n: int, t0_s: int) -> list[Reading]:
    """n continuous SpO2 readings one second apart (measured time), seqs from ``start``."""
    return [make_reading(start + i, at=T0 + timedelta(seconds=t0_s + i)) for i in range(n)]


def _ingest_until_full(s: BufferStore, *, rounds: int, per_round: int = 200) -> tuple[int, list[str], list[str]]:
    seq = s.last_seq
    stored: list[str] = []
    dropped: list[str] = []
    for k in range(rounds):
        batch = [*_stream(seq + 1, per_round, t0_s=seq), spot(seq + per_round + 1, at=T0 + timedelta(seconds=seq))]
        seq += per_round + 1
        res = s.submit(batch).result(10)  # never raises, even on a full disk
        stored += res.stored
        dropped += res.dropped
        if s.stats().disk_full and k > 3 and len(dropped) > 3 * per_round:
            break
    return seq, stored, dropped


def _check_everything_readable(s: BufferStore, stored: list[str]) -> None:
    got = {r.uid for r in s.pending_batch(10**7)} | {r.uid for r in s.recent(since=T0, limit=10**7)}
    assert set(stored) <= got
    assert s.stats().decrypt_failures == 0


def _disk_full_then_space_returns(
    tmp_path: Path, db_dir: Path, *, max_db_bytes: int | None, ballast: Path | None, emergency: int = 0
) -> None:
    s = BufferStore.open(
        db_dir / "buffer.sqlite3",
        gateway_id=GW,
        keystore_path=tmp_path / "keystore.json",
        config=StoreConfig(group_commit_ms=1, quota_mb=1024),  # the quota is not the limit here
        max_db_bytes=max_db_bytes,
        reserve_bytes=256 * 1024,
        emergency_reserve_bytes=emergency,
        index_every=64,
    )
    try:
        seq, stored, dropped = _ingest_until_full(s, rounds=400)
        st = s.stats()
        assert st.disk_full, "the disk never filled up"
        assert dropped, "nothing was dropped"
        assert sum(st.dropped.values()) == len(dropped), "every drop is counted"
        assert set(st.dropped) <= {"spo2", "bp_systolic"}
        # continuous data goes first: at least as many stream readings dropped as spot checks, proportionally
        assert st.dropped.get("spo2", 0) >= st.dropped.get("bp_systolic", 0) * 50
        _check_everything_readable(s, stored)
        # space returns: the hub acknowledges what we hold (synced rows may go), and/or the ballast goes
        assert s.mark_synced(stored) == len(stored)  # an ack still commits on a full disk
        if ballast is not None:
            ballast.unlink()
        res = s.submit([spot(seq + 1), *_stream(seq + 2, 5, t0_s=seq + 10_000)]).result(10)
        res2 = s.submit(_stream(seq + 10, 5, t0_s=seq + 20_000)).result(10)
        assert len(res.stored) == 6 and not res.dropped, res
        assert len(res2.stored) == 5
        st = s.stats()
        assert not st.disk_full and st.space_level in ("normal", "pressure")
        assert [r.seq for r in s.pending_batch(100)] == [seq + 1, *range(seq + 2, seq + 7), *range(seq + 10, seq + 15)]
    finally:
        s.close()
    conn = sqlite3.connect(db_dir / "buffer.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def test_filesystem_full_then_space_returns(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, 1536) as mnt:
        if mnt is None:
            pytest.skip("cannot mount a tmpfs here; test_max_page_count_full_then_space_returns covers the same path")
        ballast = mnt / "ballast"
        ballast.write_bytes(os.urandom(256 * 1024))
        _disk_full_then_space_returns(tmp_path, mnt, max_db_bytes=None, ballast=ballast, emergency=128 * 1024)


def test_max_page_count_full_then_space_returns(tmp_path: Path) -> None:
    _disk_full_then_space_returns(tmp_path, tmp_path, max_db_bytes=600 * 1024, ballast=None)


def test_quota_downsamples_streams_before_touching_spot_checks(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=1, quota_mb=0.5), downsample_s=60.0)
    seq = 0
    first_stream_drop = first_spot_drop = None
    for k in range(200):
        batch = [*_stream(seq + 1, 100, t0_s=seq), spot(seq + 101)]
        seq += 101
        res = s.submit(batch).result(10)
        dropped = set(res.dropped)
        if first_stream_drop is None and any(r.uid in dropped for r in batch[:-1]):
            first_stream_drop = k
        if first_spot_drop is None and batch[-1].uid in dropped:
            first_spot_drop = k
            break
    st = s.stats()
    assert first_stream_drop is not None
    assert first_spot_drop is None or first_spot_drop > first_stream_drop + 2
    by_reason = st.dropped_by_reason
    assert by_reason.get("downsampled", {}).get("spo2", 0) > 0  # pressure: downsampled first
    assert "bp_systolic" not in by_reason.get("downsampled", {})
    # downsampled means one stream reading per minute per device and vital was still kept
    kept = [r for r in s.pending_batch(10**6) if r.vital == "spo2"]
    assert len(kept) > 100
    assert s.stats().stored_total <= 0.6 * 1024 * 1024 / 100  # bounded by the quota, not by input


def test_retention_deletes_only_synced_and_shreds_keys(open_store: OpenStore, tmp_path: Path) -> None:
    clock = Clock()
    cfg = StoreConfig(group_commit_ms=1, retention_days=7)
    s = open_store(config=cfg, clock=clock, key_rotation_days=1)
    s.submit([make_reading(i, at=clock.t) for i in range(1, 11)]).result(5)  # key 1
    s.save_alert("a-old", {"alert_id": "a-old", "state": "cleared"}, updated_at=clock.t)
    s.mark_synced([f"{GW}:{i}" for i in range(1, 6)])  # 1-5 synced, 6-10 pending
    assert s.mark_alerts_synced([(a.alert_id, a.rev) for a in s.pending_alerts(10)]) == 1
    clock.advance(days=2)
    s.submit([make_reading(11, at=clock.t)]).result(5)  # rotated: key 2
    s.mark_synced([f"{GW}:11"])
    clock.advance(days=6)  # rows 1-10 are 8 days old, row 11 is 6 days old
    res = s.run_retention()
    assert res.readings_deleted == 5 and res.alerts_deleted == 1
    assert res.keys_destroyed == ()  # key 1 still seals the unsynced rows 6-10
    assert [r.seq for r in s.pending_batch(100)] == [6, 7, 8, 9, 10]
    s.mark_synced([f"{GW}:{i}" for i in range(6, 11)])
    clock.advance(days=2)
    res = s.run_retention()
    assert res.readings_deleted == 6
    assert {1, 2} <= set(res.keys_destroyed)  # (plus a key rotated in by the first run, never used)
    assert s.stats().stored_total == 0
    s.close()
    doc = json.loads((tmp_path / "keystore.json").read_text())
    assert list(doc["keys"]) == [str(doc["current"])]  # only the fresh current key is left
    assert {"1", "2"} <= set(doc["destroyed"])
    s2 = open_store(config=cfg, clock=clock)
    assert s2.last_seq == 11 and s2.stats().decrypt_failures == 0


def test_retention_never_deletes_unsynced(open_store: OpenStore) -> None:
    clock = Clock()
    s = open_store(config=StoreConfig(retention_days=1), clock=clock)
    s.submit([make_reading(i) for i in range(1, 6)]).result(5)
    clock.advance(days=365)
    assert s.run_retention().readings_deleted == 0
    assert len(s.pending_batch(10)) == 5


def test_sqlite_full_drops_spot_checks_last_and_recovers(open_store: OpenStore) -> None:
    # only spot checks: the space policy keeps them all, so SQLite's own SQLITE_FULL has to stop them
    s = open_store(config=StoreConfig(group_commit_ms=1, quota_mb=1024), max_db_bytes=200 * 1024)
    stored: list[str] = []
    dropped: list[str] = []
    seq = 0
    for _ in range(200):
        res = s.submit([spot(seq + i) for i in range(1, 51)]).result(10)
        seq += 50
        stored += res.stored
        dropped += res.dropped
        if len(dropped) >= 100:
            break
    st = s.stats()
    assert st.disk_full and st.dropped_by_reason == {"disk_full": {"bp_systolic": len(dropped)}}
    assert len(stored) > 500
    assert s.mark_synced(stored) == len(stored)  # acks never need new pages
    res = s.submit([spot(seq + 1), spot(seq + 2)]).result(10)  # synced history makes room
    assert len(res.stored) == 2
    assert not s.stats().disk_full
    s.close()
    s2 = open_store()
    assert s2.stats().dropped == {"bp_systolic": len(dropped)}  # the counts survive a restart
