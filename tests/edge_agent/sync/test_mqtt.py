"""The paho adapter (edge_agent.sync.mqtt) on a real Mosquitto with TLS and the ACL: PUBACKs as
awaitables, refusals as exceptions, connection state as events, reconnect with full-jitter
backoff, the receive queue's bound, the last will."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from device_drivers.backoff import Backoff
from edge_agent.sync import mqtt as adapter
from edge_agent.sync.mqtt import (
    AuthRefused,
    LinkEvent,
    LinkSettings,
    LinkState,
    MqttLink,
    NotConnected,
    Will,
    tls_refusal,
)
from tests.edge_agent.sync.support import GW, async_wait_until, child_env
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient
from tests.fixtures.pki import Identity, Pki
from wire.messages import OFFLINE_WILL, decode_heartbeat

ACK = f"se/v1/p1/{GW}/ack"
STATUS = f"se/v1/p1/{GW}/status"


def settings(pki: Pki, broker: MosquittoBroker, identity: Identity | None = None, **kw: object) -> LinkSettings:
    ident = identity or pki.gateway(GW)
    values: dict[str, object] = {"subscriptions": (ACK,), "connect_timeout_s": 5.0}
    values.update(kw)
    return LinkSettings(
        host="127.0.0.1",
        port=broker.port,
        client_id=GW,
        ca=pki.ca_path,
        cert=ident.cert_path,
        key=ident.key_path,
        **values,  # type: ignore[arg-type]
    )


def fast() -> Backoff:
    return Backoff(base=0.05, cap=0.3)


def test_publish_resolves_on_puback_and_messages_arrive(pki: Pki, broker: MosquittoBroker) -> None:
    async def main() -> None:
        events: list[LinkEvent] = []
        link = MqttLink(settings(pki, broker), backoff=fast())
        link.add_listener(events.append)
        with pytest.raises(NotConnected):
            await link.publish(f"se/v1/p1/{GW}/up", b"too early")
        await link.start()
        assert await asyncio.wait_for(link.wait_connected(), 10) == 1
        with MqttClient(broker, pki.hub("hub-1")) as hub:
            hub.subscribe(f"se/v1/p1/{GW}/up")
            await link.publish(f"se/v1/p1/{GW}/up", b"batch", qos=1)
            assert hub.expect().payload == b"batch"
            hub.publish(ACK, b"an ack")
            message = await asyncio.wait_for(anext(link.messages()), 5)
            assert (message.topic, message.payload, message.qos) == (ACK, b"an ack", 1)
        await link.stop()
        assert [e.state for e in events] == [LinkState.CONNECTING, LinkState.CONNECTED, LinkState.STOPPED]
        assert link.counters.published == 1 and link.counters.received == 1

    asyncio.run(main())


def test_a_publish_the_acl_refuses_raises_auth_refused(pki: Pki, broker: MosquittoBroker) -> None:
    async def main() -> None:
        link = MqttLink(settings(pki, broker), backoff=fast())
        await link.start()
        await asyncio.wait_for(link.wait_connected(), 10)
        with pytest.raises(AuthRefused) as info:
            await link.publish("se/v1/p1/gw-0002/up", b"as another gateway")
        assert info.value.reason == "not_authorized"
        assert link.connected  # the connection itself is fine
        await link.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda pki: pki.expired_gateway(GW), "certificate_expired"),
        (lambda pki: pki.foreign_gateway(GW), "certificate_unknown_ca"),
    ],
    ids=["expired", "foreign-ca"],
)
def test_a_refused_certificate_is_auth_refused_and_retried(pki: Pki, broker: MosquittoBroker, make, reason) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        events: list[LinkEvent] = []
        link = MqttLink(settings(pki, broker, make(pki)), backoff=fast())
        link.add_listener(events.append)
        await link.start()
        assert await async_wait_until(lambda: sum(e.state is LinkState.AUTH_REFUSED for e in events) >= 2, 10)
        assert link.state in (LinkState.AUTH_REFUSED, LinkState.CONNECTING)
        assert link.last_error is not None and link.last_error.reason == reason
        assert all(e.retry_in_s is not None and 0 <= e.retry_in_s <= 0.3 for e in events if e.error)
        await link.stop()

    asyncio.run(main())


def test_missing_tls_files_are_auth_refused(tmp_path: Path, pki: Pki, broker: MosquittoBroker) -> None:
    async def main() -> None:
        s = settings(pki, broker)
        link = MqttLink(LinkSettings(**_replace(s, tmp_path)), backoff=fast())  # type: ignore[arg-type]
        await link.start()
        assert await async_wait_until(lambda: link.state is LinkState.AUTH_REFUSED, 10)
        assert link.last_error is not None and link.last_error.reason == "tls_files"
        await link.stop()

    asyncio.run(main())


def _replace(s: LinkSettings, tmp_path: Path) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(s, f.name) for f in dataclasses.fields(s)} | {"cert": tmp_path / "missing.pem"}


def test_reconnects_after_the_broker_returns_with_the_session_kept(pki: Pki, broker: MosquittoBroker) -> None:
    async def main() -> None:
        events: list[LinkEvent] = []
        link = MqttLink(settings(pki, broker), backoff=fast())
        link.add_listener(events.append)
        await link.start()
        await asyncio.wait_for(link.wait_connected(), 10)
        broker.stop()
        assert await async_wait_until(lambda: link.state is not LinkState.CONNECTED, 10)
        with pytest.raises(NotConnected):
            await link.publish(f"se/v1/p1/{GW}/up", b"while down")
        await asyncio.sleep(0.5)
        broker.start()
        assert await asyncio.wait_for(link.wait_connected(), 15) == 2
        connected = [e for e in events if e.state is LinkState.CONNECTED]
        assert connected[-1].session_present  # clean start off + session expiry: the broker kept it
        # an ack published while the gateway is away is queued for it by the broker
        await link.stop()
        with MqttClient(broker, pki.hub("hub-1")) as hub:
            hub.publish(ACK, b"queued while away")
        again = MqttLink(settings(pki, broker), backoff=fast())
        await again.start()
        message = await asyncio.wait_for(anext(again.messages()), 10)
        assert message.payload == b"queued while away"
        await again.stop()

    asyncio.run(main())


def test_the_receive_queue_is_bounded_and_counts_what_it_drops(pki: Pki, broker: MosquittoBroker) -> None:
    async def main() -> None:
        link = MqttLink(settings(pki, broker), backoff=fast(), queue_size=3)
        await link.start()
        await asyncio.wait_for(link.wait_connected(), 10)
        with MqttClient(broker, pki.hub("hub-1")) as hub:
            for i in range(8):
                hub.publish(ACK, b"%d" % i)
        assert await async_wait_until(lambda: link.counters.received == 8, 10)
        assert link.counters.dropped_messages == 5
        got = [(await anext(link.messages())).payload for _ in range(3)]
        assert got == [b"0", b"1", b"2"]
        await link.stop()

    asyncio.run(main())


def test_backoff_is_exponential_with_full_jitter_from_1_s_to_5_min() -> None:
    b = Backoff(base=adapter.RECONNECT_BASE_S, cap=adapter.RECONNECT_CAP_S, rng=random.Random(7))
    draws = [b.next_delay() for _ in range(40)]
    for attempt, d in enumerate(draws):
        assert 0.0 <= d <= min(300.0, 2.0**attempt)
    assert max(draws) > 100  # reaches minutes, capped at five
    assert len({round(d, 6) for d in draws}) == len(draws)  # jittered, not a fixed schedule
    assert (adapter.RECONNECT_BASE_S, adapter.RECONNECT_CAP_S) == (1.0, 300.0)
    link = MqttLink(LinkSettings("h", 1, GW, Path("ca"), Path("cert"), Path("key")))  # the default backoff
    assert (link.backoff.base, link.backoff.cap) == (1.0, 300.0)


def test_tls_refusals_are_recognised() -> None:
    assert (
        tls_refusal("[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired") == "certificate_expired"
    )
    assert tls_refusal("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca") == "certificate_unknown_ca"
    assert tls_refusal("tlsv13 alert certificate revoked") == "certificate_revoked"
    assert tls_refusal("[Errno 104] Connection reset by peer") is None


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from edge_agent.sync.mqtt import LinkSettings, MqttLink, Will
    from wire.messages import OFFLINE_WILL

    async def main() -> None:
        port, ca, cert, key = sys.argv[1:5]
        link = MqttLink(LinkSettings(host="127.0.0.1", port=int(port), client_id="gw-0001", ca=Path(ca),
                        cert=Path(cert), key=Path(key), will=Will("se/v1/p1/gw-0001/status", OFFLINE_WILL)))
        await link.start()
        await link.wait_connected()
        await link.publish("se/v1/p1/gw-0001/status", b'{"v":1,"type":"status","online":true}', 1, True)
        print("online", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_the_last_will_marks_a_vanished_gateway_offline(pki: Pki, broker: MosquittoBroker) -> None:
    gw = pki.gateway(GW)
    args = [str(broker.port), str(pki.ca_path), str(gw.cert_path), str(gw.key_path)]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, env=child_env(), text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "online"
        with MqttClient(broker, pki.hub("hub-1")) as hub:
            hub.subscribe(STATUS)
            assert decode_heartbeat(bytes(hub.expect().payload))["online"] is True  # retained
            proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker publishes the will
            proc.wait(10)
            will = hub.expect(timeout=10)
            assert will.payload == OFFLINE_WILL and json.loads(will.payload)["online"] is False
        with MqttClient(broker, pki.hub("hub-2")) as later:  # and it is retained for whoever looks
            later.subscribe(STATUS)
            retained = later.expect()
            assert retained.retain and decode_heartbeat(bytes(retained.payload))["online"] is False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert Will(STATUS, OFFLINE_WILL).retain and Will(STATUS, OFFLINE_WILL).qos == 1


def test_a_peer_that_hangs_up_is_offline_not_auth_refused(pki: Pki) -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    stop = threading.Event()

    def hang_up() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()

    async def main() -> None:
        gw = pki.gateway(GW)
        link = MqttLink(LinkSettings("127.0.0.1", port, GW, pki.ca_path, gw.cert_path, gw.key_path), backoff=fast())
        await link.start()
        assert await async_wait_until(lambda: link.counters.attempts >= 3, 10)
        await link.stop()
        assert link.last_error is not None and not isinstance(link.last_error, AuthRefused)
        assert link.last_error.reason in ("connection_reset", "closed_before_connack", "tls_error")

    try:
        asyncio.run(main())
    finally:
        stop.set()
        thread.join()
        server.close()
