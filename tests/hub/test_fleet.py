"""The fleet view's pure logic: a registry row (a real heartbeat document, built by the agent's
own ``heartbeat_document``) as a FleetRecord, the urgency order, the summary, table and JSON.
Clocks pinned (T0)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.sync.heartbeat import heartbeat_document
from hub.fleet import (
    Thresholds,
    build_record,
    by_urgency,
    fleet_json,
    fleet_records,
    render_table,
    seen_at,
    summarise,
)
from hub.store import GatewayRecord
from tests.hub.helpers import T0

S = timedelta(seconds=1)
M = timedelta(minutes=1)
DAY = timedelta(days=1)


def beat(
    *,
    sent_at: datetime = T0,
    pending: int = 0,
    oldest_s: float | None = None,
    cert_left: timedelta = 300 * DAY,
    space_level: str = "normal",
    online: bool = True,
) -> dict[str, object]:
    status = {
        "gateway_id": "gw-x",
        "province": "p01",
        "version": "0.4.0",
        "backlog": {"pending": pending, "oldest_pending_age_s": oldest_s, "dead_letter": 0},
        "store": {
            "bytes_on_disk": 4096,
            "space_level": space_level,
            "disk_full": space_level == "full",
            "dropped": {"spo2": 2, "heart_rate": 1},
        },
        "devices": [{"id": "mon-1", "state": "streaming", "last_data_at": (sent_at - 3 * S).isoformat()}],
        "scoring": {"open_alerts": 1, "models": [{"id": "news2", "version": "2.0"}], "available": True},
        "sync": {"state": "connected", "last_ack_at": (sent_at - 10 * S).isoformat(), "rejected_batches": 0},
        "patient_id": "must-not-travel",
    }
    doc = heartbeat_document(
        status,
        online=online,
        sent_at=sent_at,
        clock={"ntp": "synced", "offset_s": 0.004, "hub_offset_s": -0.2},
        certificate={"not_after": (sent_at + cert_left).isoformat(), "days_left": cert_left / DAY},
        disk={"free_bytes": 10**9, "total_bytes": 8 * 10**9},
    )
    return {"v": 1, "type": "status", **doc}


def row(
    gateway_id: str,
    doc: dict[str, object],
    *,
    last_seen: datetime = T0,
    online: bool = True,
    since: datetime | None = T0 - DAY,
    province: str = "p01",
) -> GatewayRecord:
    return GatewayRecord(gateway_id, province, online, last_seen, doc, since)


def test_a_heartbeat_becomes_a_full_record() -> None:
    r = build_record(row("gw-1", beat(pending=40, oldest_s=12.0)), T0 + 30 * S)
    assert (r.state, r.online, r.since, r.last_seen, r.silent_s) == ("online", True, T0 - DAY, T0, 30.0)
    assert (r.backlog_pending, r.oldest_pending_age_s, r.dead_letter) == (40, 42.0, 0)  # aged since the beat
    assert (r.last_sync_at, r.sync_state, r.rejected_batches) == (T0 - 10 * S, "connected", 0)
    assert (r.store_bytes, r.disk_free_bytes, r.disk_total_bytes, r.space_level) == (4096, 10**9, 8 * 10**9, "normal")
    assert (r.clock_ntp, r.clock_offset_s, r.hub_offset_s) == ("synced", 0.004, -0.2)
    assert r.agent_version == "0.4.0"
    assert [(m.id, m.version) for m in r.models] == [("news2", "2.0")]
    assert [(d.id, d.state, d.last_data_at) for d in r.devices] == [("mon-1", "streaming", T0 - 3 * S)]
    assert (r.open_alerts, r.dropped) == (1, 3)
    assert r.cert_not_after == T0 + 300 * DAY
    assert r.cert_days_left == round((300 * DAY - 30 * S) / DAY, 2)
    assert (r.urgency, r.reasons) == (3, ())
    assert "must-not-travel" not in fleet_json([r])


def test_states_and_reasons() -> None:
    t = Thresholds()
    now = T0 + 10 * M
    stale = build_record(row("gw-s", beat()), now, t)
    assert (stale.state, stale.reasons, stale.urgency) == ("stale", ("stale",), 0)
    offline = build_record(row("gw-o", beat(online=False), online=False), T0 + 30 * S, t)
    assert (offline.state, offline.reasons) == ("offline", ("offline",))
    at_risk = build_record(row("gw-r", beat(pending=9, oldest_s=3590.0)), T0 + 11 * S, t)
    assert (at_risk.reasons, at_risk.urgency) == (("data_at_risk",), 1)
    full = build_record(row("gw-f", beat(space_level="full")), T0, t)
    assert (full.reasons, full.urgency) == (("store_full",), 1)
    expiring = build_record(row("gw-c", beat(cert_left=5 * DAY)), T0, t)
    assert (expiring.reasons, expiring.urgency, expiring.cert_days_left) == (("cert_expiring",), 2, 5.0)
    expired = build_record(row("gw-e", beat(cert_left=-DAY)), T0, t)
    assert expired.reasons == ("cert_expired",)
    drained = build_record(row("gw-d", beat(pending=0, oldest_s=99999.0)), T0, t)
    assert (drained.oldest_pending_age_s, drained.reasons) == (None, ())


def test_a_last_will_only_record_is_offline_with_unknowns() -> None:
    r = build_record(row("gw-w", {"v": 1, "type": "status", "online": False}, online=False, since=T0), T0 + M)
    assert (r.state, r.backlog_pending, r.agent_version, r.cert_days_left, r.models, r.dropped) == (
        "offline",
        None,
        None,
        None,
        (),
        0,
    )


def test_a_hostile_document_does_not_break_the_record() -> None:
    doc: dict[str, object] = {
        "online": True,
        "backlog": [],
        "store": {"dropped": {"x": "many", "y": True, "z": 4}},
        "devices": [1, {"id": 5}, {"id": "ok", "last_data_at": "yesterday"}],
        "scoring": {"models": "news2", "open_alerts": True},
        "certificate": {"not_after": 17},
        "clock": {"offset_s": "0.1"},
    }
    r = build_record(row("gw-h", doc), T0)
    assert (r.dropped, r.open_alerts, r.cert_not_after, r.clock_offset_s, r.models) == (4, None, None, None, ())
    assert [(d.id, d.last_data_at) for d in r.devices] == [("ok", None)]


def test_urgency_order_offline_longest_then_data_at_risk_then_certificates() -> None:
    now = T0 + 2 * DAY
    records = fleet_records(
        [
            row("gw-ok", beat(sent_at=now), last_seen=now),
            row("gw-cert-5d", beat(sent_at=now, cert_left=5 * DAY), last_seen=now),
            row("gw-cert-1d", beat(sent_at=now, cert_left=DAY), last_seen=now),
            row("gw-risk-2h", beat(sent_at=now, pending=5, oldest_s=7200.0), last_seen=now),
            row("gw-risk-5h", beat(sent_at=now, pending=5, oldest_s=18000.0), last_seen=now),
            row("gw-off-1h", beat(), last_seen=now - timedelta(hours=1), online=False),
            row("gw-off-1d", beat(), last_seen=now - DAY, online=False),
            row("gw-stale", beat(), last_seen=now - timedelta(hours=3)),
            row("gw-other", beat(sent_at=now), last_seen=now, province="p02"),
        ],
        now,
    )
    assert [r.gateway_id for r in records] == [
        "gw-off-1d",
        "gw-stale",
        "gw-off-1h",
        "gw-risk-5h",
        "gw-risk-2h",
        "gw-cert-1d",
        "gw-cert-5d",
        "gw-ok",
        "gw-other",
    ]
    only = fleet_records([row("a", beat(), province="p01"), row("b", beat(), province="p02")], now, province="p02")
    assert [r.gateway_id for r in only] == ["b"]
    s = summarise(records)
    assert (s.gateways, s.online, s.stale, s.offline, s.data_at_risk, s.cert_expiring) == (9, 6, 1, 2, 2, 2)
    assert (s.pending, s.open_alerts, s.provinces) == (10, 9, ("p01", "p02"))
    assert s.line().startswith("9 gateways: 6 online, 1 stale, 2 offline; 2 with data at risk")


def test_table_and_json() -> None:
    now = T0 + 90 * M
    records = fleet_records(
        [row("gw-b", beat()), row("gw-a", beat(sent_at=now, pending=3, oldest_s=60.0), last_seen=now)], now
    )
    lines = render_table(records, now).splitlines()
    assert lines[0].split() == [
        "GATEWAY",
        "PROVINCE",
        "STATE",
        "FOR",
        "SEEN",
        "PENDING",
        "OLDEST",
        "SYNCED",
        "CERT",
        "ALERTS",
        "ISSUES",
        "COMMAND",
    ]
    assert lines[1].split()[:5] == ["gw-b", "p01", "stale", "25h30m", "90m"]
    assert lines[2].split()[:7] == ["gw-a", "p01", "online", "25h30m", "0s", "3", "60s"]
    assert lines[-1].startswith("2 gateways: 1 online, 1 stale, 0 offline")
    docs = json.loads(fleet_json(records))
    assert [d["gateway_id"] for d in docs] == ["gw-b", "gw-a"]
    assert docs[1]["last_seen"] == now.isoformat() and docs[1]["devices"][0]["id"] == "mon-1"
    assert json.loads(fleet_json(records, compact=True)) == docs
    assert "\n" not in fleet_json(records, compact=True)
    assert render_table([], now).splitlines()[-1].startswith("0 gateways")


def test_seen_at_live_and_retained() -> None:
    doc = beat(sent_at=T0 - DAY)
    assert seen_at(doc, T0, retained=False) == T0
    assert seen_at(doc, T0, retained=True) == T0 - DAY - 0.2 * S  # moved by its hub offset
    assert seen_at(beat(sent_at=T0 + DAY), T0, retained=True) == T0  # never in the future
    assert seen_at({"online": False}, T0, retained=True) == T0


_rows = st.lists(
    st.builds(
        lambda i, online, seen_min, pending, age_min, cert_d: row(
            f"gw-{i:03d}",
            beat(pending=pending, oldest_s=age_min * 60.0, cert_left=cert_d * DAY),
            last_seen=T0 - seen_min * M,
            online=online,
        ),
        st.integers(0, 999),
        st.booleans(),
        st.integers(0, 3000),
        st.integers(0, 50),
        st.integers(0, 600),
        st.integers(-5, 60),
    ),
    max_size=25,
    unique_by=lambda g: g.gateway_id,
)


@given(_rows)
def test_urgency_order_is_a_total_order_by_tier(rows: list[GatewayRecord]) -> None:
    records = fleet_records(rows, T0)
    assert sorted(r.gateway_id for r in records) == sorted(g.gateway_id for g in rows)
    assert [r.urgency for r in records] == sorted(r.urgency for r in records)
    silent = [r.silent_s for r in records if r.urgency == 0]
    assert silent == sorted(silent, reverse=True)
    risky = [r.oldest_pending_age_s or 0.0 for r in records if r.urgency == 1]
    assert risky == sorted(risky, reverse=True)
    certs = [r.cert_days_left for r in records if r.urgency == 2]
    assert certs == sorted(certs)  # type: ignore[type-var]
    assert by_urgency(reversed(records)) == records
    s = summarise(records)
    assert s.online + s.stale + s.offline == s.gateways == len(rows)
