"""The fleet registry end to end: gateways' retained heartbeats and last wills through a real
Mosquitto to a real ``edge-hub serve`` process, read back with ``edge-hub fleet`` as a process;
and the demo's gateway in ``edge-hub fleet --json`` after ``edge-agent demo``.

Heartbeat times come from the wall clock (as the agent's do), read by every process alike, so
the tests hold on any date (and under the year-ahead calendar shift)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.demo_hub import find_mosquitto as demo_find_mosquitto
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient, find_mosquitto
from tests.fixtures.pki import Pki
from tests.hub.mqtt_helpers import PROVINCE, ROOT, ServeProcess
from wire import messages
from wire.topics import topic

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")

HUB = [sys.executable, "-m", "hub.cli"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def fleet(store_spec: str, *extra: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [*HUB, "fleet", "--store", store_spec, "--json", *extra],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    docs: list[dict[str, Any]] = json.loads(proc.stdout)
    return docs


def heartbeat(online: bool, *, sent_at: datetime | None = None, pending: int = 0) -> bytes:
    at = sent_at or datetime.now(UTC)
    return messages.encode_heartbeat(
        {
            "online": online,
            "sent_at": at.isoformat(),
            "agent_version": "0.4.0",
            "backlog": {"pending": pending, "oldest_pending_age_s": 5.0 if pending else None},
            "sync": {"state": "connected", "last_ack_at": at.isoformat()},
            "certificate": {"not_after": (at + timedelta(days=3)).isoformat(), "days_left": 3.0},
        }
    )


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


def by_id(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["gateway_id"]: d for d in docs}


def test_online_offline_from_a_real_disconnect_and_a_clean_stop(
    broker: MosquittoBroker, pki: Pki, store_spec: str, tmp_path: Path
) -> None:
    gw_a, gw_b = "gw-0001", "gw-0002"
    status_a, status_b = topic(PROVINCE, gw_a, "status"), topic("p02", gw_b, "status")
    with ServeProcess(tmp_path / "serve", broker, pki, store_spec, "hub-1"):
        a = MqttClient(broker, pki.gateway(gw_a), will=(status_a, messages.OFFLINE_WILL, 1, True)).connect()
        b = MqttClient(broker, pki.gateway(gw_b), will=(status_b, messages.OFFLINE_WILL, 1, True)).connect()
        a.publish(status_a, heartbeat(True, pending=7), retain=True)
        b.publish(status_b, heartbeat(True), retain=True)
        wait_for(lambda: len(fleet(store_spec)) == 2)
        docs = by_id(fleet(store_spec))
        assert (docs[gw_a]["state"], docs[gw_a]["province"], docs[gw_a]["backlog_pending"]) == ("online", "p01", 7)
        assert docs[gw_a]["reasons"] == ["cert_expiring"] and 2.9 < docs[gw_a]["cert_days_left"] <= 3.0
        online_since = docs[gw_a]["since"]
        # gw-0001 vanishes: the broker publishes its last will; the heartbeat before it stays
        dropped_at = datetime.now(UTC)
        a.drop()
        wait_for(lambda: by_id(fleet(store_spec))[gw_a]["state"] == "offline", timeout=30)
        docs = by_id(fleet(store_spec))
        assert docs[gw_a]["backlog_pending"] == 7 and docs[gw_a]["agent_version"] == "0.4.0"
        assert datetime.fromisoformat(docs[gw_a]["since"]) >= dropped_at - timedelta(seconds=1)
        assert docs[gw_a]["last_seen"] <= docs[gw_a]["since"] and docs[gw_a]["since"] != online_since
        assert docs[gw_b]["state"] == "online"
        # most urgent first: the silent gateway, then the one whose certificate is expiring
        assert [d["gateway_id"] for d in fleet(store_spec)] == [gw_a, gw_b]
        assert [d["gateway_id"] for d in fleet(store_spec, "--province", "p02")] == [gw_b]
        # gw-0002 stops cleanly: its last heartbeat says offline, then DISCONNECT (no will)
        b.publish(status_b, heartbeat(False), retain=True)
        b.disconnect()
        wait_for(lambda: by_id(fleet(store_spec))[gw_b]["state"] == "offline")
        # gw-0001 comes back
        a = MqttClient(broker, pki.gateway(gw_a), will=(status_a, messages.OFFLINE_WILL, 1, True)).connect()
        a.publish(status_a, heartbeat(True), retain=True)
        wait_for(lambda: by_id(fleet(store_spec))[gw_a]["state"] == "online")
        assert by_id(fleet(store_spec))[gw_a]["backlog_pending"] == 0
        a.disconnect()
    table = subprocess.run(
        [*HUB, "fleet", "--store", store_spec], capture_output=True, text=True, timeout=30, env=ENV, cwd=ROOT
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("GATEWAY") and lines[-1].startswith("2 gateways: 1 online, 0 stale, 1 offline")


def test_a_stale_retained_heartbeat_is_stale_to_a_new_hub(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    """A gateway that last spoke two hours ago (its retained heartbeat, no will fired: the broker
    has not noticed yet) is ``stale`` to a hub that subscribes now, not freshly seen."""
    gw = "gw-0003"
    status = topic(PROVINCE, gw, "status")
    old = datetime.now(UTC) - timedelta(hours=2)
    c = MqttClient(broker, pki.gateway(gw)).connect()
    c.publish(status, heartbeat(True, sent_at=old, pending=3), retain=True)
    c.disconnect()
    store_spec = str(tmp_path / "hub")
    with ServeProcess(tmp_path / "serve", broker, pki, store_spec, "hub-1"):
        wait_for(lambda: (tmp_path / "hub" / "hub.sqlite3").exists() and len(fleet(store_spec)) == 1)
    [doc] = fleet(store_spec)
    assert (doc["state"], doc["online"], doc["reasons"][0]) == ("stale", True, "stale")
    assert abs(datetime.fromisoformat(doc["last_seen"]) - old) < timedelta(seconds=1)
    assert doc["silent_s"] >= 7200 and doc["oldest_pending_age_s"] >= 7205


@pytest.mark.skipif(demo_find_mosquitto() is None, reason="the demo runs a hub only with mosquitto")
def test_the_demo_gateway_is_in_the_fleet(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "demo", "--seconds", "4", "--state-dir", str(state), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=90,
        env={**ENV, "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [doc] = fleet(str(state / "hub"))
    assert (doc["gateway_id"], doc["province"], doc["state"]) == ("demo-gw-01", "demo", "offline")  # a clean stop
    assert doc["backlog_pending"] == 0 and doc["last_sync_at"] is not None
    assert doc["agent_version"] and doc["models"] and doc["devices"]
    assert doc["cert_not_after"] is not None and doc["cert_days_left"] > 30
    assert all(d["last_data_at"] for d in doc["devices"])
