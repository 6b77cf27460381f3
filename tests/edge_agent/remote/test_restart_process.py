"""``edge-agent run`` as systemd runs it: an applied remote ``set-config`` ends the process with
exit 1 after a clean stop (systemd's ``Restart=on-failure`` starts it on the new config), and the
next start reads the change and keeps refusing the old command as a replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.config import load_config
from hub.commands import ResultRecorder, issue
from hub.ingest import Ingestor
from hub.mqtt_worker import HubWorker
from hub.store import open_store
from tests.edge_agent.remote.support import GW, PROVINCE, wait_until, write_config
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient
from tests.fixtures.pki import Pki, kernel_now
from tests.hub.mqtt_helpers import worker_settings

ROOT = Path(__file__).parents[3]
AGENT = [sys.executable, "-m", "edge_agent.cli", "run", "--config"]


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "ab") as out:
        return subprocess.Popen([*AGENT, str(config)], stdout=out, stderr=out, cwd=ROOT, env=env)


def test_applied_config_restarts_the_agent(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki", now=kernel_now(tmp_path), hub_users=("hub-1", "hub-3"))
    with MosquittoBroker(tmp_path / "broker", pki) as broker:
        store = open_store(tmp_path / "hub")
        recorder = ResultRecorder(
            store, hub_sealing_private=pki.hub_keys.sealing, ca_certs=pki.ca_certs, clock=lambda: datetime.now(UTC)
        )
        worker = HubWorker(
            worker_settings(broker, pki), Ingestor(store, pki.hub_keys, pki.ca_certs), results=recorder
        ).start()
        config = write_config(tmp_path, pki, broker)
        log = tmp_path / "agent.log"
        proc = start(config, log)
        hub = MqttClient(broker, pki.hub("hub-3")).connect()
        try:
            assert worker.wait_subscribed(10)
            assert wait_until(lambda: any(g.gateway_id == GW for g in store.gateways()), 30), log.read_text()
            issued = issue(
                store,
                pki.hub_keys.signing,
                gateway_id=GW,
                province=PROVINCE,
                kind="set-config",
                args={"values": {"scheduler.status_interval_s": 2.5}},
                now=datetime.now(UTC),
            )
            hub.publish(issued.topic, issued.payload)
            assert proc.wait(30) == 1, log.read_text()[-3000:]
            assert "event=agent_restart reason=config_changed exit=1" in log.read_text()
            record = store.command(issued.record.cmd_id)
            assert record is not None and record.state == "applied"
            assert load_config(config).scheduler.status_interval_s == 2.5
            # "systemd" starts it again: it runs on the new config and the old command is a replay
            proc = start(config, log)
            status = tmp_path / "state" / "status.json"

            def remote() -> dict[str, object]:
                try:
                    doc = json.loads(status.read_text())
                except (OSError, ValueError):
                    return {}
                return doc.get("remote", {}) if doc.get("pid") == proc.pid else {}

            assert wait_until(lambda: bool(remote()), 30), log.read_text()[-3000:]
            assert remote()["last_seq"] == issued.record.seq
            hub.publish(issued.topic, issued.payload)
            assert wait_until(lambda: remote().get("refused") == {"replayed": 1}, 30), log.read_text()[-3000:]
            assert proc.poll() is None
        finally:
            hub.disconnect()
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
            worker.stop()
            store.close()
    assert proc.returncode == 0
