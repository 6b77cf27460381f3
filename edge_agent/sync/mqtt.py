"""The one module that imports paho-mqtt: a thin asyncio adapter over a paho 2.x client (STYLE:
aiomqtt v2). Nothing above it sees a paho type or an integer return code.

Shape
-----
* MQTT 5 over mutual TLS (the gateway's certificate), client id = gateway id, clean start off
  and a Session Expiry Interval, so the broker keeps the subscriptions and queues the hub's acks
  while the gateway is away; a last will (retained, QoS 1) marks the gateway offline.
* paho runs its own network thread (``loop_start``); its callbacks do nothing but hand results
  to the event loop with ``loop.call_soon_threadsafe``: they resolve futures keyed by message id
  (PUBACK, SUBACK, CONNACK, the end of the connection) or put a received message into a bounded
  asyncio queue (full: the message is counted and dropped; the hub's acks are re-obtained by
  re-sending). Reason codes and socket errors become exceptions at that boundary:
  :class:`SyncError` and its subclasses.
* Reconnecting is ours, not paho's: one paho client per connection (``reconnect_on_failure``
  off), and between attempts an exponential backoff with full jitter from 1 s up to 5 min
  (device_drivers.backoff), so a province's gateways do not all return in the same second.
  A fresh client per connection also means paho's own queue never outlives a connection: what
  was not acknowledged when the link broke is failed (:class:`NotConnected`) and the caller
  re-sends it from its store, which is the source of truth; paho's queue is kept small
  (``max_queued``).
* Connection state is observable (:attr:`MqttLink.state`, listeners called on the loop with a
  :class:`LinkEvent`): ``connecting``, ``connected``, ``offline`` (waiting to retry) and
  ``auth_refused`` (the broker or the TLS layer refused the gateway's identity or its rights: an
  expired, revoked or foreign certificate, an ACL; it keeps retrying with the backoff, because
  an operator can fix it without restarting the agent).

Threads: the paho network thread, and one worker thread of this adapter for the blocking parts
(TCP connect and TLS handshake, joining the network thread). Everything else is on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device_drivers.backoff import Backoff

log = logging.getLogger(__name__)

RECONNECT_BASE_S = 1.0
RECONNECT_CAP_S = 300.0
STABLE_AFTER_S = 10.0  # a connection that lasted this long resets the backoff (no storm when flapping)
CONNECT_TIMEOUT_S = 10.0  # TCP + TLS handshake, then again for the CONNACK and SUBACKs
PUBLISH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


# --- errors -------------------------------------------------------------------------------------


class SyncError(Exception):
    """Root of the sync's errors; ``reason`` is a short code for counting and status."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class NotConnected(SyncError):
    """No connection (yet, or any more): retry later; nothing an operator needs to do."""


class PublishFailed(SyncError):
    """The broker did not take a message (a refusal code, paho's queue full, no PUBACK in time)."""


class AuthRefused(SyncError):
    """The gateway's identity or rights were refused: expired, revoked or untrusted certificate,
    missing or unreadable TLS files, a broker ACL. Retrying alone will not fix it: an operator must act."""


# MQTT 5 reason codes that mean "who you are / what you may do", not "try again".
_AUTH_CODES = {
    0x85: "client_id_not_valid",
    0x86: "bad_username_or_password",
    0x87: "not_authorized",
    0x8A: "banned",
    0x8C: "bad_authentication_method",
}

# Failures that do not say why: the broker dropped the connection during or right after the TLS
# handshake. A refused client certificate looks like this when the broker's TLS alert is lost
# (its RST overtakes the alert), so after a definite refusal they do not clear the refusal.
_AMBIGUOUS = frozenset({"closed_before_connack", "connection_reset"})

# What OpenSSL says (in a TLS alert from the broker, or in our own verification) when an identity
# is refused, and the reason code it becomes.
_TLS_REFUSALS = (
    (re.compile(r"certificate expired", re.I), "certificate_expired"),
    (re.compile(r"certificate revoked", re.I), "certificate_revoked"),
    (re.compile(r"unknown ca", re.I), "certificate_unknown_ca"),
    (re.compile(r"bad certificate|certificate unknown|unsupported certificate", re.I), "certificate_rejected"),
    (re.compile(r"certificate required", re.I), "certificate_required"),
    (re.compile(r"access denied", re.I), "access_denied"),
)


