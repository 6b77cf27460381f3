"""``/metrics`` of an ``edge-hub serve`` worker in the Prometheus text format (prometheus-client).

Nothing is counted twice: a :class:`HubCollector` reads the counters the ingestor and the worker
already keep (``IngestMetrics``, ``WorkerMetrics``) and the fleet registry at each scrape.

* counters, bounded labels (no gateway id): ``hub_batches_total{lane,outcome}``,
  ``hub_readings_stored_total`` (the ingest rate: ``rate(hub_readings_stored_total[5m])``),
  ``hub_rejected_total{reason}`` (rejected batches), ``hub_status_total``, ``hub_worker_*_total``,
  ``hub_renewals_issued_total``;
* ``hub_ingest_lag_seconds{lane}``, a histogram of commit time minus the batch's ``sent_at``;
* worker gauges: ``hub_worker_queue_depth`` (messages received, not yet stored: the ingest lag
  in messages), ``hub_worker_connected``;
* fleet gauges (from the shared store, so every worker shows the same: aggregate with ``max``):
  ``hub_fleet_gateways{province,state}``, ``hub_fleet_data_at_risk_gateways{province}``,
  ``hub_fleet_cert_expiring_gateways{province}``, ``hub_fleet_pending_readings{province}``, and
  per gateway ``hub_gateway_last_seen_timestamp_seconds``, ``hub_gateway_online``,
  ``hub_gateway_oldest_pending_seconds``, ``hub_gateway_cert_expiry_timestamp_seconds``
  (labels ``gateway``, ``province``; a gateway id is not patient data), ``hub_fleet_store_up``.

:func:`fleet_samples` and :func:`families` are pure; :class:`MetricsServer` is the HTTP part.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from hub.errors import StoreError
from hub.fleet import FleetRecord

log = logging.getLogger(__name__)

__all__ = ["HubCollector", "MetricsServer", "Sample", "families", "fleet_samples", "parse_listen"]

Sample = tuple[str, dict[str, str], float]

HELP = {
    "hub_batches_total": "batches processed, by lane and outcome (ok, rejected)",
    "hub_readings_stored_total": "readings stored (new uids)",
    "hub_readings_duplicate_total": "readings received again (already stored)",
    "hub_alerts_stored_total": "alert revisions stored",
    "hub_alerts_duplicate_total": "alert revisions not newer than the stored one",
    "hub_rejected_total": "rejected batches, by reason",
    "hub_status_total": "status heartbeats and last wills recorded",
    "hub_status_rejected_total": "status documents rejected, by reason",
    "hub_store_errors_total": "store failures (retried)",
    "hub_renewals_issued_total": "certificates renewed",
    "hub_ingest_lag_seconds": "seconds from a batch's sent_at (gateway clock) to its commit, by lane",
    "hub_worker_queue_depth": "messages received and not yet stored (ingest lag, in messages)",
    "hub_worker_connected": "1 while the worker is connected to the broker",
    "hub_fleet_store_up": "1 when the fleet registry could be read for this scrape",
    "hub_fleet_gateways": "gateways in the fleet registry, by province and state (online, stale, offline)",
    "hub_fleet_data_at_risk_gateways": "gateways with readings pending over the threshold or a full store",
    "hub_fleet_cert_expiring_gateways": "gateways whose certificate expires within the threshold (or expired)",
    "hub_fleet_pending_readings": "readings pending on the gateways (as their last heartbeats said)",
    "hub_gateway_online": "1 when the gateway's last heartbeat said online and it is not stale",
    "hub_gateway_last_seen_timestamp_seconds": "when the gateway's last heartbeat came (Unix time)",
    "hub_gateway_oldest_pending_seconds": "age of the gateway's oldest pending reading, projected to now",
    "hub_gateway_cert_expiry_timestamp_seconds": "the gateway certificate's notAfter (Unix time)",
}

STATES = ("online", "stale", "offline")
LAG = "hub_ingest_lag_seconds"


def fleet_samples(records: Sequence[FleetRecord]) -> list[Sample]:
    """The fleet gauges for the records (pure). Every (province, state) pair that has a gateway
    gets a sample, and every state of every province appears (0 when none), so an alert on
    ``hub_fleet_gateways{state="offline"} > 0`` resolves when the last one comes back."""
    out: list[Sample] = []
    provinces = sorted({r.province or "" for r in records})
    states: Counter[tuple[str, str]] = Counter((r.province or "", r.state) for r in records)
    risk: Counter[str] = Counter()
    certs: Counter[str] = Counter()
    pending: defaultdict[str, int] = defaultdict(int)
    for r in records:
        p = r.province or ""
        risk[p] += "data_at_risk" in r.reasons or "store_full" in r.reasons
        certs[p] += "cert_expiring" in r.reasons or "cert_expired" in r.reasons
        pending[p] += r.backlog_pending or 0
    for p in provinces:
        for s in STATES:
            out.append(("hub_fleet_gateways", {"province": p, "state": s}, float(states[(p, s)])))
        out.append(("hub_fleet_data_at_risk_gateways", {"province": p}, float(risk[p])))
        out.append(("hub_fleet_cert_expiring_gateways", {"province": p}, float(certs[p])))
        out.append(("hub_fleet_pending_readings", {"province": p}, float(pending[p])))
    for r in sorted(records, key=lambda r: r.gateway_id):
        labels = {"gateway": r.gateway_id, "province": r.province or ""}
        out.append(("hub_gateway_online", labels, 1.0 if r.state == "online" else 0.0))
        out.append(("hub_gateway_last_seen_timestamp_seconds", labels, r.last_seen.timestamp()))
        out.append(("hub_gateway_oldest_pending_seconds", labels, r.oldest_pending_age_s or 0.0))
        if r.cert_not_after is not None:
            out.append(("hub_gateway_cert_expiry_timestamp_seconds", labels, r.cert_not_after.timestamp()))
    return out


def families(samples: Iterable[Sample]) -> list[Metric]:
    """Samples grouped into metric families: a name ending in ``_total`` is a counter, anything
    else a gauge; one family per name, its label names from its first sample (pure)."""
    grouped: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, labels, value in samples:
        grouped.setdefault(name, []).append((labels, value))
    out: list[Metric] = []
    for name, rows in grouped.items():
        label_names = sorted(rows[0][0])
        doc = HELP.get(name, name.replace("_", " "))
        family: CounterMetricFamily | GaugeMetricFamily
        if name.endswith("_total"):
            family = CounterMetricFamily(name, doc, labels=label_names)
        else:
            family = GaugeMetricFamily(name, doc, labels=label_names)
        for labels, value in rows:
            family.add_metric([labels.get(k, "") for k in label_names], value)
        out.append(family)
    return out


@dataclass(slots=True, eq=False)  # hashable by identity: a registry keys its collectors
class HubCollector(Collector):
    """What one worker exposes; each source is a callable read at scrape time (any may be None)."""

    ingest: Callable[[], Iterable[tuple[str, dict[str, str], int]]] | None = None
    worker: Callable[[], dict[str, int]] | None = None
    gauges: Callable[[], dict[str, float]] | None = None
    fleet: Callable[[], Sequence[FleetRecord]] | None = None
    renewal: Callable[[], dict[str, object]] | None = None
    lag: Callable[[], list[tuple[str, list[tuple[str, int]], float]]] | None = None

    def samples(self) -> Iterator[Sample]:
        if self.ingest is not None:
            for name, labels, value in self.ingest():
                yield name, labels, float(value)
        if self.worker is not None:
            for name, count in self.worker().items():
                yield name, {}, float(count)
        if self.gauges is not None:
            for name, gauge in self.gauges().items():
                yield name, {}, gauge
        if self.renewal is not None:
            issued = self.renewal().get("hub_renewals_issued_total")
            if isinstance(issued, int):
                yield "hub_renewals_issued_total", {}, float(issued)
        if self.fleet is not None:
            try:
                records = self.fleet()
            except StoreError as exc:
                log.warning("event=metrics_fleet_failed error=%r", str(exc))
                yield "hub_fleet_store_up", {}, 0.0
            else:
                yield "hub_fleet_store_up", {}, 1.0
                yield from fleet_samples(records)

    def collect(self) -> Iterable[Metric]:
        out = families(self.samples())
        if self.lag is not None:
            histograms = self.lag()
            if histograms:
                family = HistogramMetricFamily(LAG, HELP[LAG], labels=["lane"])
                for lane, buckets, total in histograms:
                    family.add_metric([lane], [(le, float(n)) for le, n in buckets], total)
                out.append(family)
        return out


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1) or ``HOST:PORT``; :class:`ValueError` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics {text!r}: give PORT or HOST:PORT")
    return host, int(port)


class MetricsServer:
    """``GET /metrics`` on its own registry, served by prometheus-client's threaded WSGI server."""

    def __init__(self, collector: Collector, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server: Any
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port = int(self._server.server_port)
        self.on_close: Callable[[], None] | None = None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        if self.on_close is not None:
            self.on_close()
