"""/metrics: the pure sample and family builders, and a real ``edge-hub serve --metrics`` behind a
real Mosquitto scraped over HTTP and parsed with prometheus-client's own text parser."""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.fleet import fleet_records
from hub.metrics import HubCollector, MetricsServer, families, fleet_samples, parse_listen
from hub.store import GatewayRecord
from tests.fixtures.mosquitto import MosquittoBroker, MqttClient, find_mosquitto, free_port
from tests.fixtures.pki import Pki
from tests.hub.helpers import T0, reading, sealed_readings
from tests.hub.mqtt_helpers import PROVINCE, Gateway, ServeProcess
from tests.hub.test_fleet import beat, row
from wire import messages
from wire.topics import topic

DAY = timedelta(days=1)


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}} of GET /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_fleet_samples_count_by_province_and_state() -> None:
    now = T0 + 10 * 60 * timedelta(seconds=1)
    gateways: list[GatewayRecord] = [
        row("gw-1", beat(sent_at=now), last_seen=now),
        row("gw-2", beat(), last_seen=T0),  # stale
        row("gw-3", beat(sent_at=now, pending=4, oldest_s=7200.0, cert_left=3 * DAY), last_seen=now, province="p02"),
        row("gw-4", {"online": False}, online=False, province="p02"),
    ]
    samples = {(n, tuple(sorted(lab.items()))): v for n, lab, v in fleet_samples(fleet_records(gateways, now))}
    assert samples[("hub_fleet_gateways", (("province", "p01"), ("state", "online")))] == 1
    assert samples[("hub_fleet_gateways", (("province", "p01"), ("state", "stale")))] == 1
    assert samples[("hub_fleet_gateways", (("province", "p01"), ("state", "offline")))] == 0  # present, zero
    assert samples[("hub_fleet_gateways", (("province", "p02"), ("state", "offline")))] == 1
    assert samples[("hub_fleet_data_at_risk_gateways", (("province", "p02"),))] == 1
    assert samples[("hub_fleet_cert_expiring_gateways", (("province", "p02"),))] == 1
    assert samples[("hub_fleet_pending_readings", (("province", "p02"),))] == 4
    g3 = (("gateway", "gw-3"), ("province", "p02"))
    assert samples[("hub_gateway_online", g3)] == 1
    assert samples[("hub_gateway_last_seen_timestamp_seconds", g3)] == now.timestamp()
    assert samples[("hub_gateway_oldest_pending_seconds", g3)] == 7200
    assert samples[("hub_gateway_cert_expiry_timestamp_seconds", g3)] == (now + 3 * DAY).timestamp()
    assert ("hub_gateway_cert_expiry_timestamp_seconds", (("gateway", "gw-4"), ("province", "p02"))) not in samples
    assert fleet_samples([]) == []


def test_families_types_and_the_http_server() -> None:
    fams = {f.name: f for f in families([("hub_x_total", {"a": "1"}, 2.0), ("hub_depth", {}, 3.0)])}
    assert (fams["hub_x"].type, fams["hub_depth"].type) == ("counter", "gauge")
    collector = HubCollector(
        ingest=lambda: iter([("hub_rejected_total", {"reason": "cert_expired"}, 2)]),
        gauges=lambda: {"hub_worker_queue_depth": 3.0},
        fleet=lambda: fleet_records([row("gw-1", beat())], T0),
    )
    server = MetricsServer(collector, "127.0.0.1", 0)
    try:
        got = scrape(server.port)
    finally:
        server.close()
    assert got["hub_rejected_total"] == {(("reason", "cert_expired"),): 2}
    assert got["hub_worker_queue_depth"] == {(): 3}
    assert got["hub_fleet_store_up"] == {(): 1}
    assert got["hub_gateway_online"] == {(("gateway", "gw-1"), ("province", "p01")): 1}


def test_ingest_lag_histogram() -> None:
    from hub.ingest import LAG_BUCKETS_S, IngestMetrics
    from hub.store import IngestResult

    m = IngestMetrics()
    for lag in (0.05, 0.3, 0.3, 7200.0, -4.0):  # a gateway clock ahead of the hub's: lag 0
        m.stored("readings", IngestResult(1, 0), lag)
    m.stored("alerts", IngestResult(1, 0))  # no lag given: not observed
    [(lane, buckets, total)] = m.lag_histograms()
    assert (lane, total) == ("readings", 7200.65)
    counts = dict(buckets)
    assert (counts["0.1"], counts["0.25"], counts["0.5"], counts["3600"], counts["21600"], counts["+Inf"]) == (
        2,
        2,
        4,
        4,
        5,
        5,
    )
    assert len(buckets) == len(LAG_BUCKETS_S) + 1
    collector = HubCollector(lag=m.lag_histograms)
    server = MetricsServer(collector, "127.0.0.1", 0)
    try:
        got = scrape(server.port)
    finally:
        server.close()
    assert got["hub_ingest_lag_seconds_count"] == {(("lane", "readings"),): 5}
    assert got["hub_ingest_lag_seconds_bucket"][(("lane", "readings"), ("le", "0.5"))] == 4


def test_parse_listen() -> None:
    assert parse_listen("9108") == ("127.0.0.1", 9108)
    assert parse_listen("0.0.0.0:9108") == ("0.0.0.0", 9108)
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    for bad in ("", "x", "host:", "1:99999"):
        with pytest.raises(ValueError):
            parse_listen(bad)


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")
def test_serve_exposes_ingest_rejections_and_the_fleet(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    port = free_port()
    gw_id = "gw-0001"
    store_spec = str(tmp_path / "hub")
    with ServeProcess(tmp_path / "serve", broker, pki, store_spec, "hub-1", "--metrics", f"127.0.0.1:{port}") as serve:
        assert "event=metrics_listening" in serve.log_text()
        status = topic(PROVINCE, gw_id, "status")
        hb = MqttClient(broker, pki.gateway(gw_id), client_id=f"{gw_id}-status").connect()
        now = datetime.now(UTC)
        hb.publish(
            status,
            messages.encode_heartbeat({"online": True, "sent_at": now.isoformat(), "backlog": {"pending": 6}}),
            retain=True,
        )
        gw = Gateway(broker, pki, gw_id)
        batch_id, data = sealed_readings(pki, gw_id, [reading(gw_id, s) for s in range(20)])
        gw.publish(data)
        gw.wait_acked([batch_id])
        gw.publish(b"not an envelope")
        deadline = time.monotonic() + 20
        while True:
            got = scrape(port)
            if sum(got.get("hub_rejected_total", {}).values()) >= 1 and got.get("hub_status_total", {}).get(()):
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.2)
        assert got["hub_readings_stored_total"] == {(): 20}
        assert got["hub_batches_total"][(("lane", "readings"), ("outcome", "ok"))] == 1
        assert got["hub_worker_connected"] == {(): 1}
        assert got["hub_worker_queue_depth"] == {(): 0}
        assert got["hub_ingest_lag_seconds_count"] == {(("lane", "readings"),): 1}
        assert got["hub_fleet_gateways"][(("province", PROVINCE), ("state", "online"))] == 1
        assert got["hub_fleet_pending_readings"] == {(("province", PROVINCE),): 6}
        labels = (("gateway", gw_id), ("province", PROVINCE))
        assert abs(got["hub_gateway_last_seen_timestamp_seconds"][labels] - now.timestamp()) < 30
        hb.disconnect()
        gw.close()
