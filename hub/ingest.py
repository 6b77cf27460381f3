"""From one MQTT message to a stored batch and the Ack to send back (no MQTT here).

:meth:`Ingestor.process` checks, in this order, and stops at the first failure:

1. the topic parses (``wire.topics``) and its leaf is ``up`` or ``alert``;
2. the envelope opens (``wire.envelope``): format version, the gateway certificate chains to a
   trusted CA and is valid now, its CN equals the envelope's gateway id, the gateway's signature
   is valid, the seal decrypts authentically;
3. the topic's gateway id equals the envelope's (a gateway cannot speak under another's topic)
   and the topic's lane (``up`` → readings, ``alert`` → alerts) equals the envelope's;
4. the plaintext decodes (``wire.messages``), its batch id and gateway id equal the envelope's,
   every reading's uid belongs to that gateway (``<gateway id>:<seq>``) and every value is a
   finite number;
5. the store commits the batch (each uid once).

Only then is an ``ok`` Ack returned (``stored`` and ``duplicates`` counted by the database: a
replayed batch is all duplicates, and acked ok: exactly-once). A batch that fails a check is
never stored, counted in ``rejected_total`` by reason and logged in one key=value line that holds
no payload content; it gets an Ack with status ``rejected`` only when step 2 succeeded (the
gateway is who it says it is), otherwise silence. A store failure is not a rejection: it raises
:class:`hub.errors.StoreError` and the caller retries the message later.

Status heartbeats (``se/v1/{province}/{gateway}/status``, not sealed: no patient data) go to the
fleet registry through :meth:`Ingestor.process_status`.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from cryptography import x509

from hub.fleet import seen_at
from hub.store import HubStore, IngestResult
from provisioning.pki import HubKeys
from wire import envelope as wire_envelope
from wire import messages as wire_messages
from wire import topics as wire_topics
from wire.errors import WireError

log = logging.getLogger(__name__)

__all__ = ["LANE_OF_LEAF", "IngestMetrics", "Ingestor", "Outcome"]

LANE_OF_LEAF = {"up": "readings", "alert": "alerts"}
# ingest lag histogram buckets, seconds (a live link: under a second; a drained backlog: hours)
LAG_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0)
_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,80}")


def _safe(text: object) -> str:
    """An identifier fit for a log line (no spaces, no control characters, bounded), else ``?``."""
    s = str(text)
    return s if _SAFE.fullmatch(s) else "?"


@dataclass(slots=True)
class IngestMetrics:
    """Counters of one ingestor, thread-safe; :meth:`samples` names them the Prometheus way."""

    batches_total: Counter[tuple[str, str]] = field(default_factory=Counter)  # (lane, outcome)
    readings_stored_total: int = 0
    readings_duplicate_total: int = 0
    alerts_stored_total: int = 0
    alerts_duplicate_total: int = 0
    rejected_total: Counter[str] = field(default_factory=Counter)  # reason -> count
    status_total: int = 0
    status_rejected_total: Counter[str] = field(default_factory=Counter)
    store_errors_total: int = 0
    # per lane: bucket counts (LAG_BUCKETS_S, then +Inf), sum, count of (commit time - sent_at)
    lag_buckets: dict[str, list[int]] = field(default_factory=dict)
    lag_sum_s: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def stored(self, lane: str, result: IngestResult, lag_s: float | None = None) -> None:
        """A batch stored; ``lag_s``: seconds from the gateway's ``sent_at`` to the commit."""
        with self._lock:
            if lag_s is not None:
                lag = max(0.0, lag_s)  # a gateway clock ahead of the hub's: no negative lag
                buckets = self.lag_buckets.setdefault(lane, [0] * (len(LAG_BUCKETS_S) + 1))
                buckets[bisect.bisect_left(LAG_BUCKETS_S, lag)] += 1
                self.lag_sum_s[lane] = self.lag_sum_s.get(lane, 0.0) + lag
            self.batches_total[(lane, "ok")] += 1
            if lane == "alerts":
                self.alerts_stored_total += result.stored
                self.alerts_duplicate_total += result.duplicates
            else:
                self.readings_stored_total += result.stored
                self.readings_duplicate_total += result.duplicates

    def rejected(self, lane: str, reason: str) -> None:
        with self._lock:
            self.batches_total[(lane, "rejected")] += 1
            self.rejected_total[reason] += 1

    def status(self, reason: str | None) -> None:
        with self._lock:
            if reason is None:
                self.status_total += 1
            else:
                self.status_rejected_total[reason] += 1

    def store_error(self) -> None:
        with self._lock:
            self.store_errors_total += 1

    def samples(self) -> Iterator[tuple[str, dict[str, str], int]]:
        """(metric name, labels, value) triples; labels have bounded cardinality (no gateway ids)."""
        with self._lock:
            for (lane, outcome), n in sorted(self.batches_total.items()):
                yield "hub_batches_total", {"lane": lane, "outcome": outcome}, n
            yield "hub_readings_stored_total", {}, self.readings_stored_total
            yield "hub_readings_duplicate_total", {}, self.readings_duplicate_total
            yield "hub_alerts_stored_total", {}, self.alerts_stored_total
            yield "hub_alerts_duplicate_total", {}, self.alerts_duplicate_total
            for reason, n in sorted(self.rejected_total.items()):
                yield "hub_rejected_total", {"reason": reason}, n
            yield "hub_status_total", {}, self.status_total
            for reason, n in sorted(self.status_rejected_total.items()):
                yield "hub_status_rejected_total", {"reason": reason}, n
            yield "hub_store_errors_total", {}, self.store_errors_total

    def lag_histograms(self) -> list[tuple[str, list[tuple[str, int]], float]]:
        """Per lane: cumulative (le, count) buckets ending with ``+Inf``, and the sum, of the
        batches' ingest lag (commit time minus the gateway's ``sent_at``: broker queueing, the
        hub's backlog and clock offset included)."""
        with self._lock:
            out: list[tuple[str, list[tuple[str, int]], float]] = []
            for lane in sorted(self.lag_buckets):
                running = 0
                cumulative: list[tuple[str, int]] = []
                for le, n in zip((*(f"{b:g}" for b in LAG_BUCKETS_S), "+Inf"), self.lag_buckets[lane], strict=True):
                    running += n
                    cumulative.append((le, running))
                out.append((lane, cumulative, self.lag_sum_s[lane]))
            return out

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, labels, value in self.samples():
            if labels:
                key = ",".join(f"{k}={v}" for k, v in labels.items())
                bucket = out.setdefault(name, {})
                assert isinstance(bucket, dict)
                bucket[key] = value
            else:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: ``kind`` is ``stored``, ``rejected`` or ``ignored``; ``ack``
    (with ``ack_topic``) is what to publish, or None for silence."""

    kind: str
    lane: str
    gateway_id: str | None
    batch_id: str | None
    ack: wire_messages.Ack | None = None
    ack_topic: str | None = None
    reason: str = ""
    result: IngestResult | None = None


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_B = TypeVar("_B", wire_messages.ReadingBatch, wire_messages.AlertBatch)


def _decoded(opened: wire_envelope.Opened, decode: Callable[[bytes], _B]) -> _B:
    """Decode an authenticated batch; its inner ids must be the envelope's."""
    try:
        batch = decode(opened.plaintext)
    except WireError as exc:
        raise _Reject(_reason(exc, "malformed")) from exc
    if batch.batch_id != opened.batch_id:
        raise _Reject("batch_id_mismatch")
    if batch.gateway_id != opened.gateway_id:
        raise _Reject("gateway_mismatch")
    return batch


