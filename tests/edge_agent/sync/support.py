"""Helpers for the sync tests: a minimal in-test hub (:class:`HubResponder`), reading factories,
``[sync]`` configs for the test PKI and broker, and waiting helpers.

The responder is deliberately tiny and independent of ``hub/`` (built elsewhere): it subscribes
as a hub user to ``$share/hub/se/v1/+/+/up`` (and ``alert``), opens every batch with
``wire.envelope.open_batch``, "stores" each uid once, and answers with an ack signed by the hub
key (``wire.messages.encode_ack``). Modes let a test make it silent, reject, or sign with the
wrong key. It speaks paho directly (a test may; the agent's code goes through edge_agent.sync.mqtt).
It can also run in a child process (:func:`responder_process`), so that a memory measurement of
the gateway does not include the hub.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_drivers.records import Reading, Vital
from edge_agent.config import AgentConfig, DeviceConfig, GatewayConfig, SchedulerConfig, SyncConfig
from provisioning.pki import HubKeys, load_ca_certs
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.pki import Identity, Pki
from wire.envelope import open_batch
from wire.errors import WireError
from wire.messages import Ack, AlertBatch, ReadingBatch, encode_ack
from wire.topics import parse_topic, topic

GW = "gw-0001"
PROVINCE = "p1"
UP = "$share/hub/se/v1/+/+/up"
ALERT = "$share/hub/se/v1/+/+/alert"


# -- readings ---------------------------------------------------------------------------------


def make_readings(start: int, n: int, *, gateway_id: str = GW, at: datetime | None = None) -> list[Reading]:
    """``n`` SpO2 readings with seqs ``start`` .. ``start + n - 1`` (received now unless ``at``)."""
    t0 = at or datetime.now(UTC)
    out = []
    for seq in range(start, start + n):
        t = t0 + timedelta(milliseconds=seq)
        out.append(
            Reading(
                uid=f"{gateway_id}:{seq}",
                seq=seq,
                vital=Vital.SPO2,
                value=90.0 + seq % 10,
                unit="%",
                measured_at=t,
                received_at=t,
                device_id="oxi-1",
                source_format="masimo-ascii",
                clock_from_device=False,
                patient_id="P-SECRET-0042",
            )
        )
    return out


# -- config -----------------------------------------------------------------------------------


def sync_config(pki: Pki, broker: MosquittoBroker | int, identity: Identity | None = None, **kw: Any) -> SyncConfig:
    port = broker if isinstance(broker, int) else broker.port
    ident = identity or pki.gateway(GW)
    values: dict[str, Any] = {"batch_max": 50, "batch_max_age_s": 0.0, "in_flight": 4, "heartbeat_s": 60.0}
    values.update(kw)
    return SyncConfig(
        broker=f"mqtts://127.0.0.1:{port}",
        ca=pki.ca_path,
        cert=ident.cert_path,
        key=ident.key_path,
        hub_keys=pki.hub_public_path,
        **values,
    )


def agent_config(
    state_dir: Path, sync: SyncConfig | None, devices: tuple[DeviceConfig, ...] = (), *, gateway_id: str = GW
) -> AgentConfig:
    return AgentConfig(
        version=1,
        gateway=GatewayConfig(id=gateway_id, province=PROVINCE, state_dir=state_dir),
        devices=devices,
        scheduler=SchedulerConfig(status_interval_s=1.0, retention_interval_s=3600.0),
        sync=sync,
    )


# -- waiting ----------------------------------------------------------------------------------


def wait_until(pred: Callable[[], bool], timeout: float = 20.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


async def async_wait_until(pred: Callable[[], bool], timeout: float = 20.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class RssSampler:
    """Samples this process's RSS on a thread; ``peak`` is the highest seen."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the in-test hub --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HubFiles:
    """What a responder needs, as paths (so a child process can load it)."""

    port: int
    ca: Path
    cert: Path
    key: Path
    hub_keys_dir: Path

    @classmethod
    def of(cls, pki: Pki, broker: MosquittoBroker, name: str = "hub-1") -> HubFiles:
        hub = pki.hub(name)
        return cls(broker.port, pki.ca_path, hub.cert_path, hub.key_path, pki.hub_keys_dir)


