"""The agent as a real process: SIGTERM during ingest leaves a consistent database, restarts
continue the sequence, and ``edge-agent demo`` / ``status`` keep their command-line contracts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from edge_agent.config import load_config
from edge_agent.demo_hub import find_mosquitto
from edge_agent.store import BufferStore
from hub.store import open_store

AGENT = [sys.executable, "-m", "edge_agent.cli"]


def write_config(tmp_path: Path, devices: int = 3, speed: float = 20.0) -> Path:
    text = """
version = 1
[gateway]
id = "gw-test"
province = "test"
state_dir = "state"
[scheduler]
status_interval_s = 1
"""
    for i in range(devices):
        text += f"""
[[devices]]
id = "ox-{i}"
format = "masimo-ascii"
transport = "simulated"
scenario = "{"desaturation" if i == 0 else "normal"}"
speed = {speed}
"""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def read_status(state: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((state / "status.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def wait_stored(state: Path, at_least: int, pid: int, timeout: float = 30.0) -> dict:  # type: ignore[type-arg]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = read_status(state)  # the snapshot of this process, not a previous run's
        if status.get("pid") == pid and status.get("pipeline", {}).get("stored", 0) >= at_least:
            return status
        time.sleep(0.1)
    raise AssertionError(f"agent did not store {at_least} readings in {timeout} s: {read_status(state)}")


def run_until_sigterm(config: Path, at_least: int) -> dict:  # type: ignore[type-arg]
    state = config.parent / "state"
    proc = subprocess.Popen([*AGENT, "run", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_stored(state, at_least, proc.pid)
        proc.send_signal(signal.SIGTERM)  # mid-ingest: three devices are streaming
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"event=agent_stopped" in err
    return read_status(state)


def test_sigterm_during_ingest_leaves_a_consistent_database(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    final = run_until_sigterm(config_path, at_least=60)
    cfg = load_config(config_path)
    stored = final["pipeline"]["stored"]
    assert stored >= 60
    assert not (cfg.state_dir / "agent.pid").exists()

    # closed, not only committed: the agent's next start must open the buffer alone (unix-excl)
    with contextlib.closing(sqlite3.connect(cfg.db_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    store = BufferStore.open(cfg.db_path, gateway_id="gw-test", keystore_path=cfg.keystore_path, config=cfg.store)
    try:
        stats = store.stats()
        assert stats.integrity_ok
        # Everything the agent reported stored is there, decrypts, and nothing else is.
        assert stats.stored_total == stored
        readings = store.pending_batch(100_000)
        assert len(readings) == stored
        assert sorted(r.seq for r in readings) == list(range(1, stored + 1))
        assert len({r.uid for r in readings}) == stored
        last_seq = store.last_seq
    finally:
        store.close()

    # A restart continues the sequence: uids stay unique for ever.
    final2 = run_until_sigterm(config_path, at_least=30)
    store = BufferStore.open(cfg.db_path, gateway_id="gw-test", keystore_path=cfg.keystore_path, config=cfg.store)
    try:
        readings = store.pending_batch(100_000)
        assert len(readings) == stored + final2["pipeline"]["stored"]
        assert len({r.uid for r in readings}) == len(readings)
        assert min(r.seq for r in readings if r.seq > last_seq) == last_seq + 1
    finally:
        store.close()


def test_status_command_reads_the_snapshot(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, devices=1)
    run_until_sigterm(config_path, at_least=10)
    proc = subprocess.run(
        [*AGENT, "status", "--config", str(config_path), "--json"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["running"] is False
    assert status["backlog"]["pending"] >= 10
    assert status["devices"][0]["id"] == "ox-0"
    human = subprocess.run([*AGENT, "status", "--config", str(config_path)], capture_output=True, text=True, timeout=60)
    assert human.returncode == 0
    assert "NOT running" in human.stdout and "pending sync" in human.stdout


def test_demo_runs_and_ends_with_the_json_summary(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [*AGENT, "demo", "--seconds", "4", "--state-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("readings_stored", "alerts", "synced", "pending", "dropped"):
        assert isinstance(summary[key], int)
    assert summary["readings_stored"] >= 3
    online = find_mosquitto() is not None
    if online:  # a private broker and hub: the last sync leaves nothing pending
        assert summary["pending"] == 0 and summary["synced"] == summary["readings_stored"], summary
        assert any("private broker mqtts://127.0.0.1:" in line for line in lines)
    else:
        assert summary["pending"] == summary["readings_stored"]  # offline: nothing synced
        assert any("offline" in line for line in lines)
    assert any("SpO2" in line for line in lines)
    # --state-dir is reused as it is, like a gateway after a restart.
    again = subprocess.run(
        [*AGENT, "demo", "--seconds", "3", "--state-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout.strip().splitlines()[-1])
    if online:  # every reading of both runs is at the hub, once
        assert second["pending"] == 0
        with open_store(tmp_path / "demo" / "hub") as hub:
            assert hub.count_readings() == summary["readings_stored"] + second["readings_stored"]
    else:
        assert second["pending"] > summary["pending"]


def test_corrupt_buffer_is_quarantined_and_the_agent_keeps_alerting(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, devices=1)
    state = tmp_path / "state"
    state.mkdir()
    (state / "buffer.sqlite3").write_bytes(b"this is not sqlite" * 100)  # e.g. an SD card fault
    final = run_until_sigterm(config_path, at_least=10)
    moved = final["store"]["quarantined"]
    assert moved and Path(moved).read_bytes().startswith(b"this is not sqlite")  # kept for a technician
    assert final["pipeline"]["stored"] >= 10
    with contextlib.closing(sqlite3.connect(state / "buffer.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_systemd_notify_ready_watchdog_stopping(tmp_path: Path) -> None:
    import socket

    config_path = write_config(tmp_path, devices=1)
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(sock_path))
        server.settimeout(0.2)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
        proc = subprocess.Popen([*AGENT, "run", "--config", str(config_path)], env=env, stderr=subprocess.PIPE)
        messages: list[str] = []
        try:
            end = time.monotonic() + 30
            while time.monotonic() < end and sum(m == "WATCHDOG=1" for m in messages) < 3:
                try:
                    messages.append(server.recv(256).decode())
                except TimeoutError:
                    continue
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            while True:
                try:
                    messages.append(server.recv(256).decode())
                except TimeoutError:
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stderr is not None
            proc.stderr.close()
    assert proc.returncode == 0
    assert messages[0].startswith("READY=1\nSTATUS=1 devices")
    assert messages.count("WATCHDOG=1") >= 3
    assert messages[-1] == "STOPPING=1"
