"""``rotate-keys`` end to end: a real Mosquitto on ``broker-config``'s files (TLS + ACL), a real hub
worker (ingest, the command ledger in SQLite, results, ``RenewalAuthority`` with the issuing CA
and ``commands=store.command``), and a real agent (config file, state dir, buffer, sync, remote).

1. rotate-keys (identity + data): applied with the new serial and data key id; the agent
   reconnects with a certificate for a new key kept 0600 in its state dir; readings sealed
   after it are signed by the new key and ingested; the data key really changed in the buffer.
2. A rotate-keys command the hub already shows as answered cannot rotate: the hub refuses
   ``key_mismatch``, the result is ``failed``, the old key stays, no new key file is left.
3. After a restart (with the configured key file gone) the agent picks the rotated pair, and
   rotates once more through a renewer of its own (``renew_before_days = 0``); ``edge-provision
   check`` sees the same pair.

Every clock is the kernel's (the broker's OpenSSL reads it; tests/fixtures/pki.py says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.provision_cli import AgentGateway
from hub.commands import ResultRecorder, issue
from hub.ingest import Ingestor
from hub.mqtt_worker import HubWorker, WorkerSettings
from hub.renewal import RenewalAuthority
from hub.store import HubStore, open_store
from provisioning.ca import BrokerFiles
from provisioning.issuing import ISSUING_DIR, load_issuing
from provisioning.pki import HubKeys, load_ca_certs
from tests.edge_agent.remote.support import wait_until
from tests.edge_agent.sync.support import make_readings
from tests.fixtures.mosquitto import MqttClient, find_mosquitto
from tests.fixtures.pki import Identity, kernel_now
from tests.provisioning.support import PROVINCE, GeneratedBroker, Province, hub_identity, make_province
from wire.envelope import open_envelope

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (apt-get install mosquitto)")

GW = "gw-r1"


def kernel_clock(tmp: Path) -> Callable[[], datetime]:
    base, t0 = kernel_now(tmp), time.monotonic()
    return lambda: base + timedelta(seconds=time.monotonic() - t0)


def write_config(tmp: Path, province: Province, ident: Identity, *, renew_before_days: int) -> Path:
    path = tmp / "etc" / "agent.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""version = 1
[gateway]
id = "{GW}"
province = "{PROVINCE}"
state_dir = "{tmp / "state"}"
[scheduler]
status_interval_s = 1.0
[sync]
broker = "{province.broker_url}"
ca = "{ident.cert_path.parent / "ca.pem"}"
cert = "{ident.cert_path}"
key = "{ident.key_path}"
hub_keys = "{province.ca_dir / "hub-keys" / "hub-public.json"}"
heartbeat_s = 60.0
batch_max_age_s = 0.1
renew_before_days = {renew_before_days}
"""
    )
    return path


@contextmanager
def running(config: Path, clock: Callable[[], datetime]) -> Iterator[Agent]:
    agent = Agent(load_config(config), clock=clock, final_sync_s=0.0)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    done: list[BaseException | None] = []

    def run() -> None:
        try:
            loop.run_until_complete(agent.run(stop))
            done.append(None)
        except BaseException as exc:
            done.append(exc)

    thread = threading.Thread(target=run, name="agent", daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: (agent.sync is not None and agent.sync.state == "connected") or bool(done))
        assert not done, done
        yield agent
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
    assert done == [None], done


