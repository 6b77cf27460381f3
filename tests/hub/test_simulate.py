"""``edge-hub simulate`` against a real Mosquitto (TLS + ACL from tests/fixtures) and a real hub
worker: every reading ingested exactly once, heartbeats in the fleet registry, each simulated
gateway publishing under its own id only; and its failure paths (no hub, bad arguments)."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.cli import main
from hub.simulate import SimSettings, gateway_ids, parse_broker, percentile
from hub.store import open_store
from provisioning.pki import new_hub_keys
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient, find_mosquitto
from tests.fixtures.pki import Pki, kernel_now
from tests.hub.mqtt_helpers import running_worker
from wire import messages
from wire.envelope import open_envelope
from wire.topics import parse_topic

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    p = Pki(tmp_path / "pki", now=kernel_now(tmp_path))
    p.ca.write(p.directory / "ca.key.pem", p.directory / "ca.cert.pem")
    return p


def simulate_args(broker: MosquittoBroker, pki: Pki, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "simulate",
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--broker-ca",
        str(pki.ca_path),
        "--hub-keys",
        str(pki.hub_public_path),
        "--ca-key",
        str(pki.directory / "ca.key.pem"),
        "--ca-cert",
        str(pki.directory / "ca.cert.pem"),
        "--state-dir",
        str(tmp_path / "sim"),
        "--province",
        "p01",
        "--province",
        "p02",
        "--json",
        *extra,
    ]


@needs_mosquitto
def test_every_reading_once_heartbeats_in_registry_own_topics_only(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    with MosquittoBroker(tmp_path / "broker", pki, persistence=False) as broker, open_store(tmp_path / "hub") as store:
        spy = MqttClient(broker, pki.hub("hub-2")).connect()
        spy.subscribe("se/v1/#")
        with running_worker(broker, pki, store):
            argv = simulate_args(broker, pki, tmp_path, "--gateways", "5", "--duration", "4", "--rate", "3")
            argv += ["--batch-age", "1", "--heartbeat", "1", "--ramp", "0.5", "--drain", "15", "--progress", "1"]
            code = main(argv)
            out, err = capsys.readouterr()
            # a second run with the same identities: new uids, nothing the hub already has
            again = simulate_args(broker, pki, tmp_path, "--gateways", "5", "--duration", "1.5", "--rate", "4")
            assert main([*again, "--batch-age", "0.5", "--ramp", "0", "--drain", "15"]) == 0
            second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            assert second["hub_stored"] == second["readings_generated"] > 0 and second["hub_duplicates"] == 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(g.online for g in store.gateways()):
                time.sleep(0.05)  # the clean stop's last heartbeats, on their way to the worker
        summary = json.loads(out.strip().splitlines()[-1])
        assert code == 0, err
        assert "event=sim_progress" in err and "event=sim_done" in err
        ids = gateway_ids("sim", 5)
        generated = summary["readings_generated"]
        assert generated > 5 * 3 * 2  # at least ~2 s of readings per gateway at 3/s
        assert summary["readings_acked"] == generated and summary["readings_unacked"] == 0
        assert summary["hub_stored"] == generated and summary["connected"] == 5
        assert summary["lag_p50_s"] is not None and summary["lag_p99_s"] >= summary["lag_p50_s"]
        # exactly once: every uid of every gateway, each once, and nothing else
        assert store.count_readings() == generated + second["readings_generated"]
        uids = store.uids()
        for gw in ids:  # two runs, each a gapless run of sequence numbers
            seqs = sorted(int(u.split(":")[1]) for u in uids if u.startswith(f"{gw}:"))
            breaks = [b for a, b in itertools.pairwise(seqs) if b != a + 1]
            assert len(breaks) == 1 and breaks[0] > seqs[0]
        assert len(uids) == generated + second["readings_generated"]
        # the fleet registry: every gateway, its province, offline after the clean stop's heartbeat
        registry = {g.gateway_id: g for g in store.gateways()}
        assert sorted(registry) == ids
        assert {registry[gw].province for gw in ids} == {"p01", "p02"}
        for g in registry.values():
            assert g.online is False and g.status["sent_at"] and g.status["agent_version"] == "simulate"
            assert int(str(g.status["certificate"]["serial"]), 16) > 0  # type: ignore[index]
        # what the broker carried: every up/status message under the topic of the gateway that signed it
        seen_up = set()
        now = datetime.now(UTC)
        for msg in spy.received_within(1.0):
            ref = parse_topic(msg.topic)
            if ref.leaf == "up":
                opened = open_envelope(
                    msg.payload, hub_sealing_private=pki.hub_keys.sealing, ca_certs=pki.ca_certs, now=now
                )
                assert opened.gateway_id == ref.gateway_id
                seen_up.add(ref.gateway_id)
            elif ref.leaf == "status" and msg.payload:
                doc = messages.decode_heartbeat(msg.payload)
                assert doc.get("gateway_id", ref.gateway_id) == ref.gateway_id
        assert seen_up == set(ids)
        spy.disconnect()


@needs_mosquitto
def test_a_gateway_may_not_publish_under_another_id(tmp_path: Path, pki: Pki) -> None:
    """The ACL the simulator runs against: a simulated gateway's certificate only writes its own topics."""
    with MosquittoBroker(tmp_path / "broker", pki, persistence=False) as broker:
        spy = MqttClient(broker, pki.hub("hub-2")).connect()
        spy.subscribe("se/v1/+/+/status")
        gw = MqttClient(broker, pki.gateway("sim-0001")).connect()
        gw.publish("se/v1/p01/sim-0002/status", b"{}", retain=False)
        gw.publish("se/v1/p01/sim-0001/status", b"{}", retain=False)
        topics = [m.topic for m in spy.received_within(1.0)]
        assert topics == ["se/v1/p01/sim-0001/status"]
        gw.disconnect()
        spy.disconnect()