def _reason(exc: Exception, default: str) -> str:
    reason = getattr(exc, "reason", "") or default
    return _safe(reason)


class Ingestor:
    """Checks, opens, decodes and stores uplink messages; see the module docstring.

    ``clock`` gives the time certificates are checked at and ingest times are recorded with."""

    def __init__(
        self,
        store: HubStore,
        hub_keys: HubKeys,
        ca_certs: Sequence[x509.Certificate],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.store = store
        self._keys = hub_keys
        self._ca_certs = list(ca_certs)
        self._clock = clock
        self.metrics = metrics if metrics is not None else IngestMetrics()

    def handle(self, topic: str, payload: bytes) -> wire_messages.Ack | None:
        """The Ack to publish for an uplink message (None: publish nothing). Raises
        :class:`hub.errors.StoreError` when the store failed (retry the message later)."""
        return self.process(topic, payload).ack

    def sign(self, ack: wire_messages.Ack) -> bytes:
        """The Ack as its signed wire payload (the hub's Ed25519 key)."""
        return wire_messages.encode_ack(ack, self._keys.signing)

    # -- uplink ---------------------------------------------------------------------------------

    def process(self, topic: str, payload: bytes) -> Outcome:
        try:
            ref = wire_topics.parse_topic(topic)
        except WireError as exc:
            return self._reject("?", None, None, None, _reason(exc, "bad_topic"), len(payload))
        lane = LANE_OF_LEAF.get(ref.leaf)
        if lane is None:
            return self._reject(ref.leaf, ref.gateway_id, None, None, "unexpected_topic", len(payload))
        try:
            opened = wire_envelope.open_envelope(
                payload,
                hub_sealing_private=self._keys.sealing,
                ca_certs=self._ca_certs,
                now=self._clock(),
            )
        except WireError as exc:
            return self._reject(lane, ref.gateway_id, None, None, _reason(exc, "malformed"), len(payload))
        # From here the sender is authenticated: opened.gateway_id signed this batch.
        ack_topic = wire_topics.topic(ref.province, opened.gateway_id, "ack")
        try:
            if opened.gateway_id != ref.gateway_id:
                raise _Reject("topic_mismatch")
            if opened.lane != lane:
                raise _Reject("lane_mismatch")
            result, sent_at = self._store_readings(opened) if lane == "readings" else self._store_alerts(opened)
        except _Reject as rej:
            return self._reject(lane, ref.gateway_id, opened, ack_topic, rej.reason, len(payload))
        self.metrics.stored(lane, result, (self._clock() - sent_at).total_seconds())
        ack = wire_messages.Ack(
            batch_id=opened.batch_id,
            gateway_id=opened.gateway_id,
            lane=lane,
            status="ok",
            stored=result.stored,
            duplicates=result.duplicates,
            acked_at=self._clock(),
        )
        log.info(
            "event=batch_stored gateway=%s lane=%s batch=%s stored=%d duplicates=%d",
            _safe(opened.gateway_id),
            lane,
            _safe(opened.batch_id),
            result.stored,
            result.duplicates,
        )
        return Outcome("stored", lane, opened.gateway_id, opened.batch_id, ack, ack_topic, result=result)

    def _store_readings(self, opened: wire_envelope.Opened) -> tuple[IngestResult, datetime]:
        batch = _decoded(opened, wire_messages.decode_readings)
        prefix = opened.gateway_id + ":"
        for r in batch.readings:
            if not r.uid.startswith(prefix):
                raise _Reject("foreign_uid")
            if not math.isfinite(r.value):
                raise _Reject("bad_value")
        try:
            result = self.store.ingest(opened.gateway_id, opened.batch_id, batch.readings, now=self._clock())
        except Exception:
            self.metrics.store_error()
            raise
        return result, batch.sent_at

    def _store_alerts(self, opened: wire_envelope.Opened) -> tuple[IngestResult, datetime]:
        batch = _decoded(opened, wire_messages.decode_alerts)
        try:
            result = self.store.ingest_alerts(opened.gateway_id, opened.batch_id, batch.alerts, now=self._clock())
        except Exception:
            self.metrics.store_error()
            raise
        return result, batch.sent_at

    def _reject(
        self,
        lane: str,
        topic_gateway: str | None,
        opened: wire_envelope.Opened | None,
        ack_topic: str | None,
        reason: str,
        size: int,
    ) -> Outcome:
        self.metrics.rejected(lane, reason)
        log.warning(
            "event=batch_rejected reason=%s lane=%s topic_gateway=%s signer=%s batch=%s bytes=%d authenticated=%s",
            reason,
            _safe(lane),
            _safe(topic_gateway) if topic_gateway is not None else "-",
            _safe(opened.gateway_id) if opened else "-",
            _safe(opened.batch_id) if opened else "-",
            size,
            "yes" if opened else "no",
        )
        if opened is None or ack_topic is None:
            return Outcome("rejected", lane, topic_gateway, None, reason=reason)
        ack = wire_messages.Ack(
            batch_id=opened.batch_id,
            gateway_id=opened.gateway_id,
            lane=lane if lane in ("readings", "alerts") else opened.lane,
            status="rejected",
            reason=reason,
            acked_at=self._clock(),
        )
        return Outcome("rejected", lane, opened.gateway_id, opened.batch_id, ack, ack_topic, reason=reason)

    # -- status ---------------------------------------------------------------------------------

    def process_status(self, topic: str, payload: bytes, *, retained: bool = False, duplicate: bool = False) -> Outcome:
        """Record a gateway's heartbeat (or its last will) in the fleet registry. ``retained``: the
        broker's stored copy, replayed to a new subscription (it may be old: see
        :func:`hub.fleet.seen_at`); ``duplicate``: a redelivery (an older copy is ignored)."""
        try:
            ref = wire_topics.parse_topic(topic)
            if ref.leaf != "status":
                raise _Reject("unexpected_topic")
            if not payload:
                return Outcome("ignored", "status", ref.gateway_id, None, reason="empty")  # a retained clear
            doc = wire_messages.decode_heartbeat(payload)
        except _Reject as rej:
            return self._status_rejected(topic, rej.reason)
        except WireError as exc:
            return self._status_rejected(topic, _reason(exc, "malformed"))
        try:
            now = self._clock()
            seen = seen_at(doc, now, retained=retained)
            self.store.record_status(
                ref.gateway_id, doc, province=ref.province, now=now, seen=seen, replay=retained or duplicate
            )
        except Exception:
            self.metrics.store_error()
            raise
        self.metrics.status(None)
        log.debug("event=status_recorded gateway=%s online=%s", _safe(ref.gateway_id), bool(doc.get("online")))
        return Outcome("stored", "status", ref.gateway_id, None)

    def _status_rejected(self, topic: str, reason: str) -> Outcome:
        self.metrics.status(reason)
        parts = topic.split("/")
        gateway = parts[3] if len(parts) > 3 else "?"
        log.warning("event=status_rejected reason=%s topic_gateway=%s", reason, _safe(gateway))
        return Outcome("rejected", "status", None, None, reason=reason)
