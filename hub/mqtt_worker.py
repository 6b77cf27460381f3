"""One hub ingest worker on MQTT 5 (paho-mqtt 2.x, callback API version 2, TLS with the hub
worker's certificate). Every paho type stays inside this module.

- Subscribes ``wire.topics.hub_subscriptions()`` (the shared subscription ``$share/hub/…``, so
  several workers split the uplink and none assumes it is alone, DESIGN §8) and
  ``se/v1/+/+/status`` unshared (every worker keeps the fleet registry), all QoS 1; with a
  ``results`` recorder also the shared ``…/cmd/result`` (hub.commands), each result acked
  like a batch once recorded (the signed Ack, lane ``results``, batch id = cmd_id).
- Persistent session: client id = the worker id, clean start off, a session expiry interval. A
  worker that is restarted with the same id gets back whatever the broker had queued for it.
- Acks of incoming QoS 1 messages are manual (paho ``manual_ack``): for each message, in the
  order received, the worker stores it (COMMIT), publishes the signed Ack QoS 1 to
  ``se/v1/{province}/{gateway}/ack``, and only then sends the PUBACK. A worker killed between
  commit and PUBACK gets the message redelivered, finds its readings already stored and acks
  it again as duplicates: exactly-once at the hub.
- paho's network thread only queues messages; one ingest thread does the work, so a slow
  database slows the worker down (the broker sends at most ``receive_maximum`` unacked messages)
  instead of stalling keep-alives. A store failure is retried with backoff on the same message
  (its PUBACK withheld); nothing behind it is acked first.
- Reconnects with exponential backoff (paho's, between ``reconnect_min_s`` and
  ``reconnect_max_s``); a message received on a connection that has since dropped is processed
  (idempotent) but not PUBACKed: the broker redelivers it on the new connection.

Mosquitto 2.0 keeps routing a shared subscription's share to a member whose session is offline
(it queues for it): a killed worker should come back with the same ``--worker-id`` (systemd
restarts it), or its share waits until it does or its session expires. Gateways re-send every
batch until they see its Ack, which covers a worker that never returns.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from hub.commands import ResultRecorder
from hub.errors import HubError, OperatorActionRequired, StoreError
from hub.ingest import Ingestor, Outcome
from hub.renewal import RenewalAuthority
from wire import topics as wire_topics
from wire.address import broker_address
from wire.errors import WireError

log = logging.getLogger(__name__)

__all__ = ["STATUS_SUBSCRIPTION", "HubWorker", "WorkerFailed", "WorkerMetrics", "WorkerSettings", "parse_broker_url"]

STATUS_SUBSCRIPTION = wire_topics.hub_status_subscription()
STORE_RETRY_MIN_S = 0.5
STORE_RETRY_MAX_S = 30.0


class WorkerFailed(HubError):
    """The ingest thread died of an unexpected error (a bug); restarting may help (exit 1)."""


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtts://host[:port]`` → (host, port); plain ``mqtt://`` is refused (the link is TLS only)."""
    try:
        return broker_address(url)
    except ValueError as exc:
        raise ValueError(f"broker URL {exc}") from None


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    client_id: str
    session_expiry_s: int = 3600
    keepalive_s: int = 30
    receive_maximum: int = 32
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    status: bool = True  # also keep the fleet registry from se/v1/+/+/status
    share_group: str = wire_topics.HUB_SHARE_GROUP  # a deployment may keep its own group name secret


@dataclass(slots=True)
class WorkerMetrics:
    messages_total: int = 0
    acks_published_total: int = 0
    pubacks_total: int = 0
    pubacks_withheld_total: int = 0  # processed after their connection dropped: redelivered
    connects_total: int = 0
    disconnects_total: int = 0
    store_retries_total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def to_json(self) -> dict[str, int]:
        with self._lock:
            return {
                "hub_worker_messages_total": self.messages_total,
                "hub_worker_acks_published_total": self.acks_published_total,
                "hub_worker_pubacks_total": self.pubacks_total,
                "hub_worker_pubacks_withheld_total": self.pubacks_withheld_total,
                "hub_worker_connects_total": self.connects_total,
                "hub_worker_disconnects_total": self.disconnects_total,
                "hub_worker_store_retries_total": self.store_retries_total,
            }


