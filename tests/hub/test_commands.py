"""The hub's command ledger on both engines (seq allocation by the database, with several
processes' worth of store instances at once), the result recorder's checks, ``edge-hub cmd``'s
usage errors, and the fleet view's last command."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from hub.cli import main
from hub.cmd_cli import parse_assignment
from hub.commands import CommandRecord, ResultRecorder, issue
from hub.fleet import fleet_records, render_table
from hub.store import GatewayRecord, HubStore, open_store
from tests.wire.keys import KEYS, NOW
from wire.commands import CommandResult, decode_command, seal_result
from wire.messages import decode_ack, encode_ack

GW = "gw-0001"


def send(store: HubStore, kind: str = "diagnostics", gateway: str = GW, at: datetime = NOW) -> CommandRecord:
    args: dict[str, object] = {"log_lines": 5} if kind == "diagnostics" else {"values": {"sync.heartbeat_s": 30}}
    return issue(store, KEYS.hub.signing, gateway_id=gateway, province="p01", kind=kind, args=args, now=at).record


def test_ledger_allocates_and_records(store: HubStore) -> None:
    issued = issue(
        store,
        KEYS.hub.signing,
        gateway_id=GW,
        province="p01",
        kind="set-config",
        args={"values": {"sync.heartbeat_s": 30}},
        now=NOW,
        expires_in_s=120,
    )
    cmd = decode_command(issued.payload, KEYS.hub.signing.public_key())
    assert (cmd.seq, cmd.gateway_id, cmd.expires_at - cmd.issued_at) == (1, GW, timedelta(seconds=120))
    assert issued.topic == "se/v1/p01/gw-0001/cmd"
    second = send(store, at=NOW + timedelta(seconds=1))
    other = send(store, gateway="gw-0002", at=NOW + timedelta(seconds=2))
    assert (second.seq, other.seq) == (2, 1)  # per gateway
    assert [c.cmd_id for c in store.commands()] == [other.cmd_id, second.cmd_id, issued.record.cmd_id]
    assert [c.seq for c in store.commands(gateway_id=GW)] == [2, 1]
    assert len(store.commands(province="p01", limit=1)) == 1 and store.commands(province="nowhere") == []
    assert store.command(issued.record.cmd_id) == issued.record
    assert store.command_data(issued.record.cmd_id) is None
    kw = {"state": "applied", "detail": "restart to apply", "data": {"changed": ["sync.heartbeat_s"]}}
    assert store.record_command_result(cmd_id=issued.record.cmd_id, gateway_id=GW, result_at=NOW, **kw)  # type: ignore[arg-type]
    # a redelivered or later result changes nothing; another gateway cannot answer for it
    assert not store.record_command_result(cmd_id=issued.record.cmd_id, gateway_id=GW, result_at=NOW, **kw)  # type: ignore[arg-type]
    assert not store.record_command_result(cmd_id=second.cmd_id, gateway_id="gw-0002", result_at=NOW, **kw)  # type: ignore[arg-type]
    done = store.command(issued.record.cmd_id)
    assert done is not None and (done.state, done.detail, done.result_at) == ("applied", "restart to apply", NOW)
    assert store.command_data(issued.record.cmd_id) == {"changed": ["sync.heartbeat_s"]}
    last = store.last_commands()
    assert (last[GW].seq, last["gw-0002"].seq) == (2, 1)
    assert set(store.last_commands(province="p01")) == {GW, "gw-0002"} and store.last_commands(province="x") == {}
    assert store.schema_version() >= 3


def test_concurrent_allocation_never_repeats_a_seq(store_spec: str) -> None:
    """Four store instances (as four hub processes would have) allocate at once."""
    stores = [open_store(store_spec) for _ in range(4)]
    seqs: list[int] = []
    lock = threading.Lock()

    def allocate(s: HubStore) -> None:
        for _ in range(10):
            r = send(s)
            with lock:
                seqs.append(r.seq)

    threads = [threading.Thread(target=allocate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert sorted(seqs) == list(range(1, 41))


def result_for(record: CommandRecord, **kw: object) -> CommandResult:
    base: dict[str, object] = {
        "cmd_id": record.cmd_id,
        "gateway_id": GW,
        "seq": record.seq,
        "kind": record.kind,
        "state": "applied",
        "detail": "ok",
        "at": NOW,
        "data": {},
    }
    return CommandResult(**{**base, **kw})  # type: ignore[arg-type]


def test_result_recorder_checks(store: HubStore) -> None:
    rec = ResultRecorder(store, hub_sealing_private=KEYS.hub.sealing, ca_certs=[KEYS.ca.cert], clock=lambda: NOW)
    record = send(store)
    pub = KEYS.hub.sealing.public_key()
    topic = "se/v1/p01/gw-0001/cmd/result"

    def sealed(result: CommandResult, gateway: object = KEYS.gw1) -> bytes:
        return seal_result(result, hub_sealing_public=pub, gateway=gateway)  # type: ignore[arg-type]

    assert rec.handle("se/v1/p01/gw-0001/up", sealed(result_for(record))) == "bad_topic"
    assert rec.handle("nonsense", b"") == "bad_topic"
    assert rec.handle(topic, b"garbage") == "truncated"
    assert rec.handle(topic, sealed(result_for(record), KEYS.foreign)) == "cert_untrusted"
    assert rec.handle(topic, sealed(result_for(record), KEYS.expired)) == "cert_expired"
    # gw-0002 speaking on gw-0001's topic about gw-0001's command
    other = sealed(result_for(record, gateway_id="gw-0002"), KEYS.gw2)
    assert rec.handle(topic, other) == "gateway_mismatch"
    assert rec.handle(topic, sealed(result_for(record, cmd_id="c-unknown"))) == "unknown_command"
    assert rec.handle(topic, sealed(result_for(record, seq=record.seq + 1))) == "result_mismatch"
    assert rec.handle(topic, sealed(result_for(record, kind="set-config"))) == "result_mismatch"
    assert store.command(record.cmd_id).state == "sent"  # type: ignore[union-attr]
    assert rec.handle(topic, sealed(result_for(record, state="rolled_back", detail="bad key"))) == "recorded"
    assert rec.handle(topic, sealed(result_for(record))) == "duplicate"
    assert store.command(record.cmd_id).state == "rolled_back"  # type: ignore[union-attr]
    m = rec.metrics()
    assert m["hub_command_results_total"] == 1 and m["hub_command_results_duplicate_total"] == 1
    assert m["hub_command_results_rejected"]["result_mismatch"] == 2  # type: ignore[index]


def test_result_recorder_acks_what_it_recorded_or_refused(store: HubStore) -> None:
    """The ack the worker publishes: the batches' signed Ack, lane ``results``, batch id =
    cmd_id; ok for a recorded result and for every duplicate, rejected for an authenticated
    result the ledger cannot take, none when the envelope does not open."""
    rec = ResultRecorder(store, hub_sealing_private=KEYS.hub.sealing, ca_certs=[KEYS.ca.cert], clock=lambda: NOW)
    record = send(store)
    pub = KEYS.hub.sealing.public_key()
    topic = "se/v1/p01/gw-0001/cmd/result"
    payload = seal_result(result_for(record), hub_sealing_public=pub, gateway=KEYS.gw1)
    first, again = rec.process(topic, payload), rec.process(topic, payload)
    assert (first.status, again.status) == ("recorded", "duplicate")
    assert first.ack_topic == again.ack_topic == "se/v1/p01/gw-0001/ack"
    assert first.ack is not None and again.ack is not None
    wire = decode_ack(encode_ack(first.ack, KEYS.hub.signing), KEYS.hub.signing.public_key())
    assert (wire.batch_id, wire.gateway_id, wire.lane, wire.status) == (record.cmd_id, GW, "results", "ok")
    assert (wire.stored, wire.duplicates, wire.acked_at) == (1, 0, NOW)
    assert (again.ack.status, again.ack.stored, again.ack.duplicates) == ("ok", 0, 1)
    unknown = rec.process(
        topic, seal_result(result_for(record, cmd_id="c-unknown"), hub_sealing_public=pub, gateway=KEYS.gw1)
    )
    assert unknown.status == "unknown_command" and unknown.ack is not None
    assert (unknown.ack.batch_id, unknown.ack.status, unknown.ack.reason) == (
        "c-unknown",
        "rejected",
        "unknown_command",
    )
    for bad_topic, bad in (
        ("se/v1/p01/gw-0001/up", payload),
        (topic, b"garbage"),
        ("se/v1/p01/gw-0002/cmd/result", payload),
    ):
        assert rec.process(bad_topic, bad).ack is None
    m = rec.metrics()
    assert m["hub_command_results_total"] == 1 and m["hub_command_results_duplicate_total"] == 1


def test_fleet_shows_the_last_command() -> None:
    g = GatewayRecord(GW, "p01", True, NOW, {"v": 1, "type": "status", "online": True, "sent_at": NOW.isoformat()})
    rec = CommandRecord("c-1", GW, "p01", "set-config", 4, NOW, NOW, "rolled_back", "bad", NOW)
    records = fleet_records([g], NOW, commands={GW: rec})
    assert records[0].last_command is not None and records[0].last_command["state"] == "rolled_back"
    table = render_table(records, NOW).splitlines()
    assert table[0].split()[-1] == "COMMAND" and table[1].split()[-1] == "set-config#4:rolled_back"
    assert fleet_records([g], NOW)[0].last_command is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sync.heartbeat_s=30", ("sync.heartbeat_s", 30)),
        ("alerts.spo2_low=91.5", ("alerts.spo2_low", 91.5)),
        ("scoring.probe_runtime=false", ("scoring.probe_runtime", False)),
        ("scoring.news2_min_level=medium", ("scoring.news2_min_level", "medium")),
        ('gateway.station_name="Trạm Y tế Xã A"', ("gateway.station_name", "Trạm Y tế Xã A")),
    ],
)
def test_parse_assignment(text: str, expected: tuple[str, object]) -> None:
    assert parse_assignment(text) == expected


def test_cmd_usage_errors(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    common = [
        "--store",
        str(base / "hub"),
        "--broker",
        "mqtts://127.0.0.1:1",
        "--ca",
        str(base / "ca.pem"),
        "--cert",
        str(base / "c.pem"),
        "--key",
        str(base / "k.pem"),
        "--hub-keys",
        str(base / "keys"),
    ]
    KEYS.hub.write(base / "keys")
    (base / "ca.pem").write_bytes(KEYS.ca.cert_pem())
    (base / "c.pem").write_bytes(KEYS.gw1.cert_pem())
    (base / "k.pem").write_bytes(KEYS.gw1.key_pem())
    open_store(base / "hub").close()
    assert main(["cmd", GW, "set-config", "novalue", *common]) == 2
    assert main(["cmd", GW, "set-config", "a.b=[1, 2]", *common]) == 2
    assert main(["cmd", GW, "set-config", "sync.heartbeat_s=30", *common, "--expires-in", "0"]) == 2
    assert main(["cmd", GW, "set-config", "sync.heartbeat_s=30", *common, "--broker", "mqtt://x"]) == 2
    assert main(["cmd", GW, "diagnostics", *common, "--log-lines", "9999"]) == 2
    assert main(["cmd", GW, "push-model", str(base / "missing.onnx"), "--manifest", str(base / "m.json"), *common]) == 2
    (base / "m.json").write_text("{not json")
    (base / "big.onnx").write_bytes(b"\x00" * (2 * 1024 * 1024))
    assert main(["cmd", GW, "push-model", str(base / "big.onnx"), "--manifest", str(base / "m.json"), *common]) == 2
    (base / "m.json").write_text("{}")
    assert main(["cmd", GW, "push-model", str(base / "big.onnx"), "--manifest", str(base / "m.json"), *common]) == 2
    assert "too_large" in capsys.readouterr().err
    assert main(["cmd", GW, "diagnostics", *common]) == 2  # not in the fleet registry, no --province
    assert "give --province" in capsys.readouterr().err
    assert main(["cmd", GW, "reboot", *common]) == 2
    with open_store(base / "hub") as s:
        assert s.commands() == []  # nothing was allocated by a refused invocation
    # the broker is not there: exit 1 (retry), and the ledger says it was never answered
    assert main(["cmd", GW, "diagnostics", *common, "--province", "p01"]) == 1


def test_a_result_envelope_is_never_ingested_as_a_batch(tmp_path: object) -> None:
    from pathlib import Path

    from hub.ingest import Ingestor

    with open_store(Path(str(tmp_path)) / "hub") as s:
        ingestor = Ingestor(s, KEYS.hub, [KEYS.ca.cert], lambda: NOW)
        record = send(s)
        sealed = seal_result(result_for(record), hub_sealing_public=KEYS.hub.sealing.public_key(), gateway=KEYS.gw1)
        for leaf in ("up", "alert"):
            outcome = ingestor.process(f"se/v1/p01/gw-0001/{leaf}", sealed)
            assert outcome.kind == "rejected", outcome
        assert s.count_readings() == 0 and s.alerts() == []
