"""docs/monitoring: the Prometheus alert rules and the Grafana dashboard only use metrics a real
``/metrics`` scrape exposes (names taken from a collector over the hub's real counters)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from hub.fleet import fleet_records
from hub.ingest import IngestMetrics
from hub.metrics import HELP, HubCollector
from hub.mqtt_worker import WorkerMetrics
from hub.store import IngestResult
from tests.hub.helpers import T0
from tests.hub.test_fleet import beat, row

DOCS = Path(__file__).parents[2] / "docs" / "monitoring"
RULES = (DOCS / "hub-alerts.yml").read_text()
DASHBOARD = json.loads((DOCS / "grafana-hub-fleet.json").read_text())
METRIC = re.compile(r"\bhub_[a-z_]+\b")


def exposed_names() -> set[str]:
    ingest = IngestMetrics()
    ingest.stored("readings", IngestResult(3, 1), 0.4)
    ingest.stored("alerts", IngestResult(1, 0))
    ingest.rejected("readings", "cert_expired")
    ingest.status(None)
    ingest.status("malformed")
    ingest.store_error()
    collector = HubCollector(
        ingest=ingest.samples,
        worker=WorkerMetrics().to_json,
        gauges=lambda: {"hub_worker_queue_depth": 0.0, "hub_worker_connected": 1.0},
        fleet=lambda: fleet_records([row("gw-1", beat(pending=2, oldest_s=5.0))], T0),
        renewal=lambda: {"hub_renewals_issued_total": 0},
        lag=ingest.lag_histograms,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    fams = list(text_string_to_metric_families(text))
    return {s.name for f in fams for s in f.samples} | {f.name for f in fams}


def test_every_metric_in_the_rules_and_the_dashboard_is_exposed() -> None:
    names = exposed_names()
    assert set(HELP) <= names | {n.removesuffix("_total") for n in names} | {n + "_total" for n in names}
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
    used = set(METRIC.findall(RULES)) | {m for e in exprs for m in METRIC.findall(e)}
    assert used, "no metric found in docs/monitoring"
    assert used <= names, f"not exposed by /metrics: {sorted(used - names)}"


def test_every_rule_has_an_expression_and_a_summary() -> None:
    alerts = re.findall(r"- alert: (\w+)\n((?:        .*\n)+)", RULES)
    assert len(alerts) == RULES.count("- alert:") >= 7
    for name, body in alerts:
        assert re.search(r"^        expr: \S", body, re.M), name
        assert "summary:" in body and "severity:" in body, name


def test_the_dashboard_is_importable_json() -> None:
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in DASHBOARD["panels"])
