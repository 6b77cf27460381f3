"""Certificate renewal through a real Mosquitto on ``broker-config``'s files, a real hub worker
(``HubWorker`` + ``RenewalAuthority`` with the issuing CA ``ca init`` made) and the agent's
real ``SyncPart``. Every clock is pinned to the kernel's time at the start of the test (the
broker's OpenSSL reads the kernel clock; tests/fixtures/pki.py says why), so this passes with
the calendar shifted too.

1. A gateway whose certificate expires in 10 days (window 30) renews right after connecting,
   reconnects with the new certificate, and keeps syncing; once the old certificate is revoked
   and the broker restarted, only the new one gets in.
2. Through the broker, the hub refuses, counts and answers: a request for another gateway's CN,
   a CSR for another key, a replay, an expired request, and a revoked gateway. A gateway cannot
   even publish on another gateway's renewal topic.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from device_drivers.backoff import Backoff
from edge_agent.config import AgentConfig, GatewayConfig, SchedulerConfig, SyncConfig
from edge_agent.events import EventHub
from edge_agent.store import BufferStore
from edge_agent.sync.component import SyncPart
from edge_agent.sync.renewal import make_request
from hub.ingest import Ingestor
from hub.mqtt_worker import HubWorker, WorkerSettings
from hub.renewal import RenewalAuthority
from hub.store import open_store
from provisioning.ca import BrokerFiles, revoke
from provisioning.issuing import ISSUING_DIR, load_issuing
from provisioning.pki import HubKeys, load_ca_certs
from tests.edge_agent.sync.support import make_readings
from tests.fixtures import real_store
from tests.fixtures.mosquitto import ConnectFailed, MqttClient, find_mosquitto
from tests.fixtures.pki import Identity, kernel_now
from tests.hub.test_renewal import _csr, _request
from tests.provisioning.support import PROVINCE, GeneratedBroker, Province, hub_identity, make_province
from wire.renewal import decode_reply, encode_request
from wire.topics import topic

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (apt-get install mosquitto)")


def wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def await_(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def hub_worker(province: Province, files: BrokerFiles, now: datetime) -> Iterator[tuple[HubWorker, RenewalAuthority]]:
    ident = hub_identity(files)
    trusted = load_ca_certs(files.ca)  # the provincial CA and the issuing CA (broker-config's ca.pem)
    keys = HubKeys.load(province.ca_dir / "hub-keys")
    authority = RenewalAuthority(
        load_issuing(province.ca_dir / ISSUING_DIR),
        keys.signing,
        trusted,
        lambda: now,
        crl=files.crl,
        ledger=province.root / "hub" / "renewals.jsonl",
    )
    store = open_store(province.root / "hub")
    settings = WorkerSettings(
        host="127.0.0.1", port=province.port, ca=files.ca, cert=ident.cert_path, key=ident.key_path,
        client_id="hub-1", reconnect_min_s=1, reconnect_max_s=2,
    )  # fmt: skip
    worker = HubWorker(settings, Ingestor(store, keys, trusted, lambda: now), renewal=authority).start()
    try:
        assert worker.wait_subscribed(15), "the hub worker never subscribed"
        yield worker, authority
    finally:
        worker.stop()
        store.close()


def agent_config(province: Province, ident: Identity, state: Path) -> AgentConfig:
    sync = SyncConfig(
        broker=province.broker_url,
        ca=ident.cert_path.parent / "ca.pem",  # from the bundle: the provincial CA only
        cert=ident.cert_path,
        key=ident.key_path,
        hub_keys=province.ca_dir / "hub-keys" / "hub-public.json",
        batch_max=50,
        batch_max_age_s=0.0,
        renew_before_days=30,
    )
    return AgentConfig(
        version=1,
        gateway=GatewayConfig(id=ident.name, province=PROVINCE, state_dir=state),
        devices=(),
        scheduler=SchedulerConfig(status_interval_s=1.0, retention_interval_s=3600.0),
        sync=sync,
    )


def status_of(store: BufferStore, gw: str) -> Callable[[], Mapping[str, Any]]:
    def build() -> Mapping[str, Any]:
        stats = store.stats()
        return {"version": "test", "gateway_id": gw, "province": PROVINCE, "backlog": {"pending": stats.pending}}

    return build


def test_a_gateway_near_expiry_renews_through_the_hub_and_reconnects_with_the_new_certificate(
    tmp_path: Path,
) -> None:
    now = kernel_now(tmp_path)
    province = make_province(tmp_path, now)
    files = province.broker_files()
    ident = province.gateway("gw-a", days=10)
    state = tmp_path / "state"
    with (
        GeneratedBroker(files, province.port) as broker,
        hub_worker(province, files, now) as (_, authority),
        real_store(state, gateway_id="gw-a", clock=lambda: now) as store,
    ):
        asyncio.run(_renew_and_prove(province, files, broker, ident, state, store, authority, now))
    assert authority.issued_total == 1 and authority.rejected == {}


async def _renew_and_prove(
    province: Province,
    files: BrokerFiles,
    broker: GeneratedBroker,
    ident: Identity,
    state: Path,
    store: BufferStore,
    authority: RenewalAuthority,
    now: datetime,
) -> None:
    config = agent_config(province, ident, state)
    part = SyncPart(
        config, lambda: store, EventHub(), status_of(store, "gw-a"), lambda: now,
        backoff=Backoff(base=0.05, cap=0.5), final_drain_s=0.0,
    )  # fmt: skip
    assert [j.id for j in part.jobs()] == ["sync-renewal"]
    await part.start()
    try:
        assert part.renewer is not None and part.link is not None
        renewer, link = part.renewer, part.link
        await await_(lambda: renewer.state.last_result is not None, 30, "the first renewal attempt")
        assert (renewer.state.last_result, renewer.state.last_reason) == ("renewed", None)
        renewed_path = link.settings.cert
        assert renewed_path.parent == state / "certs" and renewed_path.is_file()
        await await_(lambda: link.connection >= 2 and part.state == "connected", 30, "the reconnect")
        doc = part.report()["sync"]
        assert isinstance(doc, dict)
        cert = doc["certificate"]
        assert cert["days_left"] > 80 and cert["renewal"]["last_result"] == "renewed"
        assert cert["renewal"]["renewals"] == 1
        # a second check is not due any more: nothing is sent
        await part.renew()
        assert renewer.state.attempts == 1 and authority.issued_total == 1
        # the uplink seals with the renewed certificate, and the hub accepts it
        store.submit(make_readings(1, 20, gateway_id="gw-a", at=now)).result(10)
        if part.uplink is not None:
            part.uplink.wake()
        await await_(lambda: part.synced >= 20, 30, "readings acked after the renewal")

        # revoke the old certificate: only the renewed one still gets in
        old_serial = ident.certified.cert.serial_number
        (revoked,) = revoke(province.ca_dir, "gw-a", now=now)
        assert revoked.serial == old_serial
        province.broker_files()
        before = link.connection
        broker.restart()
        await await_(lambda: link.connection > before and part.state == "connected", 30, "reconnect after restart")
        with pytest.raises(ConnectFailed):
            MqttClient(broker, ident).connect(timeout=5)  # type: ignore[arg-type]

        # the next start prefers the renewed certificate over the configured one
        from edge_agent.sync.component import load_material

        material = load_material(config.sync, "gw-a", state, now)  # type: ignore[arg-type]
        assert material.cert_path == renewed_path
    finally:
        await part.stop()


def _reply(client: MqttClient, timeout: float = 10.0) -> tuple[str, str]:
    msg = client.messages.get(timeout=timeout)
    reply = decode_reply(bytes(msg.payload), HUB_SIGNING[0])
    return reply.status, reply.reason


HUB_SIGNING: list[Any] = []


def test_the_hub_refuses_and_counts_bad_requests_through_the_broker(tmp_path: Path) -> None:
    now = kernel_now(tmp_path)
    province = make_province(tmp_path, now)
    files = province.broker_files()
    a, b = province.gateway("gw-a"), province.gateway("gw-b")
    HUB_SIGNING[:] = [HubKeys.load(province.ca_dir / "hub-keys").public().signing]
    with GeneratedBroker(files, province.port) as broker, hub_worker(province, files, now) as (_, authority):
        client = MqttClient(broker, b).connect()  # type: ignore[arg-type]
        try:
            client.subscribe(topic(PROVINCE, "gw-b", "renew/cert"))
            req_topic = topic(PROVINCE, "gw-b", "renew/req")
            other_key = ec.generate_private_key(ec.SECP256R1())

            def send(payload: bytes) -> tuple[str, str]:
                client.publish(req_topic, payload, qos=1)
                return _reply(client)

            at = {"issued_at": now, "expires_at": now + timedelta(minutes=5)}
            rb = {"gateway_id": "gw-b", "serial": b.certified.cert.serial_number, **at}
            csr_a = _csr(b.certified.key, "gw-a")
            assert send(encode_request(_request(b.certified, **rb, csr_pem=csr_a), b.certified.key)) == (
                "refused",
                "csr_cn_mismatch",
            )
            csr_other = _csr(other_key, "gw-b")
            assert send(encode_request(_request(b.certified, **rb, csr_pem=csr_other), b.certified.key)) == (
                "refused",
                "key_mismatch",
            )
            good = make_request(b.certified, "gw-b", now=now)[1]
            assert send(good)[0] == "issued"
            assert send(good) == ("refused", "replayed")
            stale = {"issued_at": now - timedelta(minutes=20), "expires_at": now - timedelta(minutes=10)}
            expired = encode_request(
                _request(b.certified, **{**rb, **stale}, csr_pem=_csr(b.certified.key, "gw-b")), b.certified.key
            )
            assert send(expired) == ("refused", "request_expired")

            # B publishing on A's renewal topic: the broker's ACL drops it, the hub never sees it
            client.publish(topic(PROVINCE, "gw-a", "renew/req"), make_request(b.certified, "gw-b", now=now)[1], qos=1)
            time.sleep(1.0)
            with pytest.raises(queue.Empty):
                client.messages.get(timeout=0.5)

            # revoked (the broker is not restarted yet, so B still connects): the hub re-reads the CRL
            revoke(province.ca_dir, "gw-b", now=now)
            province.broker_files()
            assert send(make_request(b.certified, "gw-b", now=now)[1]) == ("refused", "revoked")
        finally:
            client.disconnect()
    assert authority.rejected == {
        "csr_cn_mismatch": 1,
        "key_mismatch": 1,
        "replayed": 1,
        "request_expired": 1,
        "revoked": 1,
    }
    assert authority.issued_total == 1
    del a


def test_edge_hub_serve_with_issuing_renews_and_keeps_a_ledger(tmp_path: Path) -> None:
    """The real ``edge-hub serve --issuing --crl --renewal-ledger`` process. It reads the wall
    clock, so it runs unshifted, at the kernel's time like the broker (the calendars are covered
    by the pinned-clock tests above)."""
    import os
    import subprocess
    import sys

    from provisioning.ca import read_renewal_ledger

    root = Path(__file__).parents[2]
    env = {k: v for k, v in os.environ.items() if k != "STATION_EDGE_CLOCK_SHIFT_DAYS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    province = make_province(tmp_path, kernel_now(tmp_path))
    files = province.broker_files()
    gw = province.gateway("gw-c")  # 825 days: current under either calendar
    hub_key, hub_cert = files.hub_identities["hub-1"]
    ledger = tmp_path / "hub-state" / "renewals.jsonl"
    argv = [
        sys.executable, "-m", "hub.cli", "serve", "--store", str(tmp_path / "hub"), "--broker", province.broker_url,
        "--ca", str(files.ca), "--cert", str(hub_cert), "--key", str(hub_key),
        "--hub-keys", str(province.ca_dir / "hub-keys"), "--issuing", str(province.ca_dir / ISSUING_DIR),
        "--crl", str(files.crl), "--renewal-ledger", str(ledger), "--renew-days", "60",
    ]  # fmt: skip
    HUB_SIGNING[:] = [HubKeys.load(province.ca_dir / "hub-keys").public().signing]
    log_path = tmp_path / "hub.log"
    with GeneratedBroker(files, province.port) as broker:
        with open(log_path, "ab") as log:
            hub = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=root)
        client = MqttClient(broker, gw).connect()  # type: ignore[arg-type]
        try:
            client.subscribe(topic(PROVINCE, "gw-c", "renew/cert"))
            wait(lambda: "event=subscribed" in log_path.read_text(), 30, f"the hub worker (log: {log_path})")
            client.publish(
                topic(PROVINCE, "gw-c", "renew/req"), make_request(gw.certified, "gw-c", now=kernel_now(tmp_path))[1]
            )
            assert _reply(client, timeout=20) == ("issued", "")
            wait(lambda: ledger.exists() and ledger.read_text().strip() != "", 10, "the ledger line")
            (entry,) = read_renewal_ledger(ledger)
            assert entry.gateway_id == "gw-c" and entry.serial != gw.certified.cert.serial_number
        finally:
            client.disconnect()
            hub.terminate()
            hub.wait(timeout=30)
    assert "event=renewal_issued gateway=gw-c" in log_path.read_text()


def test_a_forged_reply_is_refused_by_the_agent(tmp_path: Path) -> None:
    """No hub worker: a client with a hub identity answers the request with a genuine-looking
    chain (really issued by the issuing CA) but signs the reply with another key. The agent
    refuses it, records why, and keeps its certificate and its connection."""
    import threading

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from provisioning.issuing import issue_renewal
    from wire.renewal import RenewalReply, decode_request, encode_reply

    now = kernel_now(tmp_path)
    province = make_province(tmp_path, now)
    files = province.broker_files()
    ident = province.gateway("gw-a", days=10)
    state = tmp_path / "state"
    issuing = load_issuing(province.ca_dir / ISSUING_DIR)
    forger = ed25519.Ed25519PrivateKey.generate()
    with GeneratedBroker(files, province.port) as broker:
        hub = MqttClient(broker, hub_identity(files)).connect()  # type: ignore[arg-type]
        hub.subscribe("se/v1/+/+/renew/req")
        answered = threading.Event()

        def forge() -> None:
            msg = hub.messages.get(timeout=30)
            req = decode_request(bytes(msg.payload))
            cert = issue_renewal(issuing, "gw-a", ident.certified.key.public_key(), now=now)
            chain = cert.public_bytes(serialization.Encoding.PEM) + issuing.cert_pem()
            reply = RenewalReply("gw-a", req.request_id, "issued", "", chain, now)
            hub.publish(topic(PROVINCE, "gw-a", "renew/cert"), encode_reply(reply, forger))
            answered.set()

        thread = threading.Thread(target=forge, daemon=True)
        thread.start()
        try:
            with real_store(state, gateway_id="gw-a", clock=lambda: now) as store:
                asyncio.run(_forged(province, ident, state, store, now, answered))
        finally:
            hub.disconnect()
            thread.join(5)


async def _forged(
    province: Province, ident: Identity, state: Path, store: BufferStore, now: datetime, answered: Any
) -> None:
    part = SyncPart(
        agent_config(province, ident, state), lambda: store, EventHub(), status_of(store, "gw-a"), lambda: now,
        backoff=Backoff(base=0.05, cap=0.5), final_drain_s=0.0,
    )  # fmt: skip
    await part.start()
    try:
        assert part.renewer is not None and part.link is not None
        renewer, link = part.renewer, part.link
        await await_(lambda: renewer.state.last_result is not None, 30, "the renewal attempt")
        assert answered.is_set()
        assert (renewer.state.last_result, renewer.state.last_reason) == ("failed", "bad_signature")
        assert link.settings.cert == ident.cert_path and link.connection == 1 and part.state == "connected"
        assert not list((state / "certs").glob("*.pem"))
        doc = part.report()["sync"]
        assert isinstance(doc, dict) and doc["certificate"]["renewal"]["last_reason"] == "bad_signature"
    finally:
        await part.stop()
