"""The gateway's pure command guard, its persisted state, the set-config overlay (apply, validate
with the agent's own loader, roll back) and the diagnostics bundle's redaction and bounds."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import load_config
from edge_agent.remote.diagnostics import MAX_BUNDLE, LogRing, build_bundle, redact
from edge_agent.remote.guard import Refused, RemoteState, check_command
from edge_agent.remote.overlay import PREVIOUS_FILE, apply_change, overlay_path, settable
from wire.commands import Command

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def cmd(**kw: object) -> Command:
    base: dict[str, object] = {
        "cmd_id": "c-1",
        "gateway_id": "gw-1",
        "seq": 5,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
        "kind": "diagnostics",
        "args": {"log_lines": 0},
    }
    return Command(**{**base, **kw})  # type: ignore[arg-type]


def test_guard_accepts_a_current_new_command() -> None:
    check_command(cmd(), gateway_id="gw-1", last_seq=4, now=NOW + timedelta(minutes=59))


@pytest.mark.parametrize(
    ("command", "last_seq", "now", "reason", "state"),
    [
        (cmd(gateway_id="gw-2"), 0, NOW, "other_gateway", "refused"),
        (cmd(seq=5), 5, NOW, "replayed", "refused"),
        (cmd(seq=3), 5, NOW, "replayed", "refused"),
        (cmd(), 0, NOW + timedelta(hours=1), "expired", "expired"),
        (cmd(), 0, NOW - timedelta(minutes=11), "from_future", "refused"),
        (cmd(expires_at=NOW - timedelta(seconds=1)), 0, NOW - timedelta(minutes=5), "bad_window", "refused"),
    ],
)
def test_guard_refusals(command: Command, last_seq: int, now: datetime, reason: str, state: str) -> None:
    with pytest.raises(Refused) as info:
        check_command(command, gateway_id="gw-1", last_seq=last_seq, now=now)
    assert (info.value.reason, info.value.state) == (reason, state)


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_guard_seq_is_strictly_increasing(seq: int, last: int) -> None:
    try:
        check_command(cmd(seq=seq), gateway_id="gw-1", last_seq=last, now=NOW)
    except Refused as exc:
        assert exc.reason == "replayed" and seq <= last
    else:
        assert seq > last


def test_state_survives_a_restart_and_a_damaged_file_refuses_everything(tmp_path: Path) -> None:
    state = RemoteState.load(tmp_path)
    assert state.last_seq == 0
    state.record(cmd(seq=9), "applied", NOW, True)
    again = RemoteState.load(tmp_path)
    assert (again.last_seq, again.last_state, again.results["applied"]) == (9, "applied", 1)
    path = tmp_path / "remote" / "state.json"
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("{not json")
    damaged = RemoteState.load(tmp_path)
    with pytest.raises(Refused):  # never back to 0: every old command would be replayable
        check_command(cmd(seq=10**9), gateway_id="gw-1", last_seq=damaged.last_seq, now=NOW)


# -- the set-config overlay ----------------------------------------------------------------------

BASE = """version = 1
[gateway]
id = "gw-1"
province = "p1"
state_dir = "{state}"
[sync]
broker = "mqtts://127.0.0.1:8883"
ca = "ca.pem"
cert = "gw.pem"
key = "gw.key"
hub_keys = "hub.json"
heartbeat_s = 60.0
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "agent.toml"
    path.parent.mkdir()
    path.write_text(BASE.format(state=tmp_path / "state"))
    return path


def test_settable_keys() -> None:
    doc = {"sync": {}}
    assert settable("sync.heartbeat_s", doc) is None
    assert settable("scoring.news2_min_level", doc) is None
    for key in ("gateway.id", "gateway.state_dir", "sync.cert", "sync.broker", "scoring.allow_dev_key", "models_dir"):
        assert settable(key, doc) is not None, key
    assert "no [dashboard] table" in (settable("dashboard.port", doc) or "")


