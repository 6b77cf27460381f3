"""Command results survive a long outage, a loss between the broker and the hub, and the agent's
own restart (edge_agent.remote.outbox): a real Mosquitto (TLS + ACL, persistence), a real agent
and a real ``serve`` worker (``HubWorker`` + ``ResultRecorder``) recording into a real SQLite
ledger and acking each result. A result's file goes only on the hub's signed ack: the broker
stopped while a result is pending, the broker restarted with the agent back before the worker
(the broker PUBACKs a result the worker never gets), a set-config result unacked before the
agent's exit-1 restart; a forged ack removes nothing. Short timeouts and backoffs are injected."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from device_drivers.backoff import Backoff
from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.remote.part import RemotePart
from edge_agent.sync.mqtt import Message
from hub.commands import Issued, ResultRecorder, issue
from hub.ingest import Ingestor
from hub.mqtt_worker import HubWorker
from hub.store import HubStore, open_store
from tests.edge_agent.remote.support import GW, PROVINCE, wait_until, write_config
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient
from tests.fixtures.pki import Pki, kernel_now
from tests.hub.mqtt_helpers import worker_settings
from wire.messages import Ack, encode_ack


@dataclass
class Running:
    agent: Agent
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    thread: threading.Thread
    done: list[BaseException | None] = field(default_factory=list)

    @property
    def remote(self) -> RemotePart:
        assert self.agent.remote is not None
        return self.agent.remote

    def offer(self, payload: bytes) -> None:
        """Hand a command to the agent as its link would (used while the broker is down)."""
        message = Message(f"se/v1/{PROVINCE}/{GW}/cmd", payload, 1, False)
        self.loop.call_soon_threadsafe(self.remote.offer, message)

    def finish(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        self.loop.close()


def start_agent(config_path: Path) -> Running:
    agent = Agent(load_config(config_path), final_sync_s=0.0)
    assert agent.sync is not None and agent.remote is not None
    agent.sync.backoff = Backoff(base=0.1, cap=0.3)  # reconnect fast once the broker is back
    agent.sync.ack_timeout_s = 0.5  # a result (and a batch) without the hub's ack goes out again
    agent.remote.result_timeout_s = 0.3
    agent.remote.retry_s = 0.1
    loop = asyncio.new_event_loop()
    running = Running(agent, loop, asyncio.Event(), threading.Thread())

    def run() -> None:
        try:
            loop.run_until_complete(agent.run(running.stop))
            running.done.append(None)
        except BaseException as exc:  # surfaced by the test
            running.done.append(exc)

    running.thread = threading.Thread(target=run, name="agent", daemon=True)
    running.thread.start()
    return running


class Hub:
    """The hub side: the ledger and a real ``serve`` worker (``HubWorker`` with the
    ``ResultRecorder``, persistent session, shared subscription), which can be stopped and
    started again under the same worker id, as systemd does."""

    def __init__(self, tmp: Path, pki: Pki, broker: MosquittoBroker) -> None:
        self.pki, self.broker = pki, broker
        self.store: HubStore = open_store(tmp / "hub")
        self.recorder = ResultRecorder(
            self.store, hub_sealing_private=pki.hub_keys.sealing, ca_certs=pki.ca_certs, clock=lambda: datetime.now(UTC)
        )
        self.worker: HubWorker | None = None
        self.start_worker()

    def start_worker(self) -> None:
        ingestor = Ingestor(self.store, self.pki.hub_keys, self.pki.ca_certs)
        self.worker = HubWorker(worker_settings(self.broker, self.pki), ingestor, results=self.recorder).start()
        assert self.worker.wait_subscribed(10)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def publish(self, issued: Issued) -> None:
        """What ``edge-hub cmd`` does: one QoS 1 publish on the gateway's cmd topic."""
        ops = MqttClient(self.broker, self.pki.hub("hub-3")).connect()
        try:
            ops.publish(issued.topic, issued.payload)
        finally:
            ops.disconnect()

    def close(self) -> None:
        self.stop_worker()
        self.store.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Pki, MosquittoBroker, Hub]]:
    pki = Pki(tmp_path / "pki", now=kernel_now(tmp_path), hub_users=("hub-1", "hub-3"))
    with MosquittoBroker(tmp_path / "broker", pki) as broker:
        side = Hub(tmp_path, pki, broker)
        try:
            yield pki, broker, side
        finally:
            side.close()


def send(pki: Pki, store: HubStore, kind: str, args: dict[str, object]) -> Issued:
    return issue(
        store,
        pki.hub_keys.signing,
        gateway_id=GW,
        province=PROVINCE,
        kind=kind,
        args=args,
        now=datetime.now(UTC),
        expires_in_s=600.0,
    )


def outbox_files(tmp: Path) -> list[Path]:
    return sorted((tmp / "state" / "remote" / "outbox").glob("*.result"))


def state(side: Hub, issued: Issued) -> str:
    record = side.store.command(issued.record.cmd_id)
    assert record is not None
    return record.state


