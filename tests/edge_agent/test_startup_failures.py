"""Start-up failures as a technician meets them: one line naming what to fix, the exit code the
systemd unit does not restart on, no stale ``agent.pid``, the store closed, no traceback; and
``edge-agent status`` faced with empty or garbled files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.errors import EXIT_FAILURE, EXIT_OPERATOR, EXIT_USAGE, NO_RESTART_EXIT_CODES
from tests.fixtures import small_tmpfs

AGENT = [sys.executable, "-m", "edge_agent.cli"]
UNIT = Path(__file__).parents[2] / "systemd" / "station-edge.service"

BASE = """
version = 1
[gateway]
id = "gw-fail"
province = "test"
state_dir = "{state_dir}"
[scheduler]
status_interval_s = 1
"""
SIM_DEVICE = """
[[devices]]
id = "ox-1"
format = "masimo-ascii"
transport = "simulated"
speed = 20
"""


def config(tmp_path: Path, state_dir: Path | str = "state", extra: str = SIM_DEVICE) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(BASE.format(state_dir=state_dir) + extra)
    return path


def run_agent(cfg: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=timeout)


def assert_one_line_operator_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == EXIT_OPERATOR, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("edge-agent: cannot start:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "fix:" in lines[0]
    return lines[0]


def test_unit_does_not_restart_on_the_operator_exit_codes() -> None:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("RestartPreventExitStatus="))
    codes = {int(c) for c in line.split("=", 1)[1].split()}
    assert codes == set(NO_RESTART_EXIT_CODES) and EXIT_FAILURE not in codes
    assert {EXIT_USAGE, EXIT_OPERATOR} <= codes


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    line = assert_one_line_operator_failure(run_agent(config(tmp_path)), "state dir", "not a directory")
    assert str(tmp_path / "state") in line


def test_state_dir_on_a_read_only_filesystem(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "ro", size_kb=256, read_only=True) as mnt:
        if mnt is None:
            pytest.skip("cannot mount a read-only tmpfs here")
        proc = run_agent(config(tmp_path, state_dir=mnt / "station"))
        assert_one_line_operator_failure(proc, "read-only")


def test_keystore_readable_by_others_stops_for_an_operator_and_leaves_nothing_behind(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    ks = state / "keystore.json"
    ks.write_text("{}")
    os.chmod(ks, 0o644)
    proc = run_agent(config(tmp_path))
    assert_one_line_operator_failure(proc, "keystore", "chmod 600")
    assert not (state / "agent.pid").exists()
    assert "SchedulerNotRunningError" not in proc.stderr


@pytest.mark.parametrize("content", ["null", "[]", '"x"', "{}"])
def test_keystore_that_is_valid_json_but_not_a_keystore(tmp_path: Path, content: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    fd = os.open(state / "keystore.json", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    proc = run_agent(config(tmp_path))
    assert_one_line_operator_failure(proc, "keystore")
    assert not (state / "agent.pid").exists()


def test_a_later_failure_closes_the_store_and_keeps_the_real_error(tmp_path: Path) -> None:
    """Devices start after the store: a simulator whose pty link cannot be made fails there
    (``state/sim`` is a file). The store must be closed cleanly (clean_shutdown recorded), the pid
    file gone, and the real error reported, not the scheduler's."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "sim").write_text("in the way")
    proc = run_agent(config(tmp_path))
    assert proc.returncode == EXIT_FAILURE, proc.stderr  # not an operator error: worth a retry
    assert "SchedulerNotRunningError" not in proc.stderr
    assert "event=agent_failed action=retry" in proc.stderr
    assert "NotADirectoryError" in proc.stderr or "FileExistsError" in proc.stderr, proc.stderr
    assert not (state / "agent.pid").exists()
    with contextlib.closing(sqlite3.connect(state / "buffer.sqlite3")) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'clean_shutdown'").fetchone()[0] == "1"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (SIM_DEVICE.replace("speed = 20", 'scenario = "desat"'), "devices[0].scenario"),
        ('[[devices]]\nid = "cuff"\nformat = "ble-blood-pressure"\ntransport = "simulated"\n', "devices[0]"),
        ("[alerts]\nspo2_low = nan\n", "alerts.spo2_low"),
        ("[store]\ngroup_commit_ms = 1e12\n", "store.group_commit_ms"),
        ("[store]\nquota_mb = inf\n", "store.quota_mb"),
    ],
)
def test_config_errors_exit_2_with_one_line_naming_the_key(tmp_path: Path, extra: str, key: str) -> None:
    proc = run_agent(config(tmp_path, extra=extra))
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edge-agent: config error: {key}"), proc.stderr
    assert not (tmp_path / "state").exists()  # nothing was created, so nothing is left behind


def test_non_utf8_config_exits_2_naming_the_file(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.write_bytes(cfg.read_bytes().replace(b'"test"', b'"t\xe9st"'))  # Latin-1, as a Windows editor saves
    proc = run_agent(cfg)
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr, proc.stderr
    assert str(cfg) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _status(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, "status", "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)


def _fake_status(state: Path) -> None:
    state.mkdir(exist_ok=True)
    doc = {
        "gateway_id": "gw-fail",
        "province": "test",
        "written_at": "2030-01-01T00:00:00+00:00",
        "backlog": {"pending": 3, "oldest_pending_age_s": 5.0},
        "sync": {"state": "not configured", "last_sync_at": None},
        "store": {"bytes_on_disk": 1000, "disk_full": True},
        "scoring": {},
        "devices": [],
    }
    (state / "status.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("pid_text", ["", "\n", "abc", "-5", "12 34"])
def test_status_with_an_empty_or_garbled_pid_file_is_never_running(tmp_path: Path, pid_text: str) -> None:
    cfg = config(tmp_path)
    _fake_status(tmp_path / "state")
    (tmp_path / "state" / "agent.pid").write_text(pid_text)
    proc = _status(cfg, "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["running"] is False and "pid_file_problem" in status
    human = _status(cfg)
    assert human.returncode == 0 and "Traceback" not in human.stderr
    assert "NOT running" in human.stdout and "does not hold a process id" in human.stdout
    assert "DISK FULL" in human.stdout


@pytest.mark.parametrize("content", [b"", b"{trunc", b"\xff\xfe", b"[1, 2]", b'{"gateway_id": "x"}'])
def test_status_with_an_empty_or_garbled_status_file(tmp_path: Path, content: bytes) -> None:
    cfg = config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "status.json").write_bytes(content)
    for args in ((), ("--json",)):
        proc = _status(cfg, *args)
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode == 0:  # a JSON object missing keys: --json shows what is there
            assert args == ("--json",)
            continue
        assert proc.returncode == EXIT_FAILURE
        assert re.search(r"empty or garbled|incomplete", proc.stderr), proc.stderr


def test_decode_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """`edge-agent decode ... | head -1`: no BrokenPipeError traceback when the reader leaves."""
    hexes = ["00 78 00 50 00 5D 00"] * 2000
    proc = subprocess.run(
        f"{sys.executable} -m edge_agent.cli decode ble-blood-pressure {' '.join(repr(h) for h in hexes)} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("seconds", ["0", "-5", "nan", "inf"])
def test_demo_refuses_a_non_positive_duration(seconds: str) -> None:
    proc = subprocess.run([*AGENT, "demo", "--seconds", seconds], capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_USAGE
    assert "--seconds must be a positive number" in proc.stderr
