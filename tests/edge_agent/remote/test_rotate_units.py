"""rotate-keys on the gateway, piece by piece: the buffer's on-demand data key, the rotated key
files and the (key, certificate) pair chosen at start, and a rotation that gets no answer (a
real broker with no hub behind it) or cannot start."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from device_drivers.backoff import Backoff
from edge_agent.config import AgentConfig, GatewayConfig, SchedulerConfig, SyncConfig
from edge_agent.events import EventHub
from edge_agent.remote.rotate import Rotator
from edge_agent.store import BufferStore
from edge_agent.sync.component import SyncPart
from edge_agent.sync.renewal import CertStore, KeyStore, best_identity
from provisioning.issuing import issue_renewal
from tests.edge_agent.sync.support import make_readings
from tests.fixtures import real_store
from tests.fixtures.mosquitto import MosquittoBroker, find_mosquitto
from tests.fixtures.pki import Pki, kernel_now
from tests.provisioning.renewal_support import NOW, make_renewal_province
from wire.commands import Command

GW = "gw-0001"


def test_the_data_key_rotates_on_demand_and_old_rows_stay_readable(tmp_path: Path) -> None:
    with real_store(tmp_path, gateway_id=GW, clock=lambda: NOW) as store:
        store.submit(make_readings(1, 5, gateway_id=GW, at=NOW)).result(10)
        first = store.rotate_data_key()
        second = store.rotate_data_key()  # not by age: every call starts a new key
        assert second == first + 1 and first >= 2
        store.submit(make_readings(6, 5, gateway_id=GW, at=NOW)).result(10)
        store.flush()
        assert sorted(r.seq for r in store.pending_batch(20)) == list(range(1, 11))  # all decrypt
        with sqlite3.connect(f"file:{tmp_path / 'buffer.sqlite3'}?mode=ro", uri=True) as db:
            used = dict(db.execute("SELECT seq, key_id FROM readings").fetchall())
            known = {k for (k,) in db.execute("SELECT key_id FROM data_keys")}
    assert {used[s] for s in range(6, 11)} == {second} and {used[s] for s in range(1, 6)} == {first - 1}
    assert {first - 1, first, second} <= known
    with real_store(tmp_path, gateway_id=GW, clock=lambda: NOW) as store:  # reopens with the new key
        assert sorted(r.seq for r in store.pending_batch(20)) == list(range(1, 11))


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_the_newest_valid_pair_is_chosen_at_start(tmp_path: Path) -> None:
    province = make_renewal_province(tmp_path)
    _, key_path, cert_path = province.gateway("gw-a", days=400)
    ca, state = province.ca_file(), tmp_path / "state"

    def pick(at: datetime = NOW) -> tuple[Path, Path]:
        return best_identity(cert_path, key_path, ca, state, "gw-a", at)

    assert pick() == (key_path, cert_path)  # nothing rotated
    keys, certs = KeyStore(state), CertStore(state)
    new = ec.generate_private_key(ec.SECP256R1())
    pending = keys.write_pending(new)
    assert oct(pending.stat().st_mode & 0o777) == "0o600" and oct(keys.directory.stat().st_mode & 0o777) == "0o700"
    assert pick() == (key_path, cert_path)  # a pending key is never used
    cert = issue_renewal(province.issuing, "gw-a", new.public_key(), now=NOW)  # 90 days: less than the old one
    new_cert = certs.write([cert, province.issuing.cert])
    new_key = keys.commit(new, cert.serial_number, certs)
    assert not pending.exists() and oct(new_key.stat().st_mode & 0o777) == "0o600"
    assert pick() == (new_key, new_cert)  # issued last (here: a tie, rotated) wins, not longest-lived
    # junk and a stray key without a certificate change nothing
    (keys.directory / "gateway-junk.key.pem").write_bytes(b"not a key")
    (keys.directory / "gateway-ffff.key.pem").write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    assert pick() == (new_key, new_cert)
    # the configured key may be gone: the rotated pair is all that is needed
    key_path.rename(key_path.with_suffix(".gone"))
    assert pick() == (new_key, new_cert)
    key_path.with_suffix(".gone").rename(key_path)
    # once the rotated certificate has expired the configured pair is the one still valid
    assert pick(NOW + timedelta(days=200)) == (key_path, cert_path)
    # a second rotation prunes keys whose certificate is gone (the stray ones), keeps the others
    newer = ec.generate_private_key(ec.SECP256R1())
    cert2 = issue_renewal(province.issuing, "gw-a", newer.public_key(), now=NOW + timedelta(seconds=5))
    certs.write([cert2, province.issuing.cert])
    newer_key = keys.commit(newer, cert2.serial_number, certs)
    assert sorted(p.name for p in keys.directory.iterdir()) == sorted([new_key.name, newer_key.name])
    assert pick(NOW + timedelta(seconds=10))[0] == newer_key


def _config(pki: Pki, broker: MosquittoBroker, state: Path, renew_before_days: int = 30) -> AgentConfig:
    gw = pki.gateway(GW)
    sync = SyncConfig(
        broker=broker.url,
        ca=pki.ca_path,
        cert=gw.cert_path,
        key=gw.key_path,
        hub_keys=pki.hub_public_path,
        batch_max_age_s=0.0,
        renew_before_days=renew_before_days,
    )
    return AgentConfig(
        version=1,
        gateway=GatewayConfig(id=GW, province="p1", state_dir=state),
        devices=(),
        scheduler=SchedulerConfig(status_interval_s=1.0, retention_interval_s=3600.0),
        sync=sync,
    )


def _rotate_keys(**args: bool) -> Command:
    return Command("c-1", GW, 1, NOW, NOW + timedelta(hours=1), "rotate-keys", {"identity": True, "data": True, **args})


def test_a_rotation_that_cannot_start_says_why(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki", now=datetime.now(UTC))
    sync = SyncConfig(
        broker="mqtts://127.0.0.1:1",
        ca=pki.ca_path,
        cert=pki.gateway(GW).cert_path,
        key=pki.gateway(GW).key_path,
        hub_keys=pki.hub_public_path,
        renew_before_days=0,
    )
    cfg = AgentConfig(
        version=1,
        gateway=GatewayConfig(id=GW, province="p1", state_dir=tmp_path / "state"),
        devices=(),
        scheduler=SchedulerConfig(),
        sync=sync,
    )
    part = SyncPart(cfg, lambda: None, EventHub(), lambda: {}, lambda: NOW)  # type: ignore[arg-type,return-value]
    rotator = Rotator(part, store=None)
    assert [name for name, _ in part._handlers] == ["se/v1/p1/gw-0001/renew/cert"]  # renewal off: ours
    state, detail, data, restart = asyncio.run(rotator.apply(_rotate_keys()))
    assert (state, detail, data, restart) == ("failed", "data: no_buffer; identity: sync_not_ready", {}, False)


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")
def test_no_reply_leaves_the_old_key_in_use_and_no_new_key_behind(tmp_path: Path) -> None:
    now = kernel_now(tmp_path)
    pki = Pki(tmp_path / "pki", now=now)
    state = tmp_path / "state"
    with (
        MosquittoBroker(tmp_path / "broker", pki) as broker,
        real_store(state, gateway_id=GW, clock=lambda: now) as store,
    ):
        asyncio.run(_no_reply(_config(pki, broker, state), store, state, now))


async def _no_reply(config: AgentConfig, store: BufferStore, state: Path, now: datetime) -> None:
    part = SyncPart(
        config, lambda: store, EventHub(), lambda: {"version": "test", "gateway_id": GW}, lambda: now,
        backoff=Backoff(base=0.05, cap=0.5), final_drain_s=0.0,
    )  # fmt: skip
    rotator = Rotator(part, store=lambda: store)
    assert part._handlers == []  # the sync's renewer takes the replies
    await part.start()
    try:
        assert part.link is not None and part.renewer is not None
        await asyncio.wait_for(part.link.wait_connected(), 15)
        part.renewer.reply_timeout_s = 0.3  # no hub listens on renew/req here
        key_before = part.link.settings.key
        state_, detail, data, _ = await rotator.apply(_rotate_keys())
        assert (state_, detail) == ("failed", "identity: no_reply")
        assert set(data) == {"data_key_id"}  # the data key did rotate
        assert part.link.settings.key == key_before and part.link.connection == 1
        assert not (state / "keys").exists() or list((state / "keys").iterdir()) == []
        assert part.renewer.state.last_reason == "no_reply"
    finally:
        await part.stop()
