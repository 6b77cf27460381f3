"""`edge-agent status` prints the certificate's expiry and the renewal's state that `--json` has
under `sync.certificate` (issue 11, renewal), and warns when it is due and the renewal failed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main

CONFIG = """
version = 1
[gateway]
id = "gw-cert"
province = "test"
state_dir = "{state_dir}"
"""


def _run(tmp_path: Path, certificate: dict[str, Any] | None, capsys: pytest.CaptureFixture[str]) -> str:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    sync: dict[str, Any] = {"configured": True, "state": "connected", "broker": "mqtts://hub:8883"}
    if certificate is not None:
        sync["certificate"] = certificate
    doc = {
        "gateway_id": "gw-cert",
        "province": "test",
        "written_at": datetime.now(UTC).isoformat(),
        "backlog": {"pending": 0, "oldest_pending_age_s": None},
        "sync": sync,
        "store": {},
        "scoring": {},
        "devices": [],
    }
    (state / "status.json").write_text(json.dumps(doc))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(CONFIG.format(state_dir=state))
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert main(["status", "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sync"].get("certificate") == certificate  # the same data
    return out


def _cert(days_left: float, **renewal: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    ren = {
        "before_days": 30,
        "last_attempt_at": None,
        "last_result": None,
        "last_reason": None,
        "renewed_at": None,
        "attempts": 0,
        "renewals": 0,
    } | renewal
    return {"not_after": (now + timedelta(days=days_left)).isoformat(), "days_left": days_left, "renewal": ren}


def test_expiry_and_a_successful_renewal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    attempt = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    out = _run(tmp_path, _cert(89.9, last_attempt_at=attempt, last_result="renewed", renewed_at=attempt,
                               attempts=1, renewals=1), capsys)  # fmt: skip
    lines = out.splitlines()
    cert = next(line for line in lines if line.startswith("certificate: "))
    assert "(89.9 days left)" in cert
    ren = next(line for line in lines if line.startswith("certificate renewal: "))
    assert "30 days before expiry" in ren and ": renewed;" in ren and "1 renewals in 1 attempts" in ren
    assert "ago)" in ren  # the last attempt as a time and how long ago
    assert "WARNING" not in out and "EXPIRED" not in out


def test_due_and_refused_warns_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    attempt = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    out = _run(tmp_path, _cert(12.5, last_attempt_at=attempt, last_result="refused",
                               last_reason="refused_revoked", attempts=3), capsys)  # fmt: skip
    assert "(12.5 days left)" in out and ": refused (refused_revoked);" in out and "last renewed never" in out
    assert "WARNING: the certificate expires in 12.5 days and the last renewal refused (refused_revoked)" in out


def test_never_attempted_expired_and_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(tmp_path, _cert(200), capsys)
    assert "last attempt never;" in out and "WARNING" not in out
    out = _run(tmp_path, _cert(-1.0, last_result="failed", last_reason="timeout"), capsys)
    assert "CERTIFICATE EXPIRED" in out
    out = _run(tmp_path, _cert(10, before_days=0), capsys)
    assert "certificate renewal: off (sync.renew_before_days = 0)" in out and "WARNING" not in out


def test_no_certificate_section_prints_no_certificate_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(tmp_path, None, capsys)
    assert "sync: connected" in out and "certificate" not in out
    out = _run(tmp_path, {"not_after": "2030-01-01T00:00:00+00:00", "days_left": 400.0}, capsys)  # no renewer
    assert "certificate: expires 2030-01-01T00:00:00+00:00 (400 days left)" in out and "renewal" not in out