@needs_mosquitto
def test_no_hub_means_unacknowledged_readings_and_exit_1(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    with MosquittoBroker(tmp_path / "broker", pki, persistence=False) as broker:
        argv = simulate_args(broker, pki, tmp_path, "--gateways", "2", "--duration", "1.5", "--rate", "4")
        code = main([*argv, "--batch-age", "0.5", "--ramp", "0", "--drain", "0.5"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1
    assert summary["readings_unacked"] == summary["readings_generated"] > 0 and summary["readings_acked"] == 0


@needs_mosquitto
def test_throwaway_ca_is_refused_by_a_broker_that_does_not_trust_it(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    with MosquittoBroker(tmp_path / "broker", pki, persistence=False) as broker:
        argv = simulate_args(broker, pki, tmp_path, "--gateways", "2", "--duration", "1", "--drain", "0")
        argv = [a for a in argv if a not in (str(pki.directory / "ca.key.pem"), str(pki.directory / "ca.cert.pem"))]
        argv = [a for a in argv if a not in ("--ca-key", "--ca-cert")]
        code = main([*argv, "--ramp", "0"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and summary["ever_connected"] == 0
    assert summary["connect_failures"] + summary["refused"] >= 2
    assert (tmp_path / "sim" / "sim-ca.pem").exists()  # what the broker and the hub would have to trust


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["simulate", "--gateways", "2", "--hub-keys", str(tmp_path / "none.json")]
    assert main([*base, "--broker", "nowhere"]) == 2
    assert main([*base, "--broker", "127.0.0.1:1883"]) == 2  # TLS without --broker-ca
    assert main([*base, "--broker", "mqtt://127.0.0.1:1883", "--rate", "-1"]) == 2
    assert main([*base, "--broker", "mqtt://127.0.0.1:1883", "--ca-key", "k.pem"]) == 2
    assert main([*base, "--broker", "mqtt://127.0.0.1:1883", "--prefix", "a/b"]) == 2
    assert main([*base, "--broker", "mqtt://127.0.0.1:1883"]) == 78  # no hub keys there
    keys = tmp_path / "hub-public.json"
    new_hub_keys().public().write(keys)
    (tmp_path / "a-file").write_text("")
    plain = ["simulate", "--gateways", "2", "--hub-keys", str(keys), "--broker", "mqtt://127.0.0.1:1883"]
    assert main([*plain, "--state-dir", str(tmp_path / "a-file")]) == 78  # not a directory
    assert main([*plain, "--state-dir", str(tmp_path / "a-file" / "below")]) == 78
    assert "edge-hub:" in capsys.readouterr().err


def test_pure_parts() -> None:
    assert parse_broker("127.0.0.1:8883") == ("127.0.0.1", 8883, True)
    assert parse_broker("mqtts://broker.example") == ("broker.example", 8883, True)
    assert parse_broker("mqtt://localhost:1883") == ("localhost", 1883, False)
    for bad in ("127.0.0.1", "mqtt://h", "h:0", "h:99999", "h:1/x"):
        with pytest.raises(ValueError):
            parse_broker(bad)
    assert gateway_ids("sim", 3) == ["sim-0001", "sim-0002", "sim-0003"]
    assert gateway_ids("x", 10_000)[-1] == "x-10000"
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    ok = SimSettings(gateways=1, host="h", port=1, tls=False)
    assert ok.problems() == []
    assert SimSettings(gateways=0, host="h", port=1, tls=True).problems() == [
        "--gateways must be 1..100000",
        "a TLS broker needs --broker-ca",
    ]


@needs_mosquitto
def test_ctrl_c_stops_cleanly_with_every_reading_acked(tmp_path: Path, pki: Pki) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.hub.mqtt_helpers import ROOT

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with MosquittoBroker(tmp_path / "broker", pki, persistence=False) as broker, open_store(tmp_path / "hub") as store:
        with running_worker(broker, pki, store):
            argv = simulate_args(broker, pki, tmp_path, "--gateways", "3", "--duration", "600", "--rate", "4")
            proc = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", *argv, "--batch-age", "0.5", "--ramp", "0", "--progress", "0.2"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
            assert proc.stderr is not None
            while "event=sim_progress" not in (line := proc.stderr.readline()) or "acked=0 " in line:
                assert line, "the simulator ended before any ack"
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        summary = json.loads(out.strip().splitlines()[-1])
        assert proc.returncode == 0
        assert summary["readings_acked"] == summary["readings_generated"] == store.count_readings() > 0
        assert summary["elapsed_s"] < 60