@dataclass(frozen=True, slots=True)
class _Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    duplicate: bool
    retained: bool = False


def _tls_context(settings: WorkerSettings) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca))
    except (OSError, ssl.SSLError) as exc:
        raise OperatorActionRequired(f"cannot read the CA file {settings.ca}: {exc}", "check --ca") from exc
    try:
        ctx.load_cert_chain(str(settings.cert), str(settings.key))
    except (OSError, ssl.SSLError) as exc:
        raise OperatorActionRequired(
            f"cannot load the hub certificate {settings.cert} and key {settings.key}: {exc}", "check --cert and --key"
        ) from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class HubWorker:
    """Runs one ingest worker: :meth:`start`, then :meth:`stop` (or :meth:`run` until an event).

    ``after_commit`` is called on the ingest thread after the store committed a batch and before
    its Ack and PUBACK leave (a seam for tests that kill the worker right there)."""

    def __init__(
        self,
        settings: WorkerSettings,
        ingestor: Ingestor,
        *,
        after_commit: Callable[[Outcome], None] | None = None,
        renewal: RenewalAuthority | None = None,
        results: ResultRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.renewal = renewal  # also answers se/v1/+/+/renew/req (hub.renewal)
        self.results = results  # also records se/v1/+/+/cmd/result (hub.commands)
        self.metrics = WorkerMetrics()
        self._after_commit = after_commit
        self._queue: queue.Queue[_Incoming | None] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._failed = threading.Event()
        self.failure: BaseException | None = None
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._client = self._make_client(_tls_context(settings))

    # -- paho, network thread ---------------------------------------------------------------------

    def _make_client(self, ctx: ssl.SSLContext) -> mqtt.Client:
        s = self.settings
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        c.tls_set_context(ctx)
        c.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
        c.max_inflight_messages_set(max(20, s.receive_maximum))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("event=broker_refused worker=%s reason=%r", self.settings.client_id, str(rc))
            return
        with self._gen_lock:
            self._generation += 1
        self.metrics.add("connects_total")
        self._connected.set()
        session_present = bool(getattr(flags, "session_present", False))
        log.info(
            "event=broker_connected worker=%s host=%s port=%d session_present=%s",
            self.settings.client_id,
            self.settings.host,
            self.settings.port,
            session_present,
        )
        # Subscribe every time (the broker may have lost the session); retain handling 1: retained
        # status documents only when the subscription is new, not on every reconnect.
        opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        topics = [(t, opts) for t in wire_topics.hub_subscriptions(self.settings.share_group)]
        if self.settings.status:
            topics.append((STATUS_SUBSCRIPTION, opts))
        if self.renewal is not None:
            topics.append((wire_topics.hub_renewal_subscription(self.settings.share_group), opts))
        if self.results is not None:
            topics.append((wire_topics.hub_result_subscription(self.settings.share_group), opts))
        result, _mid = client.subscribe(topics)
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.error("event=subscribe_failed worker=%s rc=%s", self.settings.client_id, mqtt.error_string(result))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        refused = [str(rc) for rc in rcs if rc.is_failure]
        if refused:
            log.error("event=subscribe_refused worker=%s reasons=%r", self.settings.client_id, refused)
            return
        log.info("event=subscribed worker=%s subscriptions=%d", self.settings.client_id, len(rcs))
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self._connected.clear()
        self._subscribed.clear()
        self.metrics.add("disconnects_total")
        if not self._stop.is_set():
            log.warning("event=broker_disconnected worker=%s reason=%r", self.settings.client_id, str(rc))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._gen_lock:
            generation = self._generation
        self._queue.put(
            _Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos, generation, bool(msg.dup), bool(msg.retain))
        )

    # -- ingest thread ----------------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.metrics.add("messages_total")
            try:
                if not self._process(item):
                    return  # stopping while the store was failing: leave it unacked (redelivered)
            except Exception as exc:  # a bug: stop (unacked: redelivered), let systemd restart us
                log.exception("event=worker_failed worker=%s error=%r", self.settings.client_id, type(exc).__name__)
                self.failure = exc
                self._failed.set()
                return

    def _process(self, item: _Incoming) -> bool:
        if item.topic.endswith("/renew/req"):
            self._renew(item)
            return True
        delay = STORE_RETRY_MIN_S
        while True:
            try:
                if item.topic.endswith("/cmd/result"):  # recorded once in the ledger, then acked
                    outcome = Outcome("ignored", "results", None, None)
                    if self.results is not None:
                        done = self.results.process(item.topic, item.payload)
                        outcome = Outcome("ignored", "results", None, None, done.ack, done.ack_topic)
                elif item.topic.endswith("/status"):
                    outcome = self.ingestor.process_status(
                        item.topic, item.payload, retained=item.retained, duplicate=item.duplicate
                    )
                else:
                    outcome = self.ingestor.process(item.topic, item.payload)
                break
            except StoreError as exc:
                self.metrics.add("store_retries_total")
                log.error(
                    "event=store_failed worker=%s retry_in_s=%.1f error=%r", self.settings.client_id, delay, str(exc)
                )
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, STORE_RETRY_MAX_S)
        if outcome.kind == "stored" and outcome.lane != "status" and self._after_commit is not None:
            self._after_commit(outcome)
        if outcome.ack is not None and outcome.ack_topic is not None:
            self._publish_ack(outcome)
        if item.qos > 0:
            with self._gen_lock:
                current = self._generation
            if item.generation == current and self._connected.is_set():
                self._client.ack(item.mid, item.qos)
                self.metrics.add("pubacks_total")
            else:
                self.metrics.add("pubacks_withheld_total")
        return True

    def _renew(self, item: _Incoming) -> None:
        """A renewal request: decide, publish the signed reply, then PUBACK (a request lost with
        the connection is simply asked again by the gateway's next renewal job)."""
        if self.renewal is not None:
            outcome = self.renewal.handle(item.topic, item.payload)
            if outcome.reply is not None and outcome.reply_topic is not None:
                self._client.publish(outcome.reply_topic, outcome.reply, qos=1)
        if item.qos > 0:
            with self._gen_lock:
                current = self._generation
            if item.generation == current and self._connected.is_set():
                self._client.ack(item.mid, item.qos)
                self.metrics.add("pubacks_total")

    def _publish_ack(self, outcome: Outcome) -> None:
        assert outcome.ack is not None and outcome.ack_topic is not None
        try:
            payload = self.ingestor.sign(outcome.ack)
        except WireError as exc:  # an id the ack format refuses: nothing to send, the batch stays unacked
            log.error("event=ack_unencodable worker=%s reason=%s", self.settings.client_id, exc.reason)
            return
        info = self._client.publish(outcome.ack_topic, payload, qos=1)
        self.metrics.add("acks_published_total")
        if info.rc != mqtt.MQTT_ERR_SUCCESS:  # not connected: paho keeps it and sends it after reconnecting
            log.info("event=ack_queued worker=%s rc=%s", self.settings.client_id, mqtt.error_string(info.rc))

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> HubWorker:
        """Connect (in the background, retrying with backoff) and start ingesting."""
        s = self.settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        props.ReceiveMaximum = s.receive_maximum
        self._thread = threading.Thread(target=self._ingest_loop, name=f"hub-ingest-{s.client_id}", daemon=True)
        self._thread.start()
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props)
        self._client.loop_start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def gauges(self) -> dict[str, float]:
        """Point-in-time figures for /metrics: messages received and not yet stored, connected."""
        return {
            "hub_worker_queue_depth": float(self._queue.qsize()),
            "hub_worker_connected": 1.0 if self._connected.is_set() else 0.0,
        }

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker granted this connection's subscriptions (the worker is receiving)."""
        return self._subscribed.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the message in hand (commit, Ack, PUBACK), then DISCONNECT; what is still
        queued stays unacked and the broker keeps it for this worker's session."""
        self._stop.set()
        # drain what was queued but not started: it was never acked, the broker redelivers it
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        log.info("event=worker_stopped worker=%s", self.settings.client_id)

    def run(self, stop: threading.Event, *, tick_s: float = 1.0) -> None:
        """Start, block until ``stop`` is set, then stop cleanly; raises :class:`WorkerFailed`
        when the ingest thread died of an unexpected error."""
        self.start()
        try:
            while not stop.wait(tick_s):
                if self._failed.is_set():
                    break
        finally:
            self.stop()
        if self.failure is not None:
            raise WorkerFailed(f"ingest failed: {type(self.failure).__name__}: {self.failure}") from self.failure
