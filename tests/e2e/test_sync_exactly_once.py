"""Exactly-once at the hub, with real processes: ``edge-agent run`` (simulated devices on ptys,
the encrypted buffer, MQTT over TLS) → a real Mosquitto (TLS, ACLs) → ``edge-hub serve`` (SQLite).
Each scenario breaks one part mid-stream, then lets the backlog drain; the hub must end with
exactly the gateway's readings: every uid from 1 to the gateway's last sequence, once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.store import BufferStore
from hub.store import open_store
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient
from tests.fixtures.pki import Pki
from tests.fixtures.units import agent_environment
from tests.hub.mqtt_helpers import ServeProcess

GW = "gw-0001"
AGENT = [sys.executable, "-m", "edge_agent.cli", "run", "--log-level", "WARNING", "--config"]


def agent_config(tmp: Path, pki: Pki, broker: MosquittoBroker, *, devices: int) -> Path:
    ident = pki.gateway(GW)
    text = f"""
version = 1
[gateway]
id = "{GW}"
province = "p1"
state_dir = "state"
[scheduler]
status_interval_s = 1
[sync]
broker = "{broker.url}"
ca = "{pki.ca_path}"
cert = "{ident.cert_path}"
key = "{ident.key_path}"
hub_keys = "{pki.hub_public_path}"
batch_max = 40
batch_max_age_s = 0.5
in_flight = 3
heartbeat_s = 5
"""
    for i in range(devices):
        text += f"""
[[devices]]
id = "ox-{i}"
format = "masimo-ascii"
transport = "simulated"
speed = 20
"""
    path = tmp / f"agent-{devices}.toml"
    path.write_text(text)
    return path


class Hub(ServeProcess):
    """One ``edge-hub serve`` worker on a SQLite store (tests/hub's helper), restartable."""

    def __init__(self, tmp: Path, pki: Pki, broker: MosquittoBroker) -> None:
        self.store_dir = tmp / "hub"
        super().__init__(tmp / "hub-logs", broker, pki, str(self.store_dir), "hub-1")

    def uids(self) -> list[str]:
        with open_store(self.store_dir) as store:
            return list(store.uids(GW))


@pytest.fixture
def hub(tmp_path: Path, pki: Pki, broker: MosquittoBroker) -> Iterator[Hub]:
    with Hub(tmp_path, pki, broker) as h:
        yield h


def start_agent(config: Path) -> subprocess.Popen[bytes]:
    """``edge-agent run`` with the environment its systemd unit gives it (``Environment=`` lines)."""
    return subprocess.Popen(
        [*AGENT, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=agent_environment()
    )


def stop_agent(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, err.decode()[-3000:]


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def read_status(state: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((state / "status.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def hub_count(hub: Hub) -> int:
    try:
        return len(hub.uids())
    except Exception:  # the store may not exist yet
        return 0


def gateway_last_seq(config: Path) -> tuple[int, int]:
    cfg = load_config(config)
    store = BufferStore.open(cfg.db_path, gateway_id=GW, keystore_path=cfg.keystore_path, config=cfg.store)
    try:
        return store.last_seq, store.stats().pending
    finally:
        store.close()


def drain_and_check(tmp: Path, pki: Pki, broker: MosquittoBroker, hub: Hub) -> int:
    """Run the agent with no devices until nothing is pending, then compare uid sets."""
    config = agent_config(tmp, pki, broker, devices=0)
    last_seq, _ = gateway_last_seq(config)
    proc = start_agent(config)

    def drained() -> bool:
        status = read_status(tmp / "state")
        return status.get("pid") == proc.pid and status.get("backlog", {}).get("pending") == 0

    try:
        wait_for(drained, 90, "the gateway's backlog to drain")
        wait_for(lambda: hub_count(hub) >= last_seq, 30, f"the hub to hold {last_seq} readings")
    finally:
        stop_agent(proc)
    _, pending = gateway_last_seq(config)
    uids = hub.uids()
    assert len(uids) == len(set(uids))  # stored once each
    assert set(uids) == {f"{GW}:{seq}" for seq in range(1, last_seq + 1)}  # nothing lost, nothing extra
    assert pending == 0  # and the gateway saw every ack
    return last_seq


def test_broker_killed_mid_sync_then_restarted(tmp_path: Path, pki: Pki, broker: MosquittoBroker, hub: Hub) -> None:
    proc = start_agent(agent_config(tmp_path, pki, broker, devices=2))
    try:
        wait_for(lambda: hub_count(hub) >= 40, 60, "the first batches at the hub")
        broker.kill()  # batches in flight die with it
        time.sleep(3)  # readings go on being buffered
        broker.restart()
        # the gateway's reconnect backs off with full jitter (1 s to 5 min), so after a few refused
        # attempts it may wait a minute: the price of a thousand gateways not returning at once
        wait_for(lambda: hub_count(hub) >= 200, 150, "sync to resume after the broker restart")
    finally:
        stop_agent(proc)
    assert drain_and_check(tmp_path, pki, broker, hub) >= 200


def test_hub_killed_between_commit_and_ack(tmp_path: Path, pki: Pki, broker: MosquittoBroker, hub: Hub) -> None:
    proc = start_agent(agent_config(tmp_path, pki, broker, devices=2))
    try:
        wait_for(lambda: hub_count(hub) >= 40, 60, "the first batches at the hub")
        hub.kill()  # whatever it committed, some acks never left
        time.sleep(2)
        hub.start()
        before = hub_count(hub)
        wait_for(lambda: hub_count(hub) >= before + 100, 90, "sync to resume with the restarted hub")
    finally:
        stop_agent(proc)
    drain_and_check(tmp_path, pki, broker, hub)


def test_agent_sigkilled_mid_batch(tmp_path: Path, pki: Pki, broker: MosquittoBroker, hub: Hub) -> None:
    config = agent_config(tmp_path, pki, broker, devices=2)
    proc = start_agent(config)
    try:
        wait_for(lambda: hub_count(hub) >= 80, 60, "batches at the hub")
    finally:
        stop_agent(proc, signal.SIGKILL)  # leased, sent, unacknowledged batches: re-sent after restart
    proc = start_agent(config)
    try:
        before = hub_count(hub)
        wait_for(lambda: hub_count(hub) >= before + 40, 60, "sync after the restart")
    finally:
        stop_agent(proc)
    drain_and_check(tmp_path, pki, broker, hub)


def test_nothing_readable_on_the_wire(tmp_path: Path, pki: Pki, broker: MosquittoBroker, hub: Hub) -> None:
    """A wiretap with the broker's full view (a hub user on se/v1/#) sees no reading, device or
    format in clear: uplinks are sealed to the hub's key; only the heartbeat is plain (counts)."""
    tap = MqttClient(broker, pki.hub("hub-2")).connect()
    tap.subscribe("se/v1/#")
    proc = start_agent(agent_config(tmp_path, pki, broker, devices=1))
    try:
        wait_for(lambda: hub_count(hub) >= 40, 60, "batches at the hub")
    finally:
        stop_agent(proc)
        seen = tap.received_within(1.0)
        tap.disconnect()
    ups = [m.payload for m in seen if m.topic.endswith("/up")]
    assert ups, [m.topic for m in seen]
    for payload in ups:
        for clear in (b"masimo-ascii", b'"spo2"', b'"value"', b"heart_rate"):
            assert clear not in payload