def test_apply_validate_and_roll_back(config: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = apply_change(config, state_dir, {"sync.heartbeat_s": 30})
    assert (first.state, first.changed) == ("applied", ("sync.heartbeat_s",))
    assert load_config(config).sync.heartbeat_s == 30.0  # type: ignore[union-attr]
    overlay = overlay_path(state_dir)
    before = overlay.read_bytes()
    # refused by the agent's own loader: the previous overlay is back, byte for byte
    bad = apply_change(config, state_dir, {"sync.heartbeat_s": 1, "alerts.spo2_low": 95})
    assert bad.state == "rolled_back" and "sync.heartbeat_s" in bad.detail
    assert overlay.read_bytes() == before
    assert load_config(config).sync.heartbeat_s == 30.0  # type: ignore[union-attr]
    second = apply_change(config, state_dir, {"alerts.spo2_low": 92})
    assert second.state == "applied"
    assert json.loads((overlay.parent / PREVIOUS_FILE).read_text()) == json.loads(before)  # kept for rollback
    cfg = load_config(config)
    assert (cfg.sync.heartbeat_s, cfg.alerts.spo2_low) == (30.0, 92.0)  # type: ignore[union-attr]
    assert overlay.stat().st_mode & 0o777 == 0o600
    assert apply_change(config, state_dir, {"gateway.id": "x"}).state == "refused"
    assert apply_change(None, state_dir, {"sync.heartbeat_s": 30}).state == "refused"


def test_first_change_rolled_back_leaves_no_overlay(config: Path, tmp_path: Path) -> None:
    assert apply_change(config, tmp_path / "state", {"scoring.news2_min_level": "extreme"}).state == "rolled_back"
    assert not overlay_path(tmp_path / "state").exists()


def test_an_overlay_that_no_longer_validates_is_ignored_at_start(
    config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overlay = overlay_path(tmp_path / "state")
    overlay.parent.mkdir(parents=True)
    overlay.write_text(json.dumps({"sync": {"heartbeat_s": -1}}))
    with caplog.at_level(logging.ERROR):
        assert load_config(config).sync.heartbeat_s == 60.0  # type: ignore[union-attr]
    assert "event=config_overlay_ignored" in caplog.text
    overlay.write_text(json.dumps({"gateway": {"id": "gw-evil"}}))  # written by hand: still not settable
    assert load_config(config).gateway.id == "gw-1"
    overlay.write_text("[1, 2]")
    assert load_config(config).sync.heartbeat_s == 60.0  # type: ignore[union-attr]


# -- diagnostics ------------------------------------------------------------------------------------


def test_redaction() -> None:
    line = "event=visit_opened patient_id=P-SECRET-1 patient_name='Nguyen Van A' name=\"B\" seq=3\x1b[2J"
    out = redact(line)
    assert "P-SECRET-1" not in out and "Nguyen" not in out and '"B"' not in out
    assert "seq=3" in out and "\x1b" not in out
    assert len(redact("x" * 10_000)) == 300


def test_log_ring_and_bounded_bundle() -> None:
    ring = LogRing(size=50)
    logger = logging.getLogger("edge_agent.test_ring")
    logger.addHandler(ring)
    logger.setLevel(logging.INFO)
    try:
        for i in range(80):
            logger.info("event=tick n=%d patient_id=P-%d", i, i)
        logger.debug("event=debug_not_kept")
    finally:
        logger.removeHandler(ring)
    lines = ring.tail(100)
    assert len(lines) == 50 and "n=79" in lines[-1] and not any("P-7" in x for x in lines)
    status = {"version": "1", "devices": [{"id": "oxi", "state": "ok", "patient_id": "P-SECRET"}], "alerts": [{}]}
    bundle = build_bundle(status, now=NOW, preflight=[{"name": "disk", "status": "ok", "detail": "fine"}], logs=lines)
    text = json.dumps(bundle)
    assert "P-SECRET" not in text and bundle["logs_dropped"] == 0
    huge = build_bundle(status, now=NOW, preflight=[], logs=["y" * 300] * 2000)
    assert len(json.dumps(huge).encode()) <= MAX_BUNDLE and huge["logs_dropped"] > 0  # type: ignore[operator]