def tls_refusal(text: str) -> str | None:
    """The reason code of a TLS identity refusal in an OpenSSL message, else None."""
    for pattern, reason in _TLS_REFUSALS:
        if pattern.search(text):
            return reason
    return None


def _connect_error(exc: BaseException, cert_expired: bool) -> SyncError:
    """A socket, TLS or DNS failure while connecting, as one of ours."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AuthRefused("broker_certificate_rejected", exc.verify_message or str(exc))
    if isinstance(exc, ssl.SSLError):
        reason = tls_refusal(str(exc))
        if reason is not None:
            return AuthRefused(reason, str(exc))
        if cert_expired:
            return AuthRefused("certificate_expired", f"the gateway certificate has expired ({exc})")
        if isinstance(exc, ssl.SSLEOFError):
            return NotConnected("connection_reset", str(exc))
        return NotConnected("tls_error", str(exc))
    if isinstance(exc, ConnectionRefusedError):
        return NotConnected("connection_refused", str(exc))
    if isinstance(exc, TimeoutError):
        return NotConnected("connect_timeout", str(exc) or "no answer")
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        if cert_expired:
            return AuthRefused("certificate_expired", "the gateway certificate has expired")
        return NotConnected("connection_reset", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        return NotConnected("network_error", f"{type(exc).__name__}: {exc}")
    return NotConnected("connect_failed", f"{type(exc).__name__}: {exc}")


# --- data -----------------------------------------------------------------------------------------


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    OFFLINE = "offline"  # waiting to retry after a failure or a lost connection
    AUTH_REFUSED = "auth_refused"  # waiting to retry, but an operator must act
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Message:
    """A message received from the broker."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A change of the link's state, delivered to listeners on the loop. ``connection`` counts
    successful connections (1 for the first); ``error`` is why an attempt or a connection ended;
    ``retry_in_s`` is the backoff drawn before the next attempt (offline and auth_refused)."""

    state: LinkState
    at: datetime
    connection: int
    error: SyncError | None = None
    session_present: bool = False
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    ca: Path
    cert: Path
    key: Path
    keepalive_s: int = 60
    session_expiry_s: int = 7 * 24 * 3600
    will: Will | None = None
    subscriptions: tuple[str, ...] = ()  # subscribed (QoS 1) on every connection before "connected"
    max_queued: int = 16  # paho's own queue: a few batches, never the backlog
    connect_timeout_s: float = CONNECT_TIMEOUT_S


@dataclass(slots=True)
class LinkCounters:
    attempts: int = 0
    connects: int = 0
    disconnects: int = 0
    received: int = 0
    dropped_messages: int = 0  # the receive queue was full
    published: int = 0
    publish_failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "attempts": self.attempts,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "received": self.received,
            "dropped_messages": self.dropped_messages,
            "published": self.published,
            "publish_failures": self.publish_failures,
            "errors": dict(self.errors),
        }


def tls_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Verify the broker against ``ca`` (host name included); present ``cert``/``key``."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise AuthRefused("tls_files", f"CA {ca}: {exc}") from None
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise AuthRefused("tls_files", f"certificate {cert} / key {key}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def certificate_not_after(cert: Path) -> datetime | None:
    """When the gateway's certificate expires (None if it cannot be read)."""
    try:
        return x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
    except (OSError, ValueError):
        return None


# --- one connection -------------------------------------------------------------------------------


