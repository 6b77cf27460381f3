"""The broker ``edge-provision broker-config`` configures, on a real Mosquitto, with certificates
from ``enroll`` + ``sign``: each gateway stays inside its own topics, the hub reads them all, and
a certificate from another CA, an expired one and a revoked one are refused (also as seen by
``edge-provision check``'s TLS probe)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from provisioning.ca import revoke
from provisioning.check import tls_probe
from tests.fixtures.mosquitto import ConnectFailed, MqttClient, find_mosquitto
from tests.fixtures.pki import Identity, kernel_now
from tests.provisioning.support import GeneratedBroker, Province, hub_identity, make_province

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (apt-get install mosquitto)")

UP_A, UP_B = "se/v1/p01/gw-a/up", "se/v1/p01/gw-b/up"


class World:
    def __init__(self, root: Path) -> None:
        self.province: Province = make_province(root, kernel_now(root))
        self.a: Identity = self.province.gateway("gw-a")
        self.b: Identity = self.province.gateway("gw-b")
        self.revoked: Identity = self.province.gateway("gw-r")
        revoke(self.province.ca_dir, "gw-r", now=self.province.now)
        self.expired: Identity = self.province.gateway("gw-x", now=self.province.now - timedelta(days=30), days=1)
        other = make_province(root / "other", self.province.now)
        self.foreign: Identity = other.gateway("gw-a")
        self.files = self.province.broker_files()
        self.hub = hub_identity(self.files)
        self.broker = GeneratedBroker(self.files, self.province.port)

    def client(self, who: Identity) -> MqttClient:
        return MqttClient(self.broker, who, ca_path=self.files.ca)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("province"))
    with w.broker:
        yield w


def test_broker_config_output(world: World) -> None:
    conf = world.files.conf.read_text().splitlines()
    for line in ("require_certificate true", "use_identity_as_username true", "allow_anonymous false"):
        assert line in conf
    assert f"crlfile {world.files.crl}" in conf and f"acl_file {world.files.acl}" in conf
    assert "user hub-1" in world.files.acl.read_text().splitlines()


def test_gateway_connects_and_the_hub_reads_every_gateway(world: World) -> None:
    with world.client(world.hub) as hub, world.client(world.a) as a, world.client(world.b) as b:
        assert all(rc.value < 0x80 for rc in hub.subscribe("se/v1/#"))
        a.publish(UP_A, b"from a")
        b.publish(UP_B, b"from b")
        a.publish("se/v1/p01/gw-a/status", b"a online", retain=False)
        got = {(m.topic, m.payload) for m in hub.received_within(0.6)}
        assert got == {(UP_A, b"from a"), (UP_B, b"from b"), ("se/v1/p01/gw-a/status", b"a online")}


def test_gateway_cannot_publish_under_another_gateway(world: World) -> None:
    with world.client(world.hub) as hub, world.client(world.a) as a, world.client(world.b) as b:
        hub.subscribe("se/v1/+/gw-b/#")
        b.subscribe("se/v1/p01/gw-b/ack")
        b.subscribe("se/v1/p01/gw-b/cmd")
        for leaf in ("up", "alert", "status", "ack", "cmd"):
            a.publish(f"se/v1/p01/gw-b/{leaf}", b"forged by a")
        a.publish("se/v1/other-province/gw-b/up", b"forged by a")
        assert hub.received_within(0.5) == []
        assert b.received_within(0.1) == []
        b.publish(UP_B, b"real b")  # the same subscriptions do see gw-b's own messages
        assert [m.payload for m in hub.received_within(0.5)] == [b"real b"]


def test_gateway_cannot_read_another_gateways_topics(world: World) -> None:
    with world.client(world.hub) as hub, world.client(world.a) as a, world.client(world.b) as b:
        for pattern in ("se/v1/p01/gw-b/ack", "se/v1/p01/gw-b/cmd", "se/v1/+/+/up", "se/v1/#"):
            a.subscribe(pattern)  # Mosquitto grants it and filters at delivery by the read ACL
        b.subscribe("se/v1/p01/gw-b/ack")
        hub.publish("se/v1/p01/gw-b/ack", b"ack for b")
        b.publish(UP_B, b"b data")
        assert [m.payload for m in b.received_within(0.5)] == [b"ack for b"]
        assert a.received_within(0.2) == []


@pytest.mark.parametrize("who", ["foreign", "expired", "revoked"])
def test_bad_certificates_are_refused(world: World, who: str) -> None:
    with pytest.raises(ConnectFailed):
        world.client(getattr(world, who)).connect(timeout=3)


def test_check_tls_probe_names_the_reason(world: World) -> None:
    def probe(who: Identity) -> tuple[bool, str]:
        r = tls_probe("127.0.0.1", world.province.port, ca=world.files.ca, cert=who.cert_path, key=who.key_path)
        return r.ok, r.reason

    assert probe(world.a) == (True, "")
    assert probe(world.revoked) == (False, "revoked")
    assert probe(world.expired) == (False, "expired")
    assert probe(world.foreign) == (False, "unknown_ca")
    # the probe sent no CONNECT: gw-a's own session was not taken over
    with world.client(world.a) as a:
        probe(world.a)
        assert not a.wait_gone(0.3)
    closed = tls_probe("127.0.0.1", 1, ca=world.files.ca, cert=world.a.cert_path, key=world.a.key_path, timeout=1)
    assert (closed.ok, closed.reason) == (False, "unreachable")


@pytest.mark.xfail(
    strict=True,
    reason="Mosquitto's ACL file never checks subscriptions, $share included: a gateway that joins the hub's "
    "share group takes a share of other gateways' batches (sealed, so unreadable; re-sent after the ack "
    "timeout). Same limit as tests/test_fixtures_mosquitto.py::test_gateway_cannot_join_the_hub_share_group",
)
def test_gateway_cannot_join_the_hub_share_group(world: World) -> None:
    with world.client(world.hub) as hub, world.client(world.a) as intruder, world.client(world.b) as b:
        hub.subscribe("$share/hub/se/v1/+/+/up")
        intruder.subscribe("$share/hub/se/v1/+/+/up")
        for i in range(10):
            b.publish(UP_B, b"%d" % i)
        assert len(hub.received_within(0.5)) == 10