def test_a_pending_result_survives_an_outage_and_a_restart(
    tmp_path: Path, hub: tuple[Pki, MosquittoBroker, Hub]
) -> None:
    pki, broker, side = hub
    config_path = write_config(tmp_path, pki, broker)
    first = start_agent(config_path)
    try:
        assert wait_until(lambda: first.agent.sync is not None and first.agent.sync.state == "connected")

        # 1. the broker goes away while a diagnostics result (a bundle: the biggest kind) is pending
        diag = send(pki, side.store, "diagnostics", {"log_lines": 20})
        broker.stop()
        assert wait_until(lambda: first.agent.sync is not None and first.agent.sync.state != "connected")
        first.offer(diag.payload)
        assert wait_until(lambda: first.remote.delayed == 1, timeout=10)
        assert [p.name.split("-", 1)[1] for p in outbox_files(tmp_path)] == [f"{diag.record.cmd_id}.result"]
        # the same command delivered again (a broker redelivery): a replay, whose refusal is not
        # queued behind the pending answer (that one answers it)
        first.offer(diag.payload)
        assert wait_until(lambda: first.remote.state.refused["replayed"] == 1)
        assert len(outbox_files(tmp_path)) == 1
        status = first.agent.status()["remote"]
        assert status["outbox"]["depth"] == 1 and status["outbox"]["bytes"] > 1000  # type: ignore[index]
        assert state(side, diag) == "sent"
        # the broker is back (the agent reconnects within 0.3 s, the serve worker after 1-2 s):
        # the result goes out, the worker records and acks it, the file goes
        broker.start()
        assert wait_until(lambda: state(side, diag) == "applied", timeout=15)
        assert side.store.command_data(diag.record.cmd_id)["status"]  # type: ignore[index]
        assert wait_until(lambda: first.remote.outbox.depth == 0 and not outbox_files(tmp_path))
        assert first.remote.hub_acked == 1

        # 2. set-config while the serve worker is down: the broker takes the result (PUBACK) but
        # the hub's ack never comes within the bound: the agent restarts itself (exit 1 path)
        # with the result still in the outbox
        side.stop_worker()
        change = send(pki, side.store, "set-config", {"values": {"sync.heartbeat_s": 30}})
        published = first.remote.published
        side.publish(change)
        assert wait_until(lambda: first.agent.restart_reason == "config_changed", timeout=10)
        first.thread.join(20)
        assert not first.thread.is_alive() and first.done == [None], first.done
        assert first.remote.published > published and first.remote.delayed == 2  # PUBACK, no hub ack
    finally:
        first.finish()
    assert len(outbox_files(tmp_path)) == 1
    assert state(side, change) == "sent"

    side.start_worker()
    second = start_agent(config_path)  # the new configuration, and the old run's result first
    try:
        assert second.agent.config.sync is not None and second.agent.config.sync.heartbeat_s == 30.0
        assert wait_until(lambda: state(side, change) == "applied", timeout=15)
        assert wait_until(lambda: not outbox_files(tmp_path))
        remote = second.agent.status()["remote"]
        # only the hub's ack removes the file (the worker may have had the first copy queued in
        # its session: then the ack can even come before this run publishes it again)
        assert remote["outbox"]["depth"] == 0 and remote["results_acked"] == 1  # type: ignore[index]
    finally:
        second.finish()
    assert second.done == [None], second.done
    assert side.recorder.recorded_total == 2 and not side.recorder.rejected_total


def test_a_result_the_hub_never_got_is_published_again_until_the_hub_acks_it(
    tmp_path: Path, hub: tuple[Pki, MosquittoBroker, Hub]
) -> None:
    """The measured loss: the broker restarts, the agent is back before the serve worker, the
    broker PUBACKs the result and the worker never gets it. The file stays until the hub's own
    ack; a forged ack or one naming nothing pending changes nothing."""
    pki, broker, side = hub
    config_path = write_config(tmp_path, pki, broker)
    agent = start_agent(config_path)
    ack_topic = f"se/v1/{PROVINCE}/{GW}/ack"
    try:
        assert wait_until(lambda: agent.agent.sync is not None and agent.agent.sync.state == "connected")
        side.stop_worker()
        broker.stop()
        broker.start()
        assert wait_until(lambda: agent.agent.sync is not None and agent.agent.sync.state == "connected")
        diag = send(pki, side.store, "diagnostics", {"log_lines": 5})
        side.publish(diag)
        assert wait_until(lambda: agent.remote.published >= 1)  # the broker took it (PUBACK)
        assert wait_until(lambda: agent.remote.republished >= 1)  # no hub ack within ack_timeout_s
        assert len(outbox_files(tmp_path)) == 1 and state(side, diag) == "sent"

        ops = MqttClient(broker, pki.hub("hub-3")).connect()
        try:
            ack = Ack(diag.record.cmd_id, GW, "results", "ok", stored=1, acked_at=datetime.now(UTC))
            forged = encode_ack(ack, ed25519.Ed25519PrivateKey.generate())  # not the hub's key
            ops.publish(ack_topic, forged)
            uplink = agent.agent.sync.uplink  # type: ignore[union-attr]
            assert uplink is not None
            assert wait_until(lambda: uplink.counters.ignored_by_reason.get("bad_signature") == 1)
            unknown = Ack("c-not-pending", GW, "results", "ok", stored=1, acked_at=datetime.now(UTC))
            ops.publish(ack_topic, encode_ack(unknown, pki.hub_keys.signing))
            assert wait_until(lambda: agent.remote.stale_acks == 1)
        finally:
            ops.disconnect()
        assert len(outbox_files(tmp_path)) == 1 and agent.remote.hub_acked == 0
        assert uplink.counters.stale_acks == 0  # the batches' bookkeeping saw none of it

        side.start_worker()  # back: the next copy is recorded and acked, the file goes
        assert wait_until(lambda: state(side, diag) == "applied", timeout=15)
        assert wait_until(lambda: not outbox_files(tmp_path) and agent.remote.outbox.depth == 0)
        assert agent.remote.hub_acked == 1 and side.recorder.recorded_total == 1
        assert agent.agent.status()["remote"]["results_republished"] >= 1  # type: ignore[index]
    finally:
        agent.finish()
    assert agent.done == [None], agent.done