class Hub:
    def __init__(self, tmp: Path, province: Province, files: BrokerFiles, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.keys = HubKeys.load(province.ca_dir / "hub-keys")
        self.trusted = load_ca_certs(files.ca)  # the provincial CA and the issuing CA
        self.store: HubStore = open_store(tmp / "hub")
        self.ledger = tmp / "hub" / "renewals.jsonl"
        self.authority = RenewalAuthority(
            load_issuing(province.ca_dir / ISSUING_DIR),
            self.keys.signing,
            self.trusted,
            clock,
            crl=files.crl,
            ledger=self.ledger,
            commands=self.store.command,
        )
        ident = hub_identity(files)
        settings = WorkerSettings(
            host="127.0.0.1", port=province.port, ca=files.ca, cert=ident.cert_path, key=ident.key_path,
            client_id="hub-1", reconnect_min_s=1, reconnect_max_s=2,
        )  # fmt: skip
        results = ResultRecorder(self.store, hub_sealing_private=self.keys.sealing, ca_certs=self.trusted, clock=clock)
        self.worker = HubWorker(
            settings, Ingestor(self.store, self.keys, self.trusted, clock), renewal=self.authority, results=results
        ).start()
        assert self.worker.wait_subscribed(15), "the hub worker never subscribed"

    def send(self, ops: MqttClient, args: dict[str, object], *, answered: bool = False) -> str:
        issued = issue(
            self.store,
            self.keys.signing,
            gateway_id=GW,
            province=PROVINCE,
            kind="rotate-keys",
            args=args,
            now=self.clock(),
            expires_in_s=300.0,
        )
        if answered:  # the ledger already shows a result for it (e.g. an earlier delivery)
            assert self.store.record_command_result(
                cmd_id=issued.record.cmd_id, gateway_id=GW, state="applied", detail="", data={}, result_at=self.clock()
            )
        ops.publish(issued.topic, issued.payload)
        return issued.record.cmd_id

    def result(self, cmd_id: str, timeout: float = 20.0) -> tuple[str, dict[str, object]]:
        assert wait_until(lambda: (r := self.store.command(cmd_id)) is not None and r.state != "sent", timeout)
        record = self.store.command(cmd_id)
        assert record is not None
        return record.state, self.store.command_data(cmd_id) or {}

    def close(self) -> None:
        self.worker.stop()
        self.store.close()


def envelope_cert(payload: bytes) -> x509.Certificate:
    """The certificate inside an uplink envelope (wire.envelope's byte layout)."""
    header_len, cert_len = struct.unpack(">HH", payload[3:7])
    return x509.load_pem_x509_certificate(payload[11 + header_len : 11 + header_len + cert_len])


def sync_readings(agent: Agent, hub: Hub, snoop: MqttClient, start: int, clock: Callable[[], datetime]) -> bytes:
    """Buffer 10 readings, wait until the hub stored them; the envelope that carried them."""
    while not snoop.messages.empty():
        snoop.messages.get_nowait()
    before = hub.store.count_readings(GW)
    agent.store.submit(make_readings(start, 10, gateway_id=GW, at=clock())).result(10)
    assert agent.sync is not None and agent.sync.uplink is not None
    agent.sync.uplink.wake()
    assert wait_until(lambda: hub.store.count_readings(GW) >= before + 10), "readings not ingested"
    return bytes(snoop.expect(5).payload)


def test_rotate_keys_end_to_end(tmp_path: Path) -> None:
    clock = kernel_clock(tmp_path)
    province = make_province(tmp_path, clock())
    files = province.broker_files(hub_users=("hub-1", "hub-2"))
    ident = province.gateway(GW)
    state = tmp_path / "state"
    config = write_config(tmp_path, province, ident, renew_before_days=30)
    with GeneratedBroker(files, province.port) as broker:
        hub = Hub(tmp_path, province, files, clock)
        ops = MqttClient(broker, hub_identity(files, "hub-2")).connect()  # type: ignore[arg-type]
        ops.subscribe(f"se/v1/{PROVINCE}/{GW}/up")
        try:
            with running(config, clock) as agent:
                assert agent.sync is not None and agent.sync.link is not None
                link = agent.sync.link
                assert link.settings.key == ident.key_path
                sync_readings(agent, hub, ops, 1, clock)

                # 1. both keys: applied, reconnected with the new pair
                first = link.connection
                cmd_id = hub.send(ops, {})
                result, data = hub.result(cmd_id)
                assert result == "applied" and set(data) == {"serial", "old_serial", "data_key_id"}
                assert data["old_serial"] == format(ident.certified.cert.serial_number, "x")
                new_serial = int(str(data["serial"]), 16)
                assert wait_until(lambda: link.connection > first and agent.sync.state == "connected")  # type: ignore[union-attr]
                key_path, cert_path = link.settings.key, link.settings.cert
                assert key_path == state / "keys" / f"gateway-{new_serial:x}.key.pem"
                assert cert_path == state / "certs" / f"gateway-{new_serial:x}.cert.pem"
                assert (
                    oct(key_path.stat().st_mode & 0o777) == "0o600"
                    and not (state / "keys" / "pending.key.pem").exists()
                )
                leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
                assert leaf.serial_number == new_serial and leaf.public_key() != ident.certified.cert.public_key()
                # readings after the rotation: sealed and signed with the new key, ingested
                envelope = sync_readings(agent, hub, ops, 11, clock)
                assert envelope_cert(envelope).serial_number == new_serial
                open_envelope(envelope, hub_sealing_private=hub.keys.sealing, ca_certs=hub.trusted, now=clock())
                # the data key: a new current key in the buffer's own table
                with contextlib.closing(sqlite3.connect(f"file:{agent.config.db_path}?mode=ro", uri=True)) as db:
                    (current,) = db.execute("SELECT max(key_id) FROM data_keys").fetchone()
                assert data["data_key_id"] == current and current >= 2
                assert hub.authority.rotated_total == 1

                # 2. a rotate-keys command the ledger shows as answered: refused, nothing changes
                used = hub.send(ops, {"data": False}, answered=True)
                assert agent.remote is not None
                remote = agent.remote
                assert wait_until(lambda: remote.state.last_cmd_id == used)
                assert remote.state.last_state == "failed"
                assert hub.authority.rejected.get("key_mismatch") == 1
                assert link.settings.key == key_path and sorted((state / "keys").iterdir()) == [key_path]
                renewal = agent.status()["sync"]["certificate"]["renewal"]  # type: ignore[index]
                assert renewal["last_reason"] == "refused_key_mismatch"

            # 3. restart without the configured key: the rotated pair is used; rotate once more
            ident.key_path.rename(ident.key_path.with_suffix(".gone"))
            config = write_config(tmp_path, province, ident, renew_before_days=0)
            with running(config, clock) as agent:
                assert agent.sync is not None and agent.sync.link is not None
                link = agent.sync.link
                assert (link.settings.key, link.settings.cert) == (key_path, cert_path)
                sync_readings(agent, hub, ops, 21, clock)
                again = hub.send(ops, {"data": False})
                state_, data = hub.result(again)
                assert state_ == "applied" and data["old_serial"] == format(new_serial, "x")
                assert "data_key_id" not in data
                assert wait_until(lambda: link.settings.key != key_path and agent.sync.state == "connected")  # type: ignore[union-attr]
                third = int(str(data["serial"]), 16)
                envelope = sync_readings(agent, hub, ops, 31, clock)
                assert envelope_cert(envelope).serial_number == third
                last_pair = (link.settings.key, link.settings.cert)
            # edge-provision check looks at the pair the agent uses, not the configured one
            files = AgentGateway(clock).load_config(config).sync
            assert files is not None and (files.key, files.cert) == last_pair
            ledger = [json.loads(line) for line in hub.ledger.read_text().splitlines()]
            superseded = {int(x["serial"], 16) for x in ledger if x.get("superseded_by")}
            assert superseded == {ident.certified.cert.serial_number, new_serial}
        finally:
            ops.disconnect()
            hub.close()
