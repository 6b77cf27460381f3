"""Hub alerts to operators (hub/fleet_alerts.py): each kind, its since-when and its edges, the
order, and agreement with the Prometheus rules of docs/monitoring/hub-alerts.yml: with the
rules' own thresholds, an alert is open exactly when the rule's expression, evaluated on the
gauges /metrics exposes for the same records, is true."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.fleet import Thresholds, build_record, fleet_records
from hub.fleet_alerts import RULES, fleet_alerts, gateway_alerts
from hub.metrics import fleet_samples
from tests.hub.helpers import T0
from tests.hub.test_fleet import beat, row

DAY = timedelta(days=1)
RULES_YML = (Path(__file__).parents[2] / "docs" / "monitoring" / "hub-alerts.yml").read_text()


def test_a_silent_gateway_alerts_from_the_threshold_on() -> None:
    t = Thresholds(stale_after_s=300)
    r = build_record(row("gw-1", beat(), last_seen=T0), T0 + timedelta(seconds=300), t)
    assert gateway_alerts(r, T0 + timedelta(seconds=300), t) == []  # at the threshold: not yet
    now = T0 + timedelta(seconds=301)
    (a,) = gateway_alerts(build_record(row("gw-1", beat(), last_seen=T0), now, t), now, t)
    assert (a.kind, a.severity, a.since, a.value_s, a.rule) == (
        "gateway_silent",
        "warning",
        T0 + timedelta(seconds=300),
        301.0,
        "StationEdgeGatewaySilent",
    )
    # a last will (offline) is silent too, counted from the last heartbeat
    off = build_record(row("gw-2", beat(online=False), online=False, last_seen=T0), now, t)
    assert [x.kind for x in gateway_alerts(off, now, t)] == ["gateway_silent"]


def test_an_old_backlog_alerts_since_it_crossed_the_threshold() -> None:
    t = Thresholds(backlog_age_s=3600)
    now = T0 + timedelta(seconds=60)
    r = build_record(row("gw-1", beat(pending=5, oldest_s=3600.0)), now, t)  # 3660 s old by now
    (a,) = [x for x in gateway_alerts(r, now, t) if x.kind == "backlog_old"]
    assert a.value_s == 3660.0 and a.since == T0
    fine = build_record(row("gw-1", beat(pending=5, oldest_s=3000.0)), now, t)
    assert [x.kind for x in gateway_alerts(fine, now, t)] == []
    empty = build_record(row("gw-1", beat(pending=0, oldest_s=9999.0)), now, t)  # nothing pending
    assert gateway_alerts(empty, now, t) == []


def test_certificates_close_to_expiry_and_expired() -> None:
    t = Thresholds(cert_days=14)
    r = build_record(row("gw-1", beat(cert_left=10 * DAY)), T0, t)
    (a,) = gateway_alerts(r, T0, t)
    assert (a.kind, a.severity, a.since) == ("cert_expiring", "warning", T0 - 4 * DAY)
    assert gateway_alerts(build_record(row("gw-1", beat(cert_left=15 * DAY)), T0, t), T0, t) == []
    now = T0 + 11 * DAY
    late = build_record(row("gw-1", beat(cert_left=10 * DAY), last_seen=now), now, t)
    (b,) = gateway_alerts(late, now, t)
    assert b.severity == "critical" and b.value_s == -DAY.total_seconds()
    # a heartbeat without a certificate section raises nothing
    doc = beat()
    doc.pop("certificate", None)
    assert gateway_alerts(build_record(row("gw-1", doc), T0, t), T0, t) == []


def test_order_is_critical_first_then_kind_then_oldest() -> None:
    now = T0 + timedelta(hours=2)
    rows = [
        row("gw-a", beat(sent_at=now, cert_left=-DAY), last_seen=now),  # expired: critical
        row("gw-b", beat(sent_at=now), last_seen=now - timedelta(minutes=10)),
        row("gw-c", beat(sent_at=now), last_seen=now - timedelta(minutes=50)),
        row("gw-d", beat(sent_at=now, pending=3, oldest_s=9000.0), last_seen=now),
    ]
    alerts = fleet_alerts(fleet_records(rows, now), now)
    assert [(a.gateway_id, a.kind) for a in alerts] == [
        ("gw-a", "cert_expiring"),
        ("gw-c", "gateway_silent"),
        ("gw-b", "gateway_silent"),
        ("gw-d", "backlog_old"),
    ]
    assert alerts[0].to_json()["rule"] == "StationEdgeCertificateExpiring"


def _rule_thresholds() -> dict[str, float]:
    """The numbers of the three fleet rules, read from the YAML (seconds)."""

    def expr(name: str) -> str:
        m = re.search(rf"- alert: {name}\n(?:.*\n)*?\s+expr: (.+)\n", RULES_YML)
        assert m is not None, name
        return m.group(1)

    def seconds(text: str) -> float:
        value = 1.0
        for factor in text.split("*"):
            value *= float(factor)
        return value

    silent = re.fullmatch(r".*\(hub_gateway_last_seen_timestamp_seconds\) > ([\d* ]+)", expr(RULES["gateway_silent"]))
    backlog = re.fullmatch(r".*\(hub_gateway_oldest_pending_seconds\) > ([\d* ]+)", expr(RULES["backlog_old"]))
    cert = re.fullmatch(
        r".*\(hub_gateway_cert_expiry_timestamp_seconds\) - time\(\) < ([\d* ]+)", expr(RULES["cert_expiring"])
    )
    assert silent and backlog and cert, "the rules' expressions changed shape: update this test and hub/fleet_alerts.py"
    return {
        "gateway_silent": seconds(silent.group(1)),
        "backlog_old": seconds(backlog.group(1)),
        "cert_expiring": seconds(cert.group(1)),
    }


def test_the_rules_thresholds_are_readable() -> None:
    assert _rule_thresholds() == {"gateway_silent": 1800.0, "backlog_old": 6 * 3600.0, "cert_expiring": 14 * 86400.0}


@settings(max_examples=150, deadline=None)
@given(
    silent_s=st.floats(0, 4000),
    online=st.booleans(),
    pending=st.integers(0, 5),
    oldest_s=st.floats(0, 30000),
    cert_left_s=st.floats(-86400, 30 * 86400),
)
def test_alerts_agree_with_the_prometheus_rules(
    silent_s: float, online: bool, pending: int, oldest_s: float, cert_left_s: float
) -> None:
    limits = _rule_thresholds()
    t = Thresholds(
        stale_after_s=limits["gateway_silent"],
        backlog_age_s=limits["backlog_old"],
        cert_days=limits["cert_expiring"] / 86400,
    )
    now = T0 + timedelta(seconds=silent_s)
    doc = beat(sent_at=T0, pending=pending, oldest_s=oldest_s, cert_left=timedelta(seconds=cert_left_s), online=online)
    records = fleet_records([row("gw-1", doc, online=online, last_seen=T0)], now, thresholds=t)
    gauges = {name: value for name, labels, value in fleet_samples(records) if labels.get("gateway") == "gw-1"}
    time_ = now.timestamp()
    firing = {
        "gateway_silent": time_ - gauges["hub_gateway_last_seen_timestamp_seconds"] > limits["gateway_silent"],
        "backlog_old": gauges["hub_gateway_oldest_pending_seconds"] > limits["backlog_old"],
        "cert_expiring": gauges["hub_gateway_cert_expiry_timestamp_seconds"] - time_ < limits["cert_expiring"],
    }
    opened = {a.kind for a in fleet_alerts(records, now, t)}
    assert opened == {k for k, v in firing.items() if v}