class HubResponder:
    """A minimal hub worker on a real broker (see the module doc). ``mode``: ``ack`` (default),
    ``silent`` (open and record, never answer), ``reject`` (answer "rejected"), ``forge`` (sign
    acks with a key that is not the hub's)."""

    def __init__(self, files: HubFiles, *, mode: str = "ack", client_id: str = "hub-1") -> None:
        self.files = files
        self.mode = mode
        self.keys = HubKeys.load(files.hub_keys_dir)
        self.ca_certs: list[x509.Certificate] = load_ca_certs(files.ca)
        self.forged_key = ed25519.Ed25519PrivateKey.generate()
        self.lock = threading.Lock()
        self.stored: dict[str, int] = {}  # uid -> seq (each uid once)
        self.arrivals: collections.Counter[str] = collections.Counter()  # uid -> times received
        self.batch_ids: list[str] = []  # every reading batch received, in order (re-sends repeat)
        self.batch_uids: dict[str, tuple[str, ...]] = {}
        self.alerts: dict[tuple[str, int], dict[str, object]] = {}
        self.alert_batches: list[str] = []
        self.order: list[str] = []  # lanes in arrival order ("readings" / "alerts")
        self.rejected: collections.Counter[str] = collections.Counter()
        self.acks_sent = 0
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
        ctx.load_cert_chain(str(files.cert), str(files.key))
        c.tls_set_context(ctx)
        c.reconnect_delay_set(1, 2)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = lambda client, userdata, msg: self._inbox.put(msg)
        self.client = c
        self._worker = threading.Thread(target=self._work, name="hub-responder", daemon=True)

    # -- lifecycle --
    def start(self, timeout: float = 10.0) -> HubResponder:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600  # the shared subscription survives a broker restart
        self.client.connect("127.0.0.1", self.files.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        self._worker.start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError("hub responder did not subscribe")
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        self._worker.join(5)

    def __enter__(self) -> HubResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe([(UP, 1), (ALERT, 1)])

    # -- work --
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                self.handle(msg.topic, bytes(msg.payload))
            except Exception as exc:  # pragma: no cover - shows in the test's failure
                with self.lock:
                    self.rejected[f"responder_error:{exc!r}"] += 1

    def handle(self, topic_name: str, payload: bytes) -> None:
        try:
            ref = parse_topic(topic_name)
            opened, batch = open_batch(
                payload, hub_sealing_private=self.keys.sealing, ca_certs=self.ca_certs, now=datetime.now(UTC)
            )
        except WireError as exc:
            with self.lock:
                self.rejected[exc.reason] += 1
            return
        if ref.gateway_id != opened.gateway_id:
            with self.lock:
                self.rejected["topic_gateway_mismatch"] += 1
            return
        stored = duplicates = 0
        with self.lock:
            self.order.append(opened.lane)
            if isinstance(batch, ReadingBatch):
                self.batch_ids.append(batch.batch_id)
                self.batch_uids[batch.batch_id] = tuple(r.uid for r in batch.readings)
                for r in batch.readings:
                    self.arrivals[r.uid] += 1
                    if r.uid in self.stored:
                        duplicates += 1
                    else:
                        self.stored[r.uid] = r.seq
                        stored += 1
            elif isinstance(batch, AlertBatch):
                self.alert_batches.append(batch.batch_id)
                for a in batch.alerts:
                    self.alerts[(a.alert_id, a.rev)] = a.payload
                stored = len(batch.alerts)
        if self.mode == "silent":
            return
        status = "rejected" if self.mode == "reject" else "ok"
        ack = Ack(
            batch_id=opened.batch_id,
            gateway_id=opened.gateway_id,
            lane=opened.lane,
            status=status,
            stored=stored if status == "ok" else 0,
            duplicates=duplicates if status == "ok" else 0,
            reason="test says no" if status == "rejected" else "",
            acked_at=datetime.now(UTC),
        )
        key = self.forged_key if self.mode == "forge" else self.keys.signing
        self.publish_ack(ref.province, opened.gateway_id, encode_ack(ack, key))

    def publish_ack(self, province: str, gateway_id: str, payload: bytes) -> None:
        self.client.publish(topic(province, gateway_id, "ack"), payload, qos=1)
        with self.lock:
            self.acks_sent += 1

    # -- reading the results --
    def stored_count(self) -> int:
        with self.lock:
            return len(self.stored)

    def batches(self) -> list[str]:
        with self.lock:
            return list(self.batch_ids)


@contextlib.contextmanager
def responding(pki: Pki, broker: MosquittoBroker, **kw: Any) -> Iterator[HubResponder]:
    with HubResponder(HubFiles.of(pki, broker), **kw) as hub:
        yield hub


# -- a responder in a child process (memory measurements of the gateway alone) -----------------


def _responder_main(files: HubFiles, stored: Any, ready: Any, stop: Any) -> None:
    hub = HubResponder(files).start()
    ready.set()
    while not stop.wait(0.05):
        stored.value = hub.stored_count()
    stored.value = hub.stored_count()
    hub.stop()


@contextlib.contextmanager
def responder_process(files: HubFiles) -> Iterator[Callable[[], int]]:
    """A :class:`HubResponder` in a spawned child; yields a function returning how many uids it stored."""
    ctx = multiprocessing.get_context("spawn")
    stored = ctx.Value("q", 0)
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_responder_main, args=(files, stored, ready, stop), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise TimeoutError("responder process did not start")
        yield lambda: int(stored.value)
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():  # pragma: no cover
            proc.kill()
            proc.join()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[3]), env.get("PYTHONPATH", "")])
    return env