class _Connection:
    """One paho client and its futures. Callbacks run on paho's thread and only schedule work on
    the loop; every dict here is touched on the loop only."""

    def __init__(self, link: MqttLink, loop: asyncio.AbstractEventLoop) -> None:
        s = link.settings
        self.link = link
        self.loop = loop
        self.connack: asyncio.Future[bool] = loop.create_future()
        self.closed: asyncio.Future[SyncError] = loop.create_future()
        self.pending: dict[int, asyncio.Future[None]] = {}
        self.subacks: dict[int, asyncio.Future[list[int]]] = {}
        self.last_tls_error = ""
        self.connected_at: float | None = None
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        c.connect_timeout = s.connect_timeout_s
        c.max_queued_messages_set(s.max_queued)
        c.max_inflight_messages_set(s.max_queued)
        if s.will is not None:
            c.will_set(s.will.topic, s.will.payload, qos=s.will.qos, retain=s.will.retain)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_log = self._on_log
        self.client = c

    # -- paho's thread -----------------------------------------------------------------------------
    def _soon(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self._soon(self._connected, int(rc.value), str(rc), bool(getattr(flags, "session_present", False)))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        from_broker = bool(getattr(flags, "is_disconnect_packet_from_server", False))
        self._soon(self._disconnected, int(rc.value), str(rc), from_broker)

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        self._soon(self._puback, mid, int(rc.value), str(rc))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        self._soon(self._suback, mid, [int(rc.value) for rc in rcs])

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._soon(self.link._deliver, Message(msg.topic, bytes(msg.payload), int(msg.qos), bool(msg.retain)))

    def _on_log(self, client: Any, userdata: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR and ("SSL" in text or "alert" in text):
            self.last_tls_error = text  # read on the loop after the connection ended

    # -- the loop ----------------------------------------------------------------------------------
    def _connected(self, code: int, name: str, session_present: bool) -> None:
        if self.connack.done():
            return
        if code >= 0x80:
            reason = _AUTH_CODES.get(code)
            exc: SyncError = AuthRefused(reason, name) if reason else NotConnected("connack_refused", name)
            self.connack.set_exception(exc)
        else:
            self.connected_at = time.monotonic()
            self.connack.set_result(session_present)

    def _disconnected(self, code: int, name: str, from_broker: bool) -> None:
        error = self.end_reason(code, name, from_broker)
        if not self.connack.done():
            self.connack.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(error)
        self.fail_all(NotConnected("connection_lost", str(error)))

    def end_reason(self, code: int, name: str, from_broker: bool) -> SyncError:
        tls = tls_refusal(self.last_tls_error) if self.last_tls_error else None
        if tls is not None:
            return AuthRefused(tls, self.last_tls_error)
        if code in _AUTH_CODES:
            return AuthRefused(_AUTH_CODES[code], name)
        if self.connected_at is None and self.link.certificate_expired():
            return AuthRefused("certificate_expired", "the gateway certificate has expired")
        if from_broker:
            return NotConnected("disconnected_by_broker", name)
        if self.connected_at is None:
            return NotConnected(
                "closed_before_connack",
                "the broker closed the connection after the TLS handshake, before accepting the session "
                f"(a refused certificate looks like this when its TLS alert is lost): {self.last_tls_error or name}",
            )
        return NotConnected("connection_lost", self.last_tls_error or name)

    def _puback(self, mid: int, code: int, name: str) -> None:
        fut = self.pending.pop(mid, None)
        if fut is None or fut.done():
            return
        if code >= 0x80:
            reason = _AUTH_CODES.get(code)
            fut.set_exception(AuthRefused(reason, name) if reason else PublishFailed("refused", name))
        else:
            fut.set_result(None)  # 0x10 "no matching subscribers" is a success: the broker took it

    def _suback(self, mid: int, codes: list[int]) -> None:
        fut = self.subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(codes)

    def fail_all(self, error: SyncError) -> None:
        futures: list[asyncio.Future[Any]] = [*self.pending.values(), *self.subacks.values()]
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: a publish nobody awaits any more is not an error to report
        self.pending.clear()
        self.subacks.clear()

    # -- operations (loop) -------------------------------------------------------------------------
    def connect_blocking(self, ctx: ssl.SSLContext) -> None:
        """TCP connect, TLS handshake, send CONNECT; then start paho's network thread. Worker thread."""
        s = self.link.settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        self.client.tls_set_context(ctx)
        self.client.connect(s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props)
        self.client.loop_start()

    def teardown_blocking(self) -> None:
        """Disconnect (when still connected) and join paho's thread. Worker thread."""
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    async def subscribe(self, topic: str) -> None:
        result, mid = self.client.subscribe(topic, qos=1)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise NotConnected("subscribe_failed", paho.error_string(result))
        fut: asyncio.Future[list[int]] = self.loop.create_future()
        self.subacks[mid] = fut
        codes = await fut
        refused = [c for c in codes if c >= 0x80]
        if refused:
            code = refused[0]
            raise AuthRefused(_AUTH_CODES.get(code, "subscribe_refused"), f"{topic}: reason code 0x{code:02x}")

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise PublishFailed("queue_full", f"more than {self.link.settings.max_queued} messages unacknowledged")
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise NotConnected("not_connected", "the connection is going down")
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise PublishFailed("publish_error", paho.error_string(rc))
        fut: asyncio.Future[None] = self.loop.create_future()
        if qos == 0:
            fut.set_result(None)
        else:
            self.pending[info.mid] = fut  # on the loop, before any PUBACK callback can run here
        return fut


# --- the link -------------------------------------------------------------------------------------


class MqttLink:
    """A supervised MQTT 5 connection: :meth:`start` it, :meth:`publish`, read :meth:`messages`,
    watch :attr:`state`; :meth:`stop` publishes an optional last message and disconnects."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        queue_size: int = 256,
        stable_after_s: float = STABLE_AFTER_S,
    ) -> None:
        self.settings = settings
        self.backoff = backoff or Backoff(base=RECONNECT_BASE_S, cap=RECONNECT_CAP_S)
        self.clock = clock
        self.stable_after_s = stable_after_s
        self.counters = LinkCounters()
        self.state = LinkState.OFFLINE
        self.since = clock()
        self.last_error: SyncError | None = None
        self.connection = 0  # successful connections so far
        self.cert_not_after = certificate_not_after(settings.cert)
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=queue_size)
        self._listeners: list[Callable[[LinkEvent], None]] = []
        self._current: _Connection | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-connect")

    # -- observation --
    @property
    def connected(self) -> bool:
        return self._current is not None and self.state is LinkState.CONNECTED

    def add_listener(self, fn: Callable[[LinkEvent], None]) -> Callable[[], None]:
        """Call ``fn`` on the loop at every state change; returns a function that removes it."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def use_certificate(self, cert: Path, key: Path | None = None) -> None:
        """Connect with ``cert`` (and ``key``, after a key rotation) from now on (a renewed
        certificate): the current connection is closed cleanly (no last will) and the link
        reconnects with it after the usual backoff."""
        self.settings = replace(self.settings, cert=cert, key=self.settings.key if key is None else key)
        self.cert_not_after = certificate_not_after(cert)
        conn = self._current
        if conn is not None:
            log.info("event=sync_certificate_switched reconnect=true")
            with contextlib.suppress(Exception):
                conn.client.disconnect()

    def certificate_expired(self) -> bool:
        return self.cert_not_after is not None and self.cert_not_after <= self.clock()

    async def wait_connected(self) -> int:
        """Wait until connected (subscriptions in place); returns the connection number."""
        while not self.connected:
            await self._connected.wait()
        return self.connection

    def _set_state(self, state: LinkState, *, error: SyncError | None = None, **extra: Any) -> None:
        self.state = state
        self.since = self.clock()
        if error is not None:
            self.last_error = error
            self.counters.errors[error.reason] = self.counters.errors.get(error.reason, 0) + 1
        if state is LinkState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        event = LinkEvent(state, self.since, self.connection, error, **extra)
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:
                log.exception("event=sync_listener_failed")

    # -- lifecycle --
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name="mqtt-link")

    async def stop(self, final: tuple[str, bytes, int, bool] | None = None, timeout: float = STOP_TIMEOUT_S) -> None:
        """Publish ``final`` (topic, payload, qos, retain) if connected, then disconnect cleanly
        (no last will) and stop reconnecting."""
        if final is not None and self.connected:
            try:
                await self.publish(*final, timeout=timeout)
            except SyncError as exc:
                log.info("event=sync_final_publish_failed reason=%s", exc.reason)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # (not `await task`: that would also swallow our own cancellation)
        self._set_state(LinkState.STOPPED)
        self._executor.shutdown(wait=False)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn = _Connection(self, loop)
            self.counters.attempts += 1
            self._set_state(LinkState.CONNECTING)
            error: SyncError
            try:
                error = await self._run_connection(conn)
            except SyncError as exc:
                error = exc
            if error.reason in _AMBIGUOUS and isinstance(self.last_error, AuthRefused):
                error = self.last_error  # same broker, same certificate: still refused
            lasted = None if conn.connected_at is None else time.monotonic() - conn.connected_at
            if lasted is not None and lasted >= self.stable_after_s:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            level = logging.ERROR if isinstance(error, AuthRefused) else logging.WARNING
            log.log(
                level,
                "event=sync_link_down reason=%s detail=%r retry_in_s=%.1f",
                error.reason,
                error.detail[:200],
                delay,
            )
            state = LinkState.AUTH_REFUSED if isinstance(error, AuthRefused) else LinkState.OFFLINE
            self._set_state(state, error=error, retry_in_s=round(delay, 3))
            await asyncio.sleep(delay)

    async def _run_connection(self, conn: _Connection) -> SyncError:
        """Connect, subscribe, serve until the connection ends; returns why it ended."""
        loop = asyncio.get_running_loop()
        s = self.settings
        started = False
        try:
            try:
                ctx = tls_context(s.ca, s.cert, s.key)
                started = True  # from here on the worker may start paho's thread: always tear down
                await loop.run_in_executor(self._executor, conn.connect_blocking, ctx)
                async with asyncio.timeout(s.connect_timeout_s):
                    session_present = await asyncio.shield(conn.connack)
                async with asyncio.timeout(s.connect_timeout_s):
                    for topic in s.subscriptions:
                        await conn.subscribe(topic)
            except TimeoutError:
                raise NotConnected("connect_timeout", "no CONNACK or SUBACK in time") from None
            except (OSError, ssl.SSLError) as exc:
                raise _connect_error(exc, self.certificate_expired()) from None
            self.connection += 1
            self.counters.connects += 1
            self._current = conn
            self.last_error = None
            log.info(
                "event=sync_connected broker=%s:%d session_present=%s connection=%d",
                s.host,
                s.port,
                session_present,
                self.connection,
            )
            self._set_state(LinkState.CONNECTED, session_present=session_present)
            error = await asyncio.shield(conn.closed)
            self.counters.disconnects += 1
            return error
        finally:
            self._current = None
            conn.fail_all(NotConnected("connection_closed"))
            if started:
                await asyncio.shield(loop.run_in_executor(self._executor, conn.teardown_blocking))

    # -- traffic --
    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, *, timeout: float = PUBLISH_TIMEOUT_S
    ) -> None:
        """Publish and wait for the PUBACK (QoS 1) or the write (QoS 0). Raises NotConnected,
        PublishFailed (refused, queue full, no PUBACK within ``timeout``) or AuthRefused (ACL)."""
        conn = self._current
        if conn is None or not self.connected:
            raise NotConnected("not_connected", str(self.state))
        try:
            fut = conn.publish(topic, payload, qos, retain)
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives
            # together with the PUBACK, and a stopping task would then run on
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            self.counters.publish_failures += 1
            raise PublishFailed("puback_timeout", f"no PUBACK within {timeout:g} s") from None
        except SyncError:
            self.counters.publish_failures += 1
            raise
        self.counters.published += 1

    def _deliver(self, message: Message) -> None:
        self.counters.received += 1
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.counters.dropped_messages += 1
            log.warning("event=sync_message_dropped topic=%s dropped=%d", message.topic, self.counters.dropped_messages)

    async def messages(self) -> AsyncIterator[Message]:
        """Received messages, in order, for one consumer."""
        while True:
            yield await self._queue.get()


__all__ = [
    "AuthRefused",
    "LinkCounters",
    "LinkEvent",
    "LinkSettings",
    "LinkState",
    "Message",
    "MqttLink",
    "NotConnected",
    "PublishFailed",
    "SyncError",
    "Will",
    "certificate_not_after",
    "tls_context",
    "tls_refusal",
]
