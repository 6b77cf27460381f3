"""``edge-hub simulate``: N light simulated gateways against a broker, for load tests of the hub.

Each simulated gateway is a real MQTT 5 client with an identity of its own: a P-256 key and a
client certificate (CN = its gateway id) that the broker checks for TLS and its ACL, and that
signs every envelope as the hub expects of a gateway (``wire.envelope``: sealed to the hub's
key, signed by the gateway, the certificate chained to a CA the hub trusts). It behaves like
the agent's sync (``edge_agent/sync``) seen from the wire:

- a retained ``status`` heartbeat on connect and every ``heartbeat_s`` (the fields the fleet
  view reads: backlog, sync, devices, clock, certificate), a retained last will
  ``{"online": false}``, and a last ``online: false`` heartbeat at a clean stop;
- reading batches of its few devices (an oximeter, a blood-pressure monitor, a thermometer, …)
  at ``rate`` readings per second, sent as the agent sends them: when the oldest waiting reading
  is ``batch_age_s`` old or ``batch_max`` are waiting, at most ``in_flight`` batches unacknowledged,
  QoS 1, re-sent under the same batch id when no ack came within ``ack_timeout_s``;
- the hub's signed acks verified with the hub's public key; the time from a batch's first
  publish to its ack is the end-to-end lag.

Light: every client is driven from ONE thread (paho's ``loop_read``/``loop_write``/``loop_misc``
on an epoll selector, timers in a heap), so 1,000 gateways are one process and one thread,
not 1,000 paho network threads. Connects are spread over ``ramp_s`` with jitter, reconnects
back off exponentially with full jitter (DESIGN §5).

Certificates: issued by the CA given to the command (``--ca-key`` / ``--ca-cert``, e.g. the
issuing CA of ``edge-provision ca init``) or by a throwaway CA the simulator creates in its
state directory (``sim-ca.pem``: give it to the broker's ``cafile`` and the hub's
``--gateway-ca``). They are throwaway test identities: backdated 400 days and valid 4000 (so a
broker judging them by another clock still accepts them), kept in ``<state-dir>/gateways/``
and reused by the next run with the same state directory.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import math
import random
import selectors
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device_drivers.records import VITALS, Reading, Vital
from hub.errors import OperatorActionRequired
from provisioning.errors import ProvisioningError
from provisioning.pki import CertifiedKey, HubPublicKeys, create_ca, issue, load_certified_key, verify_issued_by
from wire.envelope import seal_batch
from wire.errors import WireError
from wire.messages import OFFLINE_WILL, ReadingBatch, decode_ack, encode_heartbeat
from wire.topics import topic

log = logging.getLogger(__name__)

__all__ = [
    "SimSettings",
    "SimSummary",
    "Simulator",
    "gateway_ids",
    "load_identities",
    "percentile",
]

CERT_BACKDATE = timedelta(days=400)
CERT_DAYS = 4000
AGENT_VERSION = "simulate"
MISC_EVERY_S = 1.0  # paho keep-alive bookkeeping for every client
ACK_CHECK_EVERY_S = 1.0
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 60.0

# A station's devices, in the order a gateway gets them: (kind, source format, vitals per measurement).
DEVICE_KINDS: tuple[tuple[str, str, tuple[Vital, ...]], ...] = (
    ("oximeter", "masimo-ascii", (Vital.SPO2, Vital.HEART_RATE)),
    ("bp", "ble-blood-pressure", (Vital.BP_SYSTOLIC, Vital.BP_DIASTOLIC, Vital.BP_MEAN)),
    ("thermometer", "ble-temperature", (Vital.BODY_TEMP,)),
    ("scale", "ble-weight", (Vital.BODY_WEIGHT,)),
    ("glucometer", "ble-glucose", (Vital.GLUCOSE,)),
)
# plausible values (mean, spread) per vital
_VALUES: dict[Vital, tuple[float, float]] = {
    Vital.SPO2: (96.0, 2.0),
    Vital.HEART_RATE: (80.0, 12.0),
    Vital.BP_SYSTOLIC: (122.0, 12.0),
    Vital.BP_DIASTOLIC: (78.0, 8.0),
    Vital.BP_MEAN: (92.0, 8.0),
    Vital.BODY_TEMP: (36.9, 0.4),
    Vital.BODY_WEIGHT: (58.0, 12.0),
    Vital.GLUCOSE: (5.8, 1.0),
}


@dataclass(frozen=True, slots=True)
class SimSettings:
    """What to simulate (validated by :meth:`problems`)."""

    gateways: int
    host: str
    port: int
    tls: bool = True
    broker_ca: Path | None = None  # checks the broker's certificate (TLS)
    provinces: tuple[str, ...] = ("sim",)
    prefix: str = "sim"
    devices: int = 3
    rate: float = 0.5  # readings per second per gateway
    batch_max: int = 500
    batch_age_s: float = 5.0
    in_flight: int = 4
    heartbeat_s: float = 60.0
    ramp_s: float = 10.0
    duration_s: float = 60.0
    drain_s: float = 30.0
    ack_timeout_s: float = 60.0
    keepalive_s: int = 60
    session_expiry_s: int = 600
    progress_s: float = 5.0
    seed: int = 0

    def problems(self) -> list[str]:
        out = []
        if not 1 <= self.gateways <= 100_000:
            out.append("--gateways must be 1..100000")
        if not 1 <= self.devices <= 16:
            out.append("--devices must be 1..16")
        if not (self.rate >= 0 and math.isfinite(self.rate)):
            out.append("--rate must be a number >= 0")
        if not 1 <= self.batch_max <= 10_000:
            out.append("--batch-max must be 1..10000")
        for name, value in (
            ("--batch-age", self.batch_age_s),
            ("--heartbeat", self.heartbeat_s),
            ("--duration", self.duration_s),
            ("--ack-timeout", self.ack_timeout_s),
            ("--progress", self.progress_s),
        ):
            if not (value > 0 and math.isfinite(value)):
                out.append(f"{name} must be > 0")
        if not (self.ramp_s >= 0 and self.drain_s >= 0):
            out.append("--ramp and --drain must be >= 0")
        if not 1 <= self.in_flight <= 64:
            out.append("--in-flight must be 1..64")
        if self.tls and self.broker_ca is None:
            out.append("a TLS broker needs --broker-ca")
        return out


def gateway_ids(prefix: str, n: int) -> list[str]:
    """``<prefix>-0001`` … (at least 4 digits, more when ``n`` needs them)."""
    width = max(4, len(str(n)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, n + 1)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


# -- identities ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimIdentity:
    gateway_id: str
    certified: CertifiedKey
    key_path: Path
    cert_path: Path

    @property
    def key(self) -> Any:  # GatewaySigner for wire.envelope.seal
        return self.certified.key

    def cert_pem(self) -> bytes:
        return self.certified.cert_pem()


def load_issuer(key: Path | None, cert: Path | None, state_dir: Path, now: datetime) -> tuple[CertifiedKey, Path]:
    """The CA that issues the simulated gateways' certificates, and the path of its certificate:
    the one given, or a throwaway one in ``state_dir`` (``sim-ca.key.pem``, ``sim-ca.pem``),
    created once and reused."""
    if (key is None) != (cert is None):
        raise ValueError("--ca-key and --ca-cert go together")
    if key is not None and cert is not None:
        try:
            return load_certified_key(key, cert), cert
        except ProvisioningError as exc:
            raise OperatorActionRequired(f"cannot load the CA: {exc}", "check --ca-key and --ca-cert") from exc
    ca_key, ca_cert = state_dir / "sim-ca.key.pem", state_dir / "sim-ca.pem"
    if ca_key.exists() and ca_cert.exists():
        try:
            return load_certified_key(ca_key, ca_cert), ca_cert
        except ProvisioningError as exc:
            raise OperatorActionRequired(f"cannot load {ca_cert}: {exc}", "remove it or the state dir") from exc
    ca = create_ca("station-edge simulate CA", now=now - CERT_BACKDATE, days=CERT_DAYS)
    ca.write(ca_key, ca_cert)
    return ca, ca_cert


def load_identities(ids: Sequence[str], issuer: CertifiedKey, directory: Path, now: datetime) -> list[SimIdentity]:
    """A key and certificate per gateway in ``directory`` (``<id>.key.pem``, ``<id>.cert.pem``),
    issued by ``issuer``; existing ones are reused when ``issuer`` signed them."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = []
    for gid in ids:
        key_path, cert_path = directory / f"{gid}.key.pem", directory / f"{gid}.cert.pem"
        certified = None
        if key_path.exists() and cert_path.exists():
            try:
                certified = load_certified_key(key_path, cert_path)
            except ProvisioningError:
                certified = None
            if certified is not None and not verify_issued_by(certified.cert, issuer.cert):
                certified = None
        if certified is None:
            certified = issue(issuer, gid, now=now - CERT_BACKDATE, days=CERT_DAYS)
            certified.write(key_path, cert_path)
        out.append(SimIdentity(gid, certified, key_path, cert_path))
    return out


