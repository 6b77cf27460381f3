"""The alert lane: revisions stored with the alert (acknowledged as (alert_id, rev), across
restarts), alerts submitted through futures ahead of a reading backlog, dead letters."""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
from datetime import timedelta

import pytest

from device_drivers.records import Reading
from edge_agent.config import StoreConfig
from edge_agent.store import StoreClosedError, StoreFullError
from edge_agent.store.writer import GroupCommitWriter

from .conftest import GW, T0, OpenStore, make_reading, spot


def _alert(aid: str, state: str = "raised") -> dict[str, object]:
    return {"alert_id": aid, "state": state, "level": "high"}


# --- revisions across restarts -------------------------------------------------------------------


def test_ack_after_restart_marks_the_acknowledged_revision(open_store: OpenStore) -> None:
    s = open_store()
    s.save_alert("a1", _alert("a1"), updated_at=T0)
    s.save_alert("a2", _alert("a2"), updated_at=T0 + timedelta(seconds=1))
    sent = [(p.alert_id, p.rev) for p in s.pending_alerts(10)]
    assert sent == [("a1", 1), ("a2", 1)]
    s.save_alert("a2", _alert("a2", "acknowledged"), updated_at=T0 + timedelta(seconds=2))  # rev 2, not sent yet
    s.close()  # the hub's acks arrive after the restart
    s = open_store()
    assert s.stats().pending_alerts == 2
    assert s.mark_alerts_synced(sent) == 1  # a1 rev 1 marked; a2 is at rev 2, which the hub has not seen
    left = s.pending_alerts(10)
    assert [(p.alert_id, p.rev, p.payload["state"]) for p in left] == [("a2", 2, "acknowledged")]
    s.close()
    s = open_store()
    assert [(p.alert_id, p.rev) for p in s.pending_alerts(10)] == [("a2", 2)]  # the rev is on disk
    assert s.mark_alerts_synced([("a2", 1)]) == 0 and s.mark_alerts_synced([("a2", 2)]) == 1
    assert s.stats().pending_alerts == 0 and s.pending_alerts(10) == []
    assert s.mark_alerts_synced([("a2", 2), ("nope", 1)]) == 0  # idempotent


# --- futures, ahead of readings ------------------------------------------------------------------


def test_submit_alert_resolves_with_the_new_revision_after_commit(open_store: OpenStore) -> None:
    s = open_store()
    fut = s.submit_alert("a1", _alert("a1"), updated_at=T0)
    assert fut.result(5) == 1
    conn = sqlite3.connect(s.path)  # committed: visible to another connection
    assert conn.execute("SELECT rev, synced_us FROM alerts WHERE alert_id = 'a1'").fetchall() == [(1, None)]
    conn.close()
    assert s.submit_alert("a1", _alert("a1", "cleared"), updated_at=T0 + timedelta(seconds=1)).result(5) == 2
    assert s.save_alert("a1", _alert("a1", "raised"), updated_at=T0 + timedelta(seconds=2)) == 3  # blocking wrapper
    assert [(p.alert_id, p.rev) for p in s.pending_alerts(10)] == [("a1", 3)]
    assert s.stats().pending_alerts == 1


def test_alert_goes_ahead_of_a_reading_backlog(open_store: OpenStore) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=5000))  # readings wait 5 s for companions
    # 50 readings: fewer than the 64 that commit at once (a hundred raced the alert to the writer)
    readings = s.submit([make_reading(i) for i in range(1, 51)])
    alert = s.submit_alert("a1", _alert("a1"), updated_at=T0)
    assert alert.result(2) == 1  # did not wait for the readings queued before it
    assert not readings.done()
    s.flush(5)
    assert len(readings.result(0).stored) == 50


def test_submit_alert_reports_a_full_disk_through_its_future(open_store: OpenStore) -> None:
    s = open_store(
        config=StoreConfig(group_commit_ms=1, quota_mb=1024), max_db_bytes=200 * 1024, emergency_reserve_bytes=0
    )
    seq = dropped = 0
    while dropped < 50:  # nothing is synced, so there is no history to purge for the alert
        res = s.submit([spot(seq + i) for i in range(1, 51)]).result(10)
        seq += 50
        dropped += len(res.dropped)
    note = base64.b64encode(os.urandom(45_000)).decode()  # 60 KB that compression cannot shrink much
    fut = s.submit_alert("big", {"alert_id": "big", "note": note}, updated_at=T0)
    with pytest.raises(StoreFullError):
        fut.result(10)
    assert s.stats().disk_full and s.stats().pending_alerts == 0


def test_submit_alert_on_a_closed_store_refuses(open_store: OpenStore) -> None:
    s = open_store()
    s.close()
    with pytest.raises(StoreClosedError):
        s.submit_alert("a1", _alert("a1"), updated_at=T0)


def test_writer_runs_urgent_commands_before_queued_readings() -> None:
    seen: list[object] = []
    entered = threading.Event()
    gate = threading.Event()

    def commit(batch: list[Reading]) -> list[bool]:
        entered.set()
        gate.wait(5)
        seen.append(tuple(r.seq for r in batch))
        return [True] * len(batch)

    w = GroupCommitWriter(commit, window_s=0.0)
    w.start()
    first = w.submit([make_reading(1)])
    assert entered.wait(5)  # the writer is committing reading 1
    later = w.submit([make_reading(2), make_reading(3)])

    def alert() -> int:
        seen.append("alert")
        return 7

    urgent = w.submit_urgent(alert)
    gate.set()
    assert urgent.result(5) == 7
    assert first.result(5).stored == (f"{GW}:1",) and len(later.result(5).stored) == 2
    assert seen == [(1,), "alert", (2, 3)]
    w.stop(5)
    with pytest.raises(StoreClosedError):
        w.submit_urgent(lambda: None)


# --- dead letters ----------------------------------------------------------------------------------


def test_alert_that_fails_to_open_goes_to_the_dead_letters_until_saved_again(open_store: OpenStore) -> None:
    s = open_store()
    s.save_alert("a1", _alert("a1"), updated_at=T0)
    s.save_alert("a2", _alert("a2"), updated_at=T0 + timedelta(seconds=1))
    s.close()
    conn = sqlite3.connect(s.path)
    with conn:
        conn.execute("UPDATE alerts SET is_open = 0 WHERE alert_id = 'a1'")  # bound by the additional data
    conn.close()
    s = open_store()
    assert s.stats().pending_alerts == 2
    assert [p.alert_id for p in s.pending_alerts(10)] == ["a2"]
    st = s.stats()
    assert (st.pending_alerts, st.dead_letter_alerts, st.decrypt_failures) == (1, 1, 1)
    assert [p.alert_id for p in s.pending_alerts(10)] == ["a2"]
    s.close()
    s = open_store()
    assert (s.stats().pending_alerts, s.stats().dead_letter_alerts) == (1, 1)
    assert s.save_alert("a1", _alert("a1", "cleared"), updated_at=T0 + timedelta(seconds=2)) == 2  # a new revision
    assert (s.stats().pending_alerts, s.stats().dead_letter_alerts) == (2, 0)
    assert [(p.alert_id, p.rev) for p in s.pending_alerts(10)] == [("a2", 1), ("a1", 2)]
