"""The alert record and its lifecycle (edge_agent.alerts, edge_agent.scoring.lifecycle)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.alerts import Ack, Alert, AlertLevel, AlertState
from edge_agent.scoring.errors import AlertNotFound
from edge_agent.scoring.lifecycle import AlertBook, Finding

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
L, LM, M, H = AlertLevel.LOW, AlertLevel.LOW_MEDIUM, AlertLevel.MEDIUM, AlertLevel.HIGH


def t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def book(renotify_s: float = 900) -> AlertBook:
    ids = itertools.count(1)
    return AlertBook(renotify_s=renotify_s, new_id=lambda: f"a{next(ids)}")


def news2(
    level: AlertLevel | None,
    known: tuple[str, ...] = ("spo2", "heart_rate"),
    causes: tuple[str, ...] = ("spo2",),
    score: float = 3.0,
) -> Finding:
    inputs = (("spo2", 85.0, "gw:1"),)
    return Finding(
        "P-1",
        "news2",
        level,
        frozenset(known),
        causes,
        f"NEWS2 {score}",
        score,
        True,
        ("resp_rate",),
        inputs,
        "news2@1.0.0",
    )


def test_raised_once() -> None:
    b = book()
    first = b.assess(news2(LM), t(0))
    assert first is not None and first.state == AlertState.RAISED and first.level is LM
    assert first.inputs == (("spo2", 85.0, "gw:1"),) and first.model == "news2@1.0.0" and first.partial
    assert b.assess(news2(LM), t(1)) is None
    assert b.assess(news2(L), t(2)) is None  # lower: quiet update, keeps its peak level
    assert b.open_alerts()[0].level is LM and b.open_alerts()[0].state == AlertState.RAISED
    assert len(b.open_alerts()) == 1


def test_no_alert_without_a_level() -> None:
    b = book()
    assert b.assess(news2(None), t(0)) is None
    assert b.open_alerts() == []


def test_escalates_only_above_its_peak() -> None:
    b = book()
    b.assess(news2(LM), t(0))
    esc = b.assess(news2(M, score=5), t(10))
    assert esc is not None and esc.state == AlertState.ESCALATED and esc.level is M and esc.notified_at == t(10)
    assert b.assess(news2(LM), t(20)) is None
    assert b.assess(news2(M), t(30)) is None  # back to the peak: not a new escalation
    esc2 = b.assess(news2(H, score=8), t(40))
    assert esc2 is not None and esc2.level is H and esc2.alert_id == esc.alert_id


def test_renotified_while_unacknowledged() -> None:
    b = book(renotify_s=60)
    a = b.assess(news2(LM), t(0))
    assert a is not None
    assert b.renotify_due(t(59)) == []
    (r,) = b.renotify_due(t(60))
    assert r.state == AlertState.RENOTIFIED and r.notified_at == t(60)
    assert b.renotify_due(t(100)) == []
    assert len(b.renotify_due(t(120))) == 1


def test_acknowledgement_stops_renotify_until_escalation() -> None:
    b = book(renotify_s=60)
    a = b.assess(news2(LM), t(0))
    assert a is not None
    acked = b.acknowledge(a.alert_id, "  nurse Lan ", t(5))
    assert acked.state == AlertState.ACKNOWLEDGED and acked.acknowledged and acked.acks == (Ack("nurse Lan", t(5)),)
    assert b.renotify_due(t(1000)) == []
    esc = b.assess(news2(H, score=9), t(1001))
    assert esc is not None and not esc.acknowledged and esc.acks == acked.acks
    assert len(b.renotify_due(t(1061))) == 1
    again = b.acknowledge(a.alert_id, "Dr Minh", t(1070))
    assert [x.who for x in again.acks] == ["nurse Lan", "Dr Minh"]


def test_acknowledge_errors() -> None:
    b = book()
    with pytest.raises(AlertNotFound):
        b.acknowledge("nope", "nurse", t(0))
    a = b.assess(news2(LM), t(0))
    assert a is not None
    with pytest.raises(ValueError):
        b.acknowledge(a.alert_id, "  ", t(1))


def test_cleared_only_when_the_causes_are_measured_again() -> None:
    b = book()
    a = b.assess(news2(LM, causes=("spo2",)), t(0))
    assert a is not None
    assert b.assess(news2(None, known=("heart_rate",)), t(10)) is None  # SpO2 not measured: not resolved
    cleared = b.assess(news2(None, known=("spo2", "heart_rate")), t(20))
    assert cleared is not None and cleared.state == AlertState.CLEARED and cleared.clear_reason == "resolved"
    assert cleared.cleared_at == t(20) and not cleared.is_open
    assert b.open_alerts() == []
    # a late acknowledgement of a cleared alert is still recorded
    late = b.acknowledge(a.alert_id, "nurse", t(30))
    assert late.state == AlertState.CLEARED and late.acks[-1].who == "nurse"
    # the next episode is a new alert
    new = b.assess(news2(LM), t(40))
    assert new is not None and new.alert_id != a.alert_id and new.state == AlertState.RAISED


def test_the_last_500_cleared_alerts_stay_acknowledgeable_as_they_were() -> None:
    b = book()
    cleared = []
    for i in range(501):
        a = b.assess(news2(LM), t(2 * i))
        assert a is not None
        c = b.assess(news2(None), t(2 * i + 1))
        assert c is not None and c.state == AlertState.CLEARED
        cleared.append(c)
    with pytest.raises(AlertNotFound):  # the oldest is forgotten
        b.get(cleared[0].alert_id)
    # the others come back equal to what was returned when they cleared (kept packed, issue 14)
    assert all(b.get(c.alert_id) == c for c in cleared[1:])
    late = b.acknowledge(cleared[1].alert_id, "nurse Lan", t(2000))
    assert late.acks == (Ack("nurse Lan", t(2000)),) and late.acknowledged and late.updated_at == t(2000)
    assert b.get(cleared[1].alert_id) == late
    assert b.acknowledge(cleared[1].alert_id, "nurse Mai", t(2001)).acks[-1] == Ack("nurse Mai", t(2001))


def test_causes_accumulate_over_escalations() -> None:
    b = book()
    b.assess(news2(LM, causes=("spo2",)), t(0))
    b.assess(news2(M, causes=("bp_systolic",), known=("spo2", "bp_systolic")), t(1))
    assert b.assess(news2(None, known=("spo2",)), t(2)) is None  # SBP not re-measured yet
    assert b.assess(news2(None, known=("spo2", "bp_systolic")), t(3)) is not None


def test_clear_subject_and_restore() -> None:
    b = book()
    a = b.assess(news2(LM), t(0))
    other = Finding("P-2", "fever", L, frozenset({"body_temp"}), ("body_temp",), "fever")
    b.assess(other, t(0))
    (stale,) = b.clear_subject("P-1", t(100), "stale: no values")
    assert stale.clear_reason == "stale: no values"
    assert [x.subject for x in b.open_alerts()] == ["P-2"]
    restored = book()
    restored.restore([Alert.from_json(x.to_json()) for x in b.open_alerts()] + [stale])
    assert [x.subject for x in restored.open_alerts()] == ["P-2"]
    assert restored.assess(other, t(5)) is None  # adopted, not raised again
    assert a is not None


def test_json_round_trip() -> None:
    b = book()
    a = b.assess(news2(M, score=5), t(0))
    assert a is not None
    a = b.acknowledge(a.alert_id, "nurse Lan", t(1))
    payload = a.to_json()
    assert payload["level"] == "medium" and payload["state"] == "acknowledged" and payload["open"] is True
    assert payload["acks"] == [{"who": "nurse Lan", "at": t(1).isoformat()}]
    assert Alert.from_json(payload) == a


def test_from_json_accepts_the_foundation_payload() -> None:
    old = Alert(
        "x",
        "device:oxi",
        "spo2_low",
        LM,
        "raised",
        "SpO2 85 % < 90 %",
        T0,
        85.0,
        False,
        (("spo2", 85.0, "u"),),
    )
    foundation_keys = {"alert_id", "subject", "kind", "level", "state", "message", "raised_at", "score", "partial"}
    foundation_keys |= {"inputs", "model"}
    minimal = {k: v for k, v in old.to_json().items() if k in foundation_keys}
    assert Alert.from_json(minimal) == old


def test_levels_rank_in_clinical_order() -> None:
    assert [lv.rank for lv in (L, LM, M, H)] == [0, 1, 2, 3]
