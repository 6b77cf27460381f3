"""Signed remote commands end to end: a real Mosquitto (TLS + ACL), a real agent (its config file,
state dir, buffer, scorer and sync link), a hub worker recording results in a real SQLite ledger,
and ``edge-hub cmd`` itself. One agent run goes through every case, so the suite pays for one
start: forged, expired, replayed and other-gateway commands refused; a bad config rolled back; a
bad model rolled back and a good one applied; a diagnostics bundle without patient data; a good
config applied, after which the agent asks for its restart and the next load sees the change."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.remote.overlay import overlay_path
from hub.cli import main as hub_main
from hub.commands import ResultRecorder, issue
from hub.ingest import Ingestor
from hub.mqtt_worker import HubWorker
from hub.store import HubStore, open_store
from models import signing
from models.manifest import read as read_manifest
from tests.edge_agent.remote.support import GW, PROVINCE, wait_until, write_config
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient
from tests.fixtures.pki import Pki, kernel_now
from tests.hub.mqtt_helpers import worker_settings
from wire.commands import Command, encode_command

BUILT = Path(__file__).parents[3] / "models" / "built"
SECRET = "P-SECRET-0042"


@dataclass
class World:
    tmp: Path
    pki: Pki
    broker: MosquittoBroker
    store: HubStore
    config_path: Path
    agent: Agent
    hub: MqttClient  # a hub user publishing raw command payloads

    def send(self, kind: str, args: dict[str, object], **kw: object) -> str:
        """Issue (ledger + signature) and publish; the command id."""
        issued = issue(
            self.store,
            self.pki.hub_keys.signing,
            gateway_id=str(kw.get("gateway_id", GW)),
            province=PROVINCE,
            kind=kind,
            args=args,
            now=kw.get("now", datetime.now(UTC)),  # type: ignore[arg-type]
            expires_in_s=float(kw.get("expires_in_s", 600.0)),  # type: ignore[arg-type]
        )
        self.hub.publish(f"se/v1/{PROVINCE}/{GW}/cmd", issued.payload)
        return issued.record.cmd_id

    def state(self, cmd_id: str, timeout: float = 20.0) -> str:
        """The ledger state of ``cmd_id`` once the gateway's result is recorded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.store.command(cmd_id)
            assert record is not None
            if record.state != "sent":
                return record.state
            time.sleep(0.05)
        raise TimeoutError(f"no result for {cmd_id}")

    def refused(self, reason: str) -> int:
        assert self.agent.remote is not None
        return self.agent.remote.state.refused[reason]

    def cli(self, *argv: str) -> list[str]:
        ops = self.pki.hub("hub-2")
        return [
            "cmd",
            GW,
            *argv,
            "--store",
            str(self.tmp / "hub"),
            "--broker",
            self.broker.url,
            "--ca",
            str(self.pki.ca_path),
            "--cert",
            str(ops.cert_path),
            "--key",
            str(ops.key_path),
            "--hub-keys",
            str(self.pki.hub_keys_dir),
            "--wait",
            "20",
            "--json",
        ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    pki = Pki(tmp_path / "pki", now=kernel_now(tmp_path), hub_users=("hub-1", "hub-2", "hub-3"))
    with MosquittoBroker(tmp_path / "broker", pki) as broker:
        store = open_store(tmp_path / "hub")
        recorder = ResultRecorder(
            store, hub_sealing_private=pki.hub_keys.sealing, ca_certs=pki.ca_certs, clock=lambda: datetime.now(UTC)
        )
        worker = HubWorker(
            worker_settings(broker, pki), Ingestor(store, pki.hub_keys, pki.ca_certs), results=recorder
        ).start()
        assert worker.wait_subscribed(10)
        config_path = write_config(tmp_path, pki, broker)
        agent = Agent(load_config(config_path), final_sync_s=0.0)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        done: list[BaseException | None] = []

        def run() -> None:
            try:
                loop.run_until_complete(agent.run(stop))
                done.append(None)
            except BaseException as exc:  # surfaced by the test
                done.append(exc)

        thread = threading.Thread(target=run, name="agent", daemon=True)
        thread.start()
        hub = MqttClient(broker, pki.hub("hub-3")).connect()
        try:
            assert wait_until(lambda: (agent.sync is not None and agent.sync.state == "connected") or bool(done))
            assert not done, done
            assert wait_until(lambda: any(g.gateway_id == GW for g in store.gateways())), "no heartbeat at the hub"
            yield World(tmp_path, pki, broker, store, config_path, agent, hub)
        finally:
            hub.disconnect()
            if thread.is_alive():
                loop.call_soon_threadsafe(stop.set)
            thread.join(30)
            worker.stop()
            store.close()
            loop.close()
    assert done == [None], done


def signed_model(tmp: Path, *, garbage: bool, version: str, key: object = None) -> tuple[Path, Path]:
    """bp_category re-signed (dev key, or ``key``) as ``version``; with ``garbage`` its bytes do not load."""
    raw = read_manifest(BUILT / "bp_category.manifest.json")
    model = b"not an onnx graph" if garbage else (BUILT / "bp_category.onnx").read_bytes()
    raw = {**raw, "version": version, "sha256": hashlib.sha256(model).hexdigest()}
    raw.pop("signature", None)
    manifest = signing.sign(raw, key or signing.dev_private_key())  # type: ignore[arg-type]
    out = tmp / f"push-{version}"
    out.mkdir()
    (out / "bp_category.onnx").write_bytes(model)
    (out / "bp_category.manifest.json").write_text(json.dumps(manifest))
    return out / "bp_category.onnx", out / "bp_category.manifest.json"


def test_command_round_trip(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    agent = world.agent
    assert agent.remote is not None
    # a forged command (another key): refused, counted, never answered, the ledger untouched
    forged = Command("f-1", GW, 10**6, datetime.now(UTC), datetime.now(UTC) + timedelta(hours=1), "diagnostics", {})
    world.hub.publish(f"se/v1/{PROVINCE}/{GW}/cmd", encode_command(forged, ed25519.Ed25519PrivateKey.generate()))
    world.hub.publish(f"se/v1/{PROVINCE}/{GW}/cmd", b"\x00garbage")
    assert wait_until(lambda: world.refused("bad_signature") == 1 and world.refused("truncated") == 1)
    assert agent.status()["remote"]["refused"] == {"bad_signature": 1, "truncated": 1}  # type: ignore[index]

    # expired before it arrived (issued two hours ago for one minute): answered "expired"
    old = world.send("diagnostics", {"log_lines": 0}, now=datetime.now(UTC) - timedelta(hours=2), expires_in_s=60.0)
    assert world.state(old) == "expired"

    # another gateway's command on our topic (a hub bug): refused
    other = world.send("diagnostics", {"log_lines": 0}, gateway_id="gw-0002")
    assert wait_until(lambda: world.refused("other_gateway") == 1)
    assert world.store.command(other).state == "sent"  # type: ignore[union-attr]  # answered as gw-0001: not recorded

    # a config the agent's own loader refuses: written, validated, rolled back
    bad = world.send("set-config", {"values": {"sync.heartbeat_s": -5}})
    assert world.state(bad) == "rolled_back"
    assert "sync.heartbeat_s" in (world.store.command(bad).detail or "")  # type: ignore[union-attr]
    assert not overlay_path(world.tmp / "state").exists()
    # a key that may not be set remotely: refused without touching anything
    ident = world.send("set-config", {"values": {"gateway.id": "gw-9999"}})
    assert world.state(ident) == "refused"

    # a model that is signed and hashed right but does not load: rolled back, the old one stays
    bad_model, bad_manifest = signed_model(world.tmp, garbage=True, version="9.0.0")
    assert hub_main(world.cli("push-model", str(bad_model), "--manifest", str(bad_manifest))) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["state"], out["data"]["reason"]) == ("rolled_back", "load_failed")
    in_use = {m["id"]: m["version"] for m in agent.scorer.status()["models"]}  # type: ignore[union-attr]
    assert in_use["bp_category"] == "2.0.0"
    # a good model signed with a key the gateway does not trust: refused, never tried
    rogue_model, rogue_manifest = signed_model(
        world.tmp, garbage=False, version="6.6.6", key=ed25519.Ed25519PrivateKey.generate()
    )
    assert hub_main(world.cli("push-model", str(rogue_model), "--manifest", str(rogue_manifest))) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["state"], out["data"]["reason"]) == ("refused", "unknown_key")
    good_model, good_manifest = signed_model(world.tmp, garbage=False, version="2.0.1")
    assert hub_main(world.cli("push-model", str(good_model), "--manifest", str(good_manifest))) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "applied" and out["data"]["model"]["version"] == "2.0.1"
    in_use = {m["id"]: m["version"] for m in agent.scorer.status()["models"]}  # type: ignore[union-attr]
    assert in_use["bp_category"] == "2.0.1"

    # diagnostics: status, preflight, recent logs; no patient identifier even when one was logged
    import logging

    logging.getLogger("edge_agent.test").warning("event=test_line patient_id=%s value=97", SECRET)
    diag_dir = world.tmp / "diag"
    assert hub_main(world.cli("diagnostics", "--out", str(diag_dir), "--log-lines", "100")) == 0
    out = json.loads(capsys.readouterr().out)
    bundle_text = Path(out["bundle_path"]).read_text()
    bundle = json.loads(bundle_text)
    assert bundle["status"]["online"] is True and bundle["preflight"] and bundle["logs"]
    assert any("event=test_line" in line for line in bundle["logs"])
    assert SECRET not in bundle_text and SECRET not in json.dumps(world.store.command_data(out["cmd_id"]))

    # the very same signed payload again: a replay, refused; the ledger keeps the first result
    replayed = issue(
        world.store,
        world.pki.hub_keys.signing,
        gateway_id=GW,
        province=PROVINCE,
        kind="diagnostics",
        args={"log_lines": 0},
        now=datetime.now(UTC),
    )
    world.hub.publish(replayed.topic, replayed.payload)
    assert world.state(replayed.record.cmd_id) == "applied"
    world.hub.publish(replayed.topic, replayed.payload)
    assert wait_until(lambda: world.refused("replayed") == 1)
    assert world.store.command(replayed.record.cmd_id).state == "applied"  # type: ignore[union-attr]

    # a good config: applied, then the agent stops itself to restart on it
    assert hub_main(world.cli("set-config", "sync.heartbeat_s=30", "scoring.news2_min_level=medium")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "applied" and sorted(out["data"]["changed"]) == [
        "scoring.news2_min_level",
        "sync.heartbeat_s",
    ]
    assert wait_until(lambda: agent.restart_reason == "config_changed")
    reloaded = load_config(world.config_path)
    assert reloaded.sync is not None and reloaded.sync.heartbeat_s == 30.0
    assert reloaded.scoring.news2_min_level.value == "medium"
    assert load_config(world.config_path, overlay=False).sync.heartbeat_s == 60.0  # type: ignore[union-attr]

    # the last applied seq survived on disk, and the fleet view shows the last command
    state = json.loads((world.tmp / "state" / "remote" / "state.json").read_text())
    assert state["last_seq"] == world.store.command(out["cmd_id"]).seq  # type: ignore[union-attr]
    last = world.store.last_commands()[GW]
    assert (last.kind, last.state) == ("set-config", "applied")
    assert hub_main(["fleet", "--store", str(world.tmp / "hub"), "--json"]) == 0
    fleet = json.loads(capsys.readouterr().out)
    assert fleet[0]["last_command"]["state"] == "applied"
