"""The truth in status.json: written on every state change (debounced), on a full disk too,
private files whatever the umask, and alert transitions in the log without patient values."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig, DeviceConfig, GatewayConfig, SchedulerConfig
from edge_agent.events import AlertChanged, EventHub
from edge_agent.state_files import StatusFile
from edge_agent.store import BufferStore
from tests.fixtures import fill_filesystem, small_tmpfs


def make_config(state_dir: Path, devices: tuple[DeviceConfig, ...], status_interval_s: float = 3600.0) -> AgentConfig:
    return AgentConfig(
        version=1,
        gateway=GatewayConfig(id="gw-status", province="test", state_dir=state_dir),
        devices=devices,
        scheduler=SchedulerConfig(status_interval_s=status_interval_s, retention_interval_s=3600.0),
    )


def run_agent_until(
    config: AgentConfig, until: Callable[[Agent], bool], *, events: EventHub | None = None, timeout: float = 30.0
) -> tuple[Agent, bool]:
    agent = Agent(config, events=events)
    met = False

    async def main() -> None:
        nonlocal met
        stop = asyncio.Event()

        async def watch() -> None:
            nonlocal met
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                await asyncio.sleep(0.1)
                try:
                    if until(agent):
                        met = True
                        break
                except RuntimeError:  # a part not started yet
                    continue
            stop.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        await agent.run(stop)
        await watcher

    asyncio.run(main())
    return agent, met


def read_status(state: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((state / "status.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def test_device_error_reaches_status_within_a_second_not_at_the_next_interval(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dev = DeviceConfig(id="ox-1", format="masimo-ascii", transport="serial", port=str(tmp_path / "no-such-tty"))
    seen: list[dict] = []  # type: ignore[type-arg]

    def error_in_status(agent: Agent) -> bool:
        devices = read_status(state).get("devices") or [{}]
        if devices[0].get("state") == "error":
            seen.append(devices[0])
            return True
        return False

    # status_interval_s is an hour: only the debounced write on the state change can show it.
    _, met = run_agent_until(make_config(state, (dev,)), error_in_status, timeout=10)
    assert met, read_status(state)
    assert "no-such-tty" in seen[0]["detail"]
    assert read_status(state)["devices"][0]["state"] == "stopped"  # and the last write at stop


def test_private_files_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = os.umask(0o000)
    try:
        dev = DeviceConfig(id="ox-1", format="masimo-ascii", transport="simulated", speed=20.0)
        modes: dict[str, int] = {}

        def files_present(agent: Agent) -> bool:
            names = ("status.json", "agent.pid", "keystore.json", "buffer.sqlite3")
            if all((state / n).exists() for n in names) and agent.pipeline.counters.stored > 0:
                modes.update({n: stat.S_IMODE((state / n).stat().st_mode) for n in names})
                return True
            return False

        _, met = run_agent_until(make_config(state, (dev,), status_interval_s=1.0), files_present)
    finally:
        os.umask(old)
    assert met
    assert modes["status.json"] == 0o600 and modes["agent.pid"] == 0o600 and modes["keystore.json"] == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert not (state / "status.json.tmp").exists()


def test_status_file_is_rewritten_in_place_when_the_disk_is_full(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, size_kb=256) as mnt:
        if mnt is None:
            pytest.skip("cannot mount a tmpfs here")
        status = StatusFile(mnt / "status.json")
        assert status.write({"disk_full": False, "n": 1})
        fill_filesystem(mnt)
        with pytest.raises(OSError):  # the disk really is full
            (mnt / "probe").write_bytes(b"x" * 8192)
        assert status.write({"disk_full": True, "n": 2, "dropped": {"spo2": 12}})
        assert json.loads((mnt / "status.json").read_text()) == {"disk_full": True, "n": 2, "dropped": {"spo2": 12}}
        assert status.in_place_writes == 1 and not (mnt / "status.json.tmp").exists()


def test_disk_full_reaches_status_json(tmp_path: Path) -> None:
    """The whole agent on a small real filesystem that fills up: status.json says so."""
    with small_tmpfs(tmp_path, size_kb=12 * 1024) as mnt:
        if mnt is None:
            pytest.skip("cannot mount a tmpfs here")
        state = mnt / "state"
        dev = DeviceConfig(id="ox-1", format="masimo-ascii", transport="simulated", speed=20.0)
        filled = threading.Event()

        def full_in_status(agent: Agent) -> bool:
            if not filled.is_set() and agent.pipeline.counters.stored > 5:
                fill_filesystem(mnt)
                filled.set()
            return filled.is_set() and bool(read_status(state).get("store", {}).get("disk_full"))

        _, met = run_agent_until(make_config(state, (dev,), status_interval_s=1.0), full_in_status, timeout=40)
        assert met, read_status(state).get("store")


def test_alert_transitions_are_logged_without_patient_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    dev = DeviceConfig(id="ox-1", format="masimo-ascii", transport="simulated", scenario="desaturation", speed=8.0)
    events = EventHub()
    alerts: list[AlertChanged] = []
    events.subscribe(lambda e: alerts.append(e) if isinstance(e, AlertChanged) else None)
    with caplog.at_level(logging.INFO, logger="edge_agent"):
        agent, met = run_agent_until(make_config(state, (dev,)), lambda a: bool(alerts), events=events)
    assert met
    first = alerts[0].alert
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=alert_")]
    assert any(
        f"alert={first.alert_id}" in line and f"level={first.level}" in line and f"kind={first.kind}" in line
        for line in lines
    ), lines
    for line in lines:
        assert first.subject not in line and "%" not in line  # neither the patient nor the values
    # ...and every alert version was committed to the alert lane through its future.
    cfg = agent.config
    store = BufferStore.open(cfg.db_path, gateway_id=cfg.gateway.id, keystore_path=cfg.keystore_path, config=cfg.store)
    try:
        saved = {a["alert_id"] for a in store.load_alerts()}
    finally:
        store.close()
    assert {e.alert.alert_id for e in alerts} <= saved
