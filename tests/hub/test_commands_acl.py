"""The broker ACL that provisioning generates (``broker-config``), on a real Mosquitto, for the
command topics: a gateway reads only its own ``cmd``, publishes only its own ``cmd/result``, and
never publishes on any ``cmd`` (only hub users do)."""

from __future__ import annotations

from tests.fixtures.mosquitto import MosquittoBroker, MqttClient
from tests.fixtures.pki import Pki

A_CMD, B_CMD = "se/v1/p1/gw-a/cmd", "se/v1/p1/gw-b/cmd"


def test_command_topics_acl(broker: MosquittoBroker, pki: Pki) -> None:
    with (
        MqttClient(broker, pki.hub("hub-1")) as hub,
        MqttClient(broker, pki.gateway("gw-a")) as a,
        MqttClient(broker, pki.gateway("gw-b")) as b,
    ):
        hub.subscribe("se/v1/+/+/cmd/result")
        hub.subscribe("se/v1/+/+/cmd")
        a.subscribe(A_CMD)
        a.subscribe(B_CMD)  # granted, then filtered at delivery by the read ACL
        b.subscribe(B_CMD)
        a.publish("se/v1/p1/gw-b/cmd/result", b"forged result for b")
        a.publish(A_CMD, b"a commanding itself")
        a.publish(B_CMD, b"a commanding b")
        assert hub.received_within(0.5) == []
        assert b.received_within(0.1) == [] and a.received_within(0.1) == []
        hub.publish(B_CMD, b"for b")
        assert [m.payload for m in b.received_within(0.5)] == [b"for b"]
        assert a.received_within(0.2) == []
        a.publish("se/v1/p1/gw-a/cmd/result", b"a's own result")
        got = [(m.topic, m.payload) for m in hub.received_within(0.5)]
        assert got == [(B_CMD, b"for b"), ("se/v1/p1/gw-a/cmd/result", b"a's own result")]
