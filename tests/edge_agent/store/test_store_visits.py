"""The visits lane: sealed visits survive a reopen, a tampered row never opens, closed visits go
with retention, and a data key a visit uses is never destroyed."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fixtures import real_store

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PAYLOAD = {"kind": "cccd", "value": "001099012345", "device_ids": ["ox"], "opened_at": T0.isoformat()}


def test_visits_are_sealed_reopened_and_tamper_evident(tmp_path: Path) -> None:
    with real_store(tmp_path, gateway_id="gw") as s:
        assert s.save_visit("v1", PAYLOAD, is_open=True, updated_at=T0) == 1
        assert s.save_visit("v2", PAYLOAD | {"value": "X2"}, is_open=True, updated_at=T0) == 1
        assert s.save_visit("v2", PAYLOAD | {"value": "X2"}, is_open=False, updated_at=T0) == 2
        assert [v["visit_id"] for v in s.load_visits()] == ["v1"]
    assert b"001099012345" not in (tmp_path / "buffer.sqlite3").read_bytes()
    with sqlite3.connect(tmp_path / "buffer.sqlite3") as db:
        db.execute("UPDATE visits SET is_open = 1 WHERE visit_id = 'v2'")  # reopen it behind the store's back
    with real_store(tmp_path, gateway_id="gw") as s:
        opened = s.load_visits()
        assert [v["visit_id"] for v in opened] == ["v1"] and opened[0]["value"] == "001099012345"


def test_closed_visits_go_with_retention_and_keep_their_key(tmp_path: Path) -> None:
    now = [T0]
    with real_store(tmp_path, gateway_id="gw", clock=lambda: now[0]) as s:
        s.save_visit("old", PAYLOAD, is_open=False, updated_at=T0)
        s.save_visit("open", PAYLOAD, is_open=True, updated_at=T0)
        now[0] = T0 + timedelta(days=30)  # the key the visits use is no longer current
        s.run_retention()
        assert [v["visit_id"] for v in s.load_visits(open_only=False)] == ["open"]
        assert s.load_visits()[0]["value"] == "001099012345"  # its key was kept