# -- one gateway ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    batch_id: str
    payload: bytes
    count: int
    first_sent: float  # monotonic
    sent: float
    attempts: int = 1


@dataclass(slots=True)
class _Gateway:
    index: int
    ident: SimIdentity
    province: str
    client: mqtt.Client
    vitals: tuple[tuple[str, str, Vital], ...]  # (device id, format, vital), one entry per reading slot
    up_topic: str
    status_topic: str
    ack_topic: str
    rng: random.Random
    seq: int = 0
    slot: int = 0
    carry: float = 0.0
    last_gen: float = 0.0
    pending: list[Reading] = field(default_factory=list)
    oldest_pending: float | None = None
    in_flight: dict[str, _Batch] = field(default_factory=dict)
    batch_no: int = 0
    connected: bool = False
    connecting: bool = False
    ever_connected: bool = False
    failures: int = 0
    sock: Any = None
    last_ack_at: datetime | None = None
    synced: int = 0
    stopping: bool = False

    @property
    def gateway_id(self) -> str:
        return self.ident.gateway_id


@dataclass(slots=True)
class SimSummary:
    """What a run did (``to_json`` for ``--json``)."""

    gateways: int = 0
    connected: int = 0  # connected at the end of the run (before the clean stop)
    ever_connected: int = 0
    connects: int = 0
    connect_failures: int = 0
    refused: int = 0  # CONNACK with a failure code (bad certificate, ACL, ...)
    disconnects: int = 0
    readings_generated: int = 0
    readings_acked: int = 0  # readings of batches the hub acked ok (each batch once)
    readings_unacked: int = 0  # generated, not acked at the end
    hub_stored: int = 0  # sum of the acks' stored counts
    hub_duplicates: int = 0  # sum of the acks' duplicates counts (re-sends)
    batches_sent: int = 0
    batches_acked: int = 0
    batches_resent: int = 0
    batches_rejected: int = 0
    acks_ignored: int = 0  # not verifiable, malformed, or for no batch in flight
    heartbeats: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time over the run (all threads)
    rss_mib: float = 0.0  # peak resident memory of this process
    lag_s: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, object]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        lag = self.lag_s
        return {
            "gateways": self.gateways,
            "connected": self.connected,
            "ever_connected": self.ever_connected,
            "connects": self.connects,
            "connect_failures": self.connect_failures,
            "refused": self.refused,
            "disconnects": self.disconnects,
            "readings_generated": self.readings_generated,
            "readings_acked": self.readings_acked,
            "readings_unacked": self.readings_unacked,
            "hub_stored": self.hub_stored,
            "hub_duplicates": self.hub_duplicates,
            "batches_sent": self.batches_sent,
            "batches_acked": self.batches_acked,
            "batches_resent": self.batches_resent,
            "batches_rejected": self.batches_rejected,
            "acks_ignored": self.acks_ignored,
            "heartbeats": self.heartbeats,
            "elapsed_s": round(self.elapsed_s, 3),
            "cpu_s": round(self.cpu_s, 2),
            "rss_mib": round(self.rss_mib, 1),
            "readings_per_s": round(self.readings_acked / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0,
            "lag_p50_s": r(percentile(lag, 0.50)),
            "lag_p90_s": r(percentile(lag, 0.90)),
            "lag_p99_s": r(percentile(lag, 0.99)),
            "lag_max_s": r(max(lag) if lag else None),
            "lag_mean_s": r(statistics.fmean(lag) if lag else None),
        }

    def line(self) -> str:
        j = self.to_json()
        return " ".join(f"{k}={v}" for k, v in j.items())


# -- the simulator -------------------------------------------------------------------------------


class Simulator:
    """Run :meth:`run` (blocks, one thread); :meth:`stop` from any thread (a signal handler)
    ends it cleanly: no new readings, the last ones sent, acks awaited up to ``drain_s``, an
    offline heartbeat and a DISCONNECT per gateway. A second :meth:`stop` skips the drain."""

    def __init__(
        self,
        settings: SimSettings,
        identities: Sequence[SimIdentity],
        hub: HubPublicKeys,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if len(identities) != settings.gateways:
            raise ValueError("one identity per gateway")
        self.s = settings
        self.hub = hub
        self.clock = clock
        self.mono = monotonic
        self.progress = progress
        self.summary = SimSummary(gateways=settings.gateways)
        self._sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._tick = 0
        self._stop_requests = 0
        self._rng = random.Random(settings.seed)
        self._pending_read: set[int] = set()
        self._closing = False  # the clean stop's last heartbeats and DISCONNECTs: no reconnects
        # Reading sequences start at the run's start in microseconds since the epoch: every run's
        # uids are new to the hub (a reading uid is unique for ever), with no state to keep.
        start = clock()
        self.seq_base = int(start.timestamp() * 1_000_000)
        self.run_id = format(self.seq_base, "x")
        self.gateways = [self._make_gateway(i, ident) for i, ident in enumerate(identities)]
        for g in self.gateways:
            g.seq = self.seq_base
        self._by_index = {g.index: g for g in self.gateways}

    # -- construction ----------------------------------------------------------------------------

    def _make_gateway(self, i: int, ident: SimIdentity) -> _Gateway:
        s = self.s
        province = s.provinces[i % len(s.provinces)]
        gid = ident.gateway_id
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gid, protocol=MQTTProtocolVersion.MQTTv5)
        if s.tls:
            assert s.broker_ca is not None
            try:
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(s.broker_ca))
                ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
            except (OSError, ssl.SSLError) as exc:
                raise OperatorActionRequired(
                    f"cannot set up TLS for {gid}: {exc}", "check --broker-ca and the state dir"
                ) from exc
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            c.tls_set_context(ctx)
        status_topic = topic(province, gid, "status")
        c.will_set(status_topic, OFFLINE_WILL, qos=1, retain=True)
        c.max_inflight_messages_set(s.in_flight + 4)
        c.max_queued_messages_set(0)
        vitals = tuple(
            (f"{kind}-{d + 1}", fmt, v)
            for d in range(s.devices)
            for kind, fmt, group in (DEVICE_KINDS[d % len(DEVICE_KINDS)],)
            for v in group
        )
        g = _Gateway(
            index=i,
            ident=ident,
            province=province,
            client=c,
            vitals=vitals,
            up_topic=topic(province, gid, "up"),
            status_topic=status_topic,
            ack_topic=topic(province, gid, "ack"),
            rng=random.Random(s.seed * 1_000_003 + i),
        )
        c.user_data_set(g)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        return g

    # -- timers ----------------------------------------------------------------------------------

    def _at(self, due: float, fn: Callable[[], None]) -> None:
        self._tick += 1
        heapq.heappush(self._timers, (due, self._tick, fn))

    def _run_due(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            fn()

    # -- paho socket callbacks (loop thread) -------------------------------------------------------

    def _on_socket_open(self, client: mqtt.Client, g: _Gateway, sock: Any) -> None:
        g.sock = sock
        self._sel.register(sock, selectors.EVENT_READ, g.index)

    def _on_socket_close(self, client: mqtt.Client, g: _Gateway, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)
        self._pending_read.discard(g.index)
        g.sock = None

    def _on_register_write(self, client: mqtt.Client, g: _Gateway, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, g.index)

    def _on_unregister_write(self, client: mqtt.Client, g: _Gateway, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(sock, selectors.EVENT_READ, g.index)

    # -- paho MQTT callbacks (loop thread) ---------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, g: _Gateway, flags: Any, rc: ReasonCode, props: Any) -> None:
        g.connecting = False
        if rc.is_failure:
            self.summary.refused += 1
            log.warning("event=sim_refused gateway=%s reason=%r", g.gateway_id, str(rc))
            return
        g.connected = True
        g.failures = 0
        self.summary.connects += 1
        if not g.ever_connected:
            g.ever_connected = True
            self.summary.ever_connected += 1
        client.subscribe(g.ack_topic, qos=1)
        self._heartbeat(g)
        self._pump(g, force=g.stopping)

    def _on_disconnect(self, client: mqtt.Client, g: _Gateway, flags: Any, rc: ReasonCode, props: Any) -> None:
        was, before_connack = g.connected, g.connecting
        g.connected = False
        g.connecting = False
        if self._closing:
            return
        if was:
            self.summary.disconnects += 1
        elif before_connack:  # the broker closed before its CONNACK (a TLS alert: certificate refused)
            self.summary.connect_failures += 1
        self._schedule_reconnect(g)

    def _on_message(self, client: mqtt.Client, g: _Gateway, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = decode_ack(bytes(msg.payload), self.hub.signing)
        except WireError:
            self.summary.acks_ignored += 1
            return
        batch = g.in_flight.get(ack.batch_id)
        if batch is None or ack.gateway_id != g.gateway_id:
            self.summary.acks_ignored += 1
            return
        if ack.status != "ok":
            self.summary.batches_rejected += 1
            log.warning("event=sim_batch_rejected gateway=%s reason=%s", g.gateway_id, ack.reason)
            return  # left in flight: re-sent after the ack timeout, like a pending batch
        del g.in_flight[ack.batch_id]
        self.summary.lag_s.append(self.mono() - batch.first_sent)
        self.summary.batches_acked += 1
        self.summary.readings_acked += batch.count
        self.summary.hub_stored += ack.stored
        self.summary.hub_duplicates += ack.duplicates
        g.synced += batch.count
        g.last_ack_at = self.clock()
        self._pump(g, force=g.stopping)

    # -- connecting --------------------------------------------------------------------------------

    def _connect(self, g: _Gateway) -> None:
        if self._closing or g.connected or g.connecting:
            return
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.s.session_expiry_s
        g.connecting = True
        try:
            rc = g.client.connect(
                self.s.host, self.s.port, keepalive=self.s.keepalive_s, clean_start=False, properties=props
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            g.connecting = False
            self.summary.connect_failures += 1
            log.debug("event=sim_connect_failed gateway=%s error=%s", g.gateway_id, type(exc).__name__)
            self._schedule_reconnect(g)
            return
        if rc != mqtt.MQTT_ERR_SUCCESS:
            g.connecting = False
            self.summary.connect_failures += 1
            self._schedule_reconnect(g)

    def _schedule_reconnect(self, g: _Gateway) -> None:
        if self._closing:
            return
        g.failures += 1
        cap = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(g.failures, 10))
        self._at(self.mono() + g.rng.uniform(RECONNECT_MIN_S / 2, cap), lambda: self._connect(g))

    # -- readings and batches ----------------------------------------------------------------------

    def _generate(self, g: _Gateway, now: float) -> None:
        """The readings the station's devices measured since the last call, at ``rate``/s."""
        elapsed = max(0.0, now - g.last_gen)
        g.last_gen = now
        expected = self.s.rate * elapsed + g.carry
        n = int(expected)
        g.carry = expected - n
        if n <= 0:
            return
        wall = self.clock()
        for k in range(n):
            device, fmt, vital = g.vitals[g.slot % len(g.vitals)]
            g.slot += 1
            g.seq += 1
            mean, spread = _VALUES.get(vital, (1.0, 0.1))
            spec = VITALS[vital]
            value = round(min(spec.high, max(spec.low, g.rng.gauss(mean, spread))), spec.decimals)
            at = wall - timedelta(seconds=elapsed * (n - 1 - k) / n)
            g.pending.append(
                Reading(
                    uid=f"{g.gateway_id}:{g.seq}",
                    seq=g.seq,
                    vital=vital,
                    value=float(value),
                    unit=spec.unit,
                    measured_at=at,
                    received_at=at,
                    device_id=device,
                    source_format=fmt,
                    clock_from_device=False,
                )
            )
        if g.oldest_pending is None:
            g.oldest_pending = now - elapsed * (n - 1) / n
        self.summary.readings_generated += n

    def _flush_timer(self, g: _Gateway) -> None:
        if g.stopping:
            return
        now = self.mono()
        self._generate(g, now)
        self._pump(g, force=False)
        self._at(now + self.s.batch_age_s * g.rng.uniform(0.9, 1.1), lambda: self._flush_timer(g))

    def _pump(self, g: _Gateway, *, force: bool) -> None:
        """Send batches while the window allows: full ones, or one whose oldest reading waited
        ``batch_age_s`` (all that is left when ``force``)."""
        s = self.s
        now = self.mono()
        while g.connected and g.pending and len(g.in_flight) < s.in_flight:
            due = (
                force
                or len(g.pending) >= s.batch_max
                or (g.oldest_pending is not None and now - g.oldest_pending >= s.batch_age_s * 0.85)
            )
            if not due:
                return
            chunk, g.pending = g.pending[: s.batch_max], g.pending[s.batch_max :]
            g.oldest_pending = now if g.pending else None
            g.batch_no += 1
            batch_id = f"{g.gateway_id}-{self.run_id}-{g.batch_no}"
            sealed = seal_batch(
                ReadingBatch(batch_id=batch_id, gateway_id=g.gateway_id, sent_at=self.clock(), readings=tuple(chunk)),
                hub_sealing_public=self.hub.sealing,
                gateway=g.ident,
            )
            g.in_flight[batch_id] = _Batch(batch_id, sealed, len(chunk), now, now)
            g.client.publish(g.up_topic, sealed, qos=1)
            self.summary.batches_sent += 1

    def _check_acks(self) -> None:
        """Re-send (same id, same bytes) every batch unanswered for ``ack_timeout_s``."""
        now = self.mono()
        for g in self.gateways:
            if not g.connected:
                continue
            for b in g.in_flight.values():
                if now - b.sent >= self.s.ack_timeout_s:
                    b.sent = now
                    b.attempts += 1
                    g.client.publish(g.up_topic, b.payload, qos=1)
                    self.summary.batches_resent += 1

    # -- heartbeats --------------------------------------------------------------------------------

    def heartbeat_document(self, g: _Gateway, *, online: bool) -> dict[str, object]:
        """The status document, with the keys of ``edge_agent.sync.heartbeat`` that the fleet view reads."""
        now = self.clock()
        mono = self.mono()
        pending = len(g.pending) + sum(b.count for b in g.in_flight.values())
        oldest = (
            min(
                [mono - b.first_sent for b in g.in_flight.values()]
                + ([mono - g.oldest_pending] if g.oldest_pending else [])
            )
            if pending
            else None
        )
        cert = g.ident.certified.cert
        return {
            "online": online,
            "sent_at": now.isoformat(),
            "gateway_id": g.gateway_id,
            "province": g.province,
            "agent_version": AGENT_VERSION,
            "backlog": {
                "pending": pending,
                "oldest_pending_age_s": None if oldest is None else round(max(0.0, oldest), 1),
                "dead_letter": 0,
            },
            "store": {"space_level": "ok", "disk_full": False, "dropped": {}},
            "devices": [
                {"id": dev, "format": fmt, "state": "streaming", "last_data_at": now.isoformat()}
                for dev, fmt in dict.fromkeys((d, f) for d, f, _ in g.vitals)
            ],
            "scoring": {"available": True, "open_alerts": 0, "models": []},
            "sync": {
                "state": "connected" if g.connected else "disconnected",
                "last_ack_at": None if g.last_ack_at is None else g.last_ack_at.isoformat(),
                "batches_in_flight": len(g.in_flight),
                "synced": g.synced,
                "rejected_batches": 0,
            },
            "clock": {"ntp": True, "offset_s": 0.0},
            "certificate": {
                "not_after": cert.not_valid_after_utc.isoformat(),
                "days_left": round((cert.not_valid_after_utc - now).total_seconds() / 86400, 1),
                "serial": format(cert.serial_number, "x"),
            },
        }

    def _heartbeat(self, g: _Gateway, *, online: bool = True) -> None:
        if not g.connected:
            return
        g.client.publish(
            g.status_topic, encode_heartbeat(self.heartbeat_document(g, online=online)), qos=1, retain=True
        )
        self.summary.heartbeats += 1

    def _heartbeat_timer(self, g: _Gateway) -> None:
        if g.stopping:
            return
        self._heartbeat(g)
        self._at(self.mono() + self.s.heartbeat_s * g.rng.uniform(0.95, 1.05), lambda: self._heartbeat_timer(g))

    # -- the loop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """End the run: the first call drains, a second one does not. Safe from a signal handler
        (no lock: the handler runs on the loop's own thread, which may be inside any call) and
        from another thread (one integer, written only here)."""
        self._stop_requests += 1

    def _stops(self) -> int:
        return self._stop_requests

    def _poll(self, timeout: float) -> None:
        if self._pending_read:
            timeout = 0.0
        events = self._sel.select(timeout) if self._sel.get_map() else _sleep(timeout)
        ready = {key.data: mask for key, mask in events}
        for idx in self._pending_read:
            ready[idx] = ready.get(idx, 0) | selectors.EVENT_READ
        self._pending_read = set()
        for idx, mask in ready.items():
            g = self._by_index[idx]
            c = g.client
            if mask & selectors.EVENT_WRITE:
                c.loop_write()
            if mask & selectors.EVENT_READ:
                c.loop_read()
                sock = g.sock
                if isinstance(sock, ssl.SSLSocket) and sock.pending():
                    self._pending_read.add(idx)

    def _misc(self) -> None:
        for g in self.gateways:
            if g.sock is not None:
                g.client.loop_misc()
        self._at(self.mono() + MISC_EVERY_S, self._misc)

    def _acks_timer(self) -> None:
        self._check_acks()
        self._at(self.mono() + ACK_CHECK_EVERY_S, self._acks_timer)

    def _report(self, start: float) -> None:
        if self.progress is not None:
            sm = self.summary
            lag = sm.lag_s[-2000:]
            p50, p99 = percentile(lag, 0.5), percentile(lag, 0.99)
            self.progress(
                f"event=sim_progress t_s={self.mono() - start:.0f} connected={self.connected_count()}/{sm.gateways} "
                f"generated={sm.readings_generated} acked={sm.readings_acked} batches_in_flight="
                f"{sum(len(g.in_flight) for g in self.gateways)} heartbeats={sm.heartbeats} "
                f"lag_p50_s={_fmt(p50)} lag_p99_s={_fmt(p99)} connect_failures={sm.connect_failures}"
            )
        self._at(self.mono() + self.s.progress_s, lambda: self._report(start))

    def connected_count(self) -> int:
        return sum(1 for g in self.gateways if g.connected)

    def unacked(self) -> int:
        return sum(len(g.pending) + sum(b.count for b in g.in_flight.values()) for g in self.gateways)

    def run(self) -> SimSummary:
        s = self.s
        start = self.mono()
        cpu0 = time.process_time()
        for g in self.gateways:
            g.last_gen = start
            delay = self._rng.uniform(0, s.ramp_s) if s.ramp_s > 0 else 0.0
            self._at(start + delay, functools.partial(self._connect, g))
            self._at(start + delay + s.batch_age_s * g.rng.uniform(0.5, 1.0), functools.partial(self._flush_timer, g))
            self._at(
                start + delay + s.heartbeat_s * g.rng.uniform(0.5, 1.0), functools.partial(self._heartbeat_timer, g)
            )
        self._at(start + MISC_EVERY_S, self._misc)
        self._at(start + ACK_CHECK_EVERY_S, self._acks_timer)
        self._at(start + s.progress_s, lambda: self._report(start))
        end = start + s.duration_s
        try:
            while self._stops() == 0 and self.mono() < end:
                self._step(end)
            self._finish(start)
        finally:
            self._close_all()
        self.summary.elapsed_s = self.mono() - start
        self.summary.cpu_s = time.process_time() - cpu0
        self.summary.rss_mib = _peak_rss_mib()
        return self.summary

    def _step(self, end: float) -> None:
        now = self.mono()
        self._run_due(now)
        nxt = self._timers[0][0] if self._timers else now + 0.5
        self._poll(max(0.0, min(nxt, end, now + 0.5) - now))

    def _finish(self, start: float) -> None:
        """Stop generating, send what is left, wait for the acks (up to ``drain_s``), then a last
        offline heartbeat and a DISCONNECT per gateway."""
        now = self.mono()
        self.summary.connected = self.connected_count()
        for g in self.gateways:
            self._generate(g, now)
            g.stopping = True  # no more readings or periodic heartbeats; reconnects go on
        deadline = now + (self.s.drain_s if self._stops() < 2 else 0.0)
        for g in self.gateways:
            self._pump(g, force=True)
        while self.mono() < deadline and self._stops() < 2 and self.unacked() > 0:
            self._step(deadline)
        self.summary.readings_unacked = self.unacked()
        self._closing = True
        for g in self.gateways:
            self._heartbeat(g, online=False)
            if g.sock is not None:
                g.client.disconnect()
        close_by = self.mono() + 5.0
        while self.mono() < close_by and any(g.sock is not None for g in self.gateways):
            self._poll(0.05)

    def _close_all(self) -> None:
        for g in self.gateways:
            g.stopping = True
            if g.sock is not None:
                with contextlib.suppress(OSError):
                    g.sock.close()
                self._on_socket_close(g.client, g, g.sock)
        self._sel.close()


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sleep(timeout: float) -> list[Any]:
    time.sleep(timeout)
    return []


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


# -- the command line ----------------------------------------------------------------------------

SIMULATE_HELP = """\
Simulate N gateways against a broker (load tests): each with its own key and client certificate
(CN = its gateway id), a retained status heartbeat and a last will, and sealed, signed reading
batches from a few devices at station rates, acknowledged by the hub's workers. One thread
drives every MQTT client. Progress on stderr, a summary at the end (--json: one JSON object on
stdout); Ctrl-C stops cleanly (waits for the last acks up to --drain; a second Ctrl-C at once).
Certificates come from --ca-key/--ca-cert, or from a throwaway CA in the state dir
(sim-ca.pem: the broker's cafile and the hub's --gateway-ca must trust it). Exit 0 when every
reading was acknowledged (and every gateway connected), 1 otherwise.
"""


def register_parser(sub: Any) -> None:
    """``edge-hub simulate`` on the hub's sub-parsers (hub/cli.py)."""
    import argparse

    p = sub.add_parser(
        "simulate",
        help="simulate N gateways (heartbeats, reading batches) against a broker, for load tests",
        description=SIMULATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gateways", type=int, required=True, metavar="N", help="how many gateways")
    p.add_argument(
        "--broker",
        required=True,
        metavar="HOST:PORT",
        help="the broker: HOST:PORT or mqtts://HOST[:PORT] (TLS), mqtt://HOST:PORT (plain, a test broker)",
    )
    p.add_argument(
        "--broker-ca", type=Path, metavar="CA.pem", help="CA bundle the broker's certificate is checked with (TLS)"
    )
    p.add_argument(
        "--hub-keys",
        type=Path,
        required=True,
        metavar="PATH",
        help="the hub's public keys: hub-public.json, or a directory holding it (seal to, verify acks with)",
    )
    p.add_argument("--ca-key", type=Path, metavar="KEY.pem", help="CA key that issues the gateways' certificates")
    p.add_argument("--ca-cert", type=Path, metavar="CERT.pem", help="its certificate (with --ca-key)")
    p.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="keys and certificates of the simulated gateways (reused by the next run; default a fresh temporary one)",
    )
    p.add_argument(
        "--province",
        action="append",
        metavar="P",
        help="province topic segment (repeat: gateways round-robin; default sim)",
    )
    p.add_argument("--prefix", default="sim", metavar="NAME", help="gateway ids NAME-0001, ... (default sim)")
    p.add_argument("--devices", type=int, default=3, metavar="D", help="devices per station (3)")
    p.add_argument("--rate", type=float, default=0.5, metavar="R", help="readings per second per gateway (0.5)")
    p.add_argument("--batch-max", type=int, default=500, metavar="N", help="readings per batch at most (500)")
    p.add_argument(
        "--batch-age", type=float, default=5.0, metavar="S", help="send when the oldest waiting reading is S old (5)"
    )
    p.add_argument("--in-flight", type=int, default=4, metavar="N", help="unacknowledged batches per gateway (4)")
    p.add_argument("--heartbeat", type=float, default=60.0, metavar="S", help="heartbeat every S seconds (60)")
    p.add_argument(
        "--ramp", type=float, metavar="S", help="spread the connects over S seconds (default N/100, 1 to 60)"
    )
    p.add_argument("--duration", type=float, default=60.0, metavar="S", help="run for S seconds (60)")
    p.add_argument("--drain", type=float, default=30.0, metavar="S", help="at the end, wait up to S s for acks (30)")
    p.add_argument(
        "--ack-timeout", type=float, default=60.0, metavar="S", help="re-send a batch unacknowledged for S s (60)"
    )
    p.add_argument("--progress", type=float, default=5.0, metavar="S", help="a progress line every S seconds (5)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (values, jitter)")
    p.add_argument("--json", action="store_true", help="the summary as one JSON object on stdout")


def parse_broker(text: str) -> tuple[str, int, bool]:
    """``HOST:PORT`` or ``mqtts://HOST[:PORT]`` (TLS), ``mqtt://HOST:PORT`` (plain) -> (host, port, tls)."""
    from urllib.parse import urlsplit

    from wire.address import broker_address

    if text.startswith("mqtts://"):
        host, tls_port = broker_address(text)
        return host, tls_port, True
    tls = True
    if text.startswith("mqtt://"):
        tls = False
        text = text[len("mqtt://") :]
    parts = urlsplit(f"//{text}")
    port: int | None
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or port == 0 or parts.path not in ("", "/"):
        raise ValueError(f"--broker {text!r}: give HOST:PORT, mqtts://HOST[:PORT] or mqtt://HOST:PORT")
    return parts.hostname, port, tls


def _hub_public(path: Path) -> HubPublicKeys:
    from provisioning.pki import HUB_PUBLIC_FILE

    target = path / HUB_PUBLIC_FILE if path.is_dir() else path
    try:
        return HubPublicKeys.load(target)
    except ProvisioningError as exc:
        raise OperatorActionRequired(f"cannot load the hub's public keys: {exc}", "check --hub-keys") from exc


def run(args: Any) -> int:
    """``edge-hub simulate`` (exit codes: hub/errors.py)."""
    import json
    import shutil
    import signal
    import sys

    from hub.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

    def usage(message: str) -> int:
        print(f"edge-hub: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        host, port, tls = parse_broker(args.broker)
    except ValueError as exc:
        return usage(str(exc))
    provinces = tuple(args.province or ("sim",))
    from wire.errors import Malformed

    try:
        for prov in provinces:
            topic(prov, "x", "up")
        ids = gateway_ids(args.prefix, max(1, args.gateways))
        topic(provinces[0], ids[-1], "up")
    except Malformed:
        return usage("--province and --prefix: letters, digits, '.', '_', '-' (a topic level)")
    ramp = args.ramp if args.ramp is not None else min(60.0, max(1.0, args.gateways / 100))
    settings = SimSettings(
        gateways=args.gateways,
        host=host,
        port=port,
        tls=tls,
        broker_ca=args.broker_ca,
        provinces=provinces,
        prefix=args.prefix,
        devices=args.devices,
        rate=args.rate,
        batch_max=args.batch_max,
        batch_age_s=args.batch_age,
        in_flight=args.in_flight,
        heartbeat_s=args.heartbeat,
        ramp_s=ramp,
        duration_s=args.duration,
        drain_s=args.drain,
        ack_timeout_s=args.ack_timeout,
        progress_s=args.progress,
        seed=args.seed,
    )
    problems = settings.problems()
    if (args.ca_key is None) != (args.ca_cert is None):
        problems.append("--ca-key and --ca-cert go together")
    if problems:
        return usage("; ".join(problems))
    hub = _hub_public(args.hub_keys)
    throwaway = args.state_dir is None
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="edge-hub-simulate-"))
    try:
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise OperatorActionRequired(f"cannot use --state-dir {state_dir}: {exc}", "check --state-dir") from exc
        now = datetime.now(UTC)
        t = time.monotonic()
        try:
            issuer, issuer_path = load_issuer(args.ca_key, args.ca_cert, state_dir, now)
            identities = load_identities(ids, issuer, state_dir / "gateways", now)
        except OSError as exc:
            raise OperatorActionRequired(f"cannot keep identities in {state_dir}: {exc}", "check --state-dir") from exc
        log.info(
            "event=sim_identities gateways=%d ca=%s seconds=%.1f", len(identities), issuer_path, time.monotonic() - t
        )
        sim = Simulator(settings, identities, hub, progress=lambda line: print(line, file=sys.stderr, flush=True))

        def on_signal(signum: int, frame: object) -> None:
            sim.stop()

        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            summary = sim.run()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
    finally:
        if throwaway:
            shutil.rmtree(state_dir, ignore_errors=True)
    print(f"event=sim_done {summary.line()}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(summary.to_json()), flush=True)
    ok = summary.readings_unacked == 0 and summary.ever_connected == summary.gateways
    return EXIT_OK if ok else EXIT_FAILURE
