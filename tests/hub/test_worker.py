"""Hub workers against a real Mosquitto (TLS, ACL, persistence; tests/fixtures/mosquitto.py) and a
real store: stored once and acked; duplicates acked again; bad batches rejected, counted, never
stored; two workers on one shared subscription with one SIGKILLed mid-stream; a worker killed
between COMMIT and PUBACK; the broker restarted under a worker."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hub.errors import StoreError
from hub.ingest import Ingestor, Outcome
from hub.mqtt_worker import HubWorker, WorkerFailed
from hub.store import HubStore, open_store
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient, find_mosquitto
from tests.fixtures.pki import Pki
from tests.hub.helpers import reading, sealed_readings
from tests.hub.mqtt_helpers import PROVINCE, ROOT, Gateway, ServeProcess, running_worker, worker_settings
from wire import messages
from wire.topics import topic

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")

GW = "gw-0001"


def batch(pki: Pki, start: int, n: int, gateway_id: str = GW) -> tuple[str, bytes]:
    return sealed_readings(
        pki, gateway_id, [reading(gateway_id, s, value=90.0 + s % 9) for s in range(start, start + n)]
    )


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def test_a_batch_is_stored_once_and_acked(broker: MosquittoBroker, pki: Pki, store: HubStore) -> None:
    with running_worker(broker, pki, store) as worker:
        gw = Gateway(broker, pki, GW)
        batch_id, data = batch(pki, 0, 50)
        gw.publish(data)
        [ack] = gw.wait_acked([batch_id])[batch_id]
        assert (ack.status, ack.lane, ack.stored, ack.duplicates) == ("ok", "readings", 50, 0)
        assert store.count_readings() == 50
        assert worker.metrics.pubacks_total >= 1 and worker.metrics.acks_published_total == 1
        gw.close()


def test_the_same_batch_twice_is_stored_once_and_acked_twice(
    broker: MosquittoBroker, pki: Pki, store: HubStore
) -> None:
    with running_worker(broker, pki, store):
        gw = Gateway(broker, pki, GW)
        batch_id, data = batch(pki, 0, 20)
        gw.publish(data)
        gw.wait_acked([batch_id])
        gw.publish(data)
        wait_for(lambda: len(gw.collect(0.1)) >= 2)
        first, second = gw.by_batch()[batch_id]
        assert (first.stored, first.duplicates) == (20, 0)
        assert (second.status, second.stored, second.duplicates) == ("ok", 0, 20)
        assert store.count_readings() == 20
        gw.close()


def test_bad_batches_are_rejected_counted_and_never_stored(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    with open_store(tmp_path / "hub") as store, running_worker(broker, pki, store) as worker:
        gw = Gateway(broker, pki, GW)
        gw2 = Gateway(broker, pki, "gw-0002")
        # the broker's ACL keeps gw-0002 out of gw-0001's topics; an injector with broker rights
        # (a misconfigured ACL, a compromised broker) is what the hub's own check is for
        injector = MqttClient(broker, pki.hub("hub-2"), client_id="injector").connect()
        forged = sealed_readings(pki, GW, [reading(GW, 1)], identity=pki.foreign_gateway(GW))[1]
        expired = sealed_readings(pki, GW, [reading(GW, 2)], identity=pki.expired_gateway(GW))[1]
        good = bytearray(batch(pki, 3, 5)[1])
        good[len(good) // 2] ^= 0x40
        tampered = bytes(good)
        other_id, other = batch(pki, 10, 5, gateway_id="gw-0002")
        gw.publish(forged)
        gw.publish(expired)
        gw.publish(tampered)
        injector.publish(gw.up, other)  # gw-0002's batch under gw-0001's topic
        wait_for(lambda: sum(worker.ingestor.metrics.rejected_total.values()) == 4)
        rejected = worker.ingestor.metrics.rejected_total
        assert rejected["cert_untrusted"] == 1
        assert rejected["cert_expired"] == 1
        assert rejected["topic_mismatch"] == 1
        assert sum(rejected.values()) == 4
        assert store.count_readings() == 0
        # silence for the unauthenticated, a rejected Ack to the authenticated signer
        [ack] = gw2.wait_acked([other_id])[other_id]
        assert (ack.status, ack.reason) == ("rejected", "topic_mismatch")
        assert gw.collect(0.5) == []
        injector.disconnect()
        gw.close()
        gw2.close()


def test_status_heartbeat_and_last_will_reach_the_registry(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    with open_store(tmp_path / "hub") as store, running_worker(broker, pki, store):
        status = topic(PROVINCE, GW, "status")
        gw = MqttClient(broker, pki.gateway(GW), will=(status, messages.OFFLINE_WILL, 1, True)).connect()
        gw.publish(status, messages.encode_heartbeat({"online": True, "backlog": 3}), retain=True)
        wait_for(lambda: [g.online for g in store.gateways()] == [True])
        gw.drop()  # vanish: the broker publishes the last will
        wait_for(lambda: [g.online for g in store.gateways()] == [False], timeout=30)
        [g] = store.gateways()
        assert (g.gateway_id, g.province) == (GW, PROVINCE)


def test_worker_reconnects_after_the_broker_restarts(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    with open_store(tmp_path / "hub") as store, running_worker(broker, pki, store) as worker:
        broker.restart(kill=True)
        assert worker.wait_subscribed(30)
        wait_for(lambda: worker.metrics.connects_total >= 2, timeout=30)
        gw = Gateway(broker, pki, GW)
        batch_id, data = batch(pki, 0, 10)
        gw.publish(data)
        assert gw.wait_acked([batch_id])[batch_id][0].stored == 10
        gw.close()


def test_two_workers_one_killed_mid_stream_every_uid_exactly_once(
    broker: MosquittoBroker, pki: Pki, store_spec: str, tmp_path: Path
) -> None:
    """Two ``edge-hub serve`` processes share the subscription; one is SIGKILLed a third of the
    way through and restarted (same certificate, same session) after the rest was published."""
    open_store(store_spec).close()  # migrate once
    n_batches, per_batch = 60, 25
    a = ServeProcess(tmp_path / "a", broker, pki, store_spec, "hub-1").start()
    b = ServeProcess(tmp_path / "b", broker, pki, store_spec, "hub-2").start()
    try:
        gw = Gateway(broker, pki, GW)
        ids: list[str] = []
        for i in range(n_batches):
            batch_id, data = batch(pki, i * per_batch, per_batch)
            ids.append(batch_id)
            gw.publish(data)
            if i == n_batches // 3:
                a.kill()
        # Mosquitto 2.0 keeps routing hub-1's share to its offline session; hub-2 stores its own
        time.sleep(1.0)
        a.start()
        acks = gw.wait_acked(ids, timeout=60)
        assert all(any(x.status == "ok" for x in acks[bid]) for bid in ids)
        with open_store(store_spec) as s:
            assert s.count_readings() == n_batches * per_batch
            assert s.uids() == {f"{GW}:{k}" for k in range(n_batches * per_batch)}
        # every ack accounts for its whole batch; a batch hub-1 committed just before the SIGKILL
        # is acked after the restart with its readings as duplicates
        assert all(x.stored + x.duplicates == per_batch for xs in acks.values() for x in xs)
        assert sum(x.stored for xs in acks.values() for x in xs) <= n_batches * per_batch
        assert "event=batch_stored" in b.log_text()
        gw.close()
    finally:
        a.terminate()
        b.terminate()


def test_worker_killed_between_commit_and_ack_gets_the_redelivery_and_acks_it_as_duplicate(
    broker: MosquittoBroker, pki: Pki, store_spec: str, tmp_path: Path
) -> None:
    open_store(store_spec).close()
    hub = pki.hub("hub-1")
    log_path = tmp_path / "crash.log"
    argv = [
        sys.executable,
        "-m",
        "tests.hub.crash_worker",
        str(broker.port),
        str(pki.ca_path),
        str(hub.cert_path),
        str(hub.key_path),
        str(pki.hub_keys_dir),
        store_spec,
        "hub-1",
    ]
    with open(log_path, "wb") as log:
        crashing = subprocess.Popen(argv, stdout=log, stderr=log, cwd=ROOT)
    try:
        wait_for(lambda: "event=subscribed" in log_path.read_text(), timeout=20)
        gw = Gateway(broker, pki, GW)
        batch_id, data = batch(pki, 0, 30)
        gw.publish(data)
        assert crashing.wait(20) == 9, log_path.read_text()
        assert "event=crash_after_commit" in log_path.read_text()
        with open_store(store_spec) as s:
            assert s.count_readings() == 30  # committed...
        assert gw.collect(0.5) == []  # ...but never acked
        # the same worker comes back (same certificate, same session): the broker redelivers
        with ServeProcess(tmp_path / "again", broker, pki, store_spec, "hub-1"):
            [ack] = gw.wait_acked([batch_id], timeout=30)[batch_id]
            assert (ack.status, ack.stored, ack.duplicates) == ("ok", 0, 30)
        with open_store(store_spec) as s:
            assert s.count_readings() == 30
        gw.close()
    finally:
        if crashing.poll() is None:
            crashing.kill()
            crashing.wait(10)


def test_serve_exits_78_on_unreadable_keys_and_2_on_a_bad_url(pki: Pki, tmp_path: Path) -> None:
    hub = pki.hub("hub-1")
    base = ["serve", "--store", str(tmp_path / "hub"), "--ca", str(pki.ca_path), "--cert", str(hub.cert_path)]
    base += ["--key", str(hub.key_path)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", *base, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
        )

    done = run("--broker", "mqtts://127.0.0.1:1", "--hub-keys", str(tmp_path / "no-keys"))
    assert done.returncode == 78, done.stderr
    assert "operator_must_act" in done.stderr
    done = run("--broker", "mqtt://127.0.0.1:1883", "--hub-keys", str(pki.hub_keys_dir))
    assert done.returncode == 2 and "mqtts://" in done.stderr
    done = run("--broker", "mqtts://127.0.0.1:1", "--hub-keys", str(pki.hub_keys_dir), "--share-group", "a/b")
    assert done.returncode == 2


def test_serve_stops_cleanly_on_sigterm(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    proc = ServeProcess(tmp_path / "w", broker, pki, str(tmp_path / "hub"), "hub-1", "--json").start()
    gw = Gateway(broker, pki, GW)
    batch_id, data = batch(pki, 0, 5)
    gw.publish(data)
    gw.wait_acked([batch_id])
    assert proc.terminate() == 0
    assert '"hub_readings_stored_total": 5' in proc.log_text()
    gw.close()


def test_a_store_outage_is_retried_on_the_same_message(
    broker: MosquittoBroker, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(tmp_path / "hub") as store:
        real = store.ingest
        failures = [StoreError("database away"), StoreError("still away")]

        def flaky(*args: Any, **kwargs: Any) -> Any:
            if failures:
                raise failures.pop(0)
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "ingest", flaky)
        with running_worker(broker, pki, store) as worker:
            gw = Gateway(broker, pki, GW)
            batch_id, data = batch(pki, 0, 10)
            gw.publish(data)
            [ack] = gw.wait_acked([batch_id], timeout=30)[batch_id]
            assert (ack.status, ack.stored) == ("ok", 10)
            assert worker.metrics.store_retries_total == 2
            assert worker.ingestor.metrics.store_errors_total == 2
            assert not worker.ingestor.metrics.rejected_total
            gw.close()


def test_an_unexpected_error_stops_the_worker_and_the_message_is_redelivered(
    broker: MosquittoBroker, pki: Pki, tmp_path: Path
) -> None:
    class Buggy(Ingestor):
        def process(self, topic: str, payload: bytes) -> Outcome:
            raise RuntimeError("a bug")

    with open_store(tmp_path / "hub") as store:
        worker = HubWorker(worker_settings(broker, pki), Buggy(store, pki.hub_keys, pki.ca_certs))
        errors: list[BaseException] = []
        stop = threading.Event()

        def run() -> None:
            try:
                worker.run(stop, tick_s=0.05)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        assert worker.wait_subscribed(10)
        gw = Gateway(broker, pki, GW)
        batch_id, data = batch(pki, 0, 10)
        gw.publish(data)
        thread.join(20)
        assert len(errors) == 1 and isinstance(errors[0], WorkerFailed)
        assert store.count_readings() == 0
        # the same worker identity comes back healthy: the unacked message is redelivered
        with running_worker(broker, pki, store):
            [ack] = gw.wait_acked([batch_id], timeout=30)[batch_id]
            assert (ack.status, ack.stored) == ("ok", 10)
        gw.close()
