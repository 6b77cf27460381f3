"""provisioning.broker: the generated Mosquitto ACL and config (their behaviour on a real broker is
proven in tests/test_fixtures_mosquitto.py; certificate revocation here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.broker import acl_text, mosquitto_conf
from provisioning.pki import revocation_list
from tests.fixtures.mosquitto import ConnectFailed, MosquittoBroker, MqttClient
from tests.fixtures.pki import Pki


def test_acl_text() -> None:
    text = acl_text(["hub-1", "hub-2", "hub-1"])
    lines = text.splitlines()
    for leaf in ("up", "alert", "status", "cmd/result"):
        assert f"pattern write se/v1/+/%u/{leaf}" in lines
    for leaf in ("ack", "cmd"):
        assert f"pattern read se/v1/+/%u/{leaf}" in lines
    assert lines.count("user hub-1") == 1 and "user hub-2" in lines
    assert lines.count("topic readwrite se/v1/#") == 2
    assert not any(line.startswith("topic") and "%u" in line for line in lines)
    with pytest.raises(ValueError):
        acl_text(["hub 1"])
    with pytest.raises(ValueError):
        acl_text(["hub/#"])


def test_mosquitto_conf(tmp_path: Path) -> None:
    conf = mosquitto_conf(
        port=8883,
        cafile=tmp_path / "ca.pem",
        certfile=tmp_path / "c.pem",
        keyfile=tmp_path / "k.pem",
        aclfile=tmp_path / "acl",
        persistence_dir=tmp_path / "data",
        crlfile=tmp_path / "crl.pem",
    )
    lines = conf.splitlines()
    for expected in (
        "listener 8883 127.0.0.1",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "tls_version tlsv1.2",
        "allow_anonymous false",
        "persistence true",
        f"persistence_location {tmp_path / 'data'}/",
        f"crlfile {tmp_path / 'crl.pem'}",
        f"acl_file {tmp_path / 'acl'}",
        "log_dest stderr",
        # a hub worker behind 1,000 gateways must not have its deliveries dropped at Mosquitto's 1,000
        "max_queued_messages 100000",
    ):
        assert expected in lines, expected
    assert not any(line.startswith("user ") for line in lines)
    bare = mosquitto_conf(
        port=1,
        cafile=Path("a"),
        certfile=Path("b"),
        keyfile=Path("c"),
        aclfile=Path("d"),
        persistence_dir=None,
        bind="0.0.0.0",
        run_as_user="mosquitto",
    )
    assert "persistence false" in bare and "crlfile" not in bare and "listener 1 0.0.0.0" in bare
    assert "user mosquitto" in bare.splitlines()
    with pytest.raises(ValueError):
        mosquitto_conf(
            port=0, cafile=Path("a"), certfile=Path("b"), keyfile=Path("c"), aclfile=Path("d"), persistence_dir=None
        )


def test_revoked_gateway_cannot_connect(tmp_path: Path, pki: Pki) -> None:
    revoked, fine = pki.gateway("gw-0002"), pki.gateway("gw-0001")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(revocation_list(pki.ca, [revoked.cert.serial_number], now=pki.now))
    with MosquittoBroker(tmp_path / "broker", pki, crlfile=crl) as broker:
        MqttClient(broker, fine).connect().disconnect()
        with pytest.raises(ConnectFailed):
            MqttClient(broker, revoked).connect()
