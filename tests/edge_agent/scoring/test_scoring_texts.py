"""Alert texts are "Vietnamese / English" with exactly one " / ", so the dashboard can show its
language's half: the event detectors' texts too (Vietnamese with its diacritics, "lần/phút" for
"/min"), and a partial pregnancy BP text keeps each language in its own half."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scoring_helpers import MakeReading, MakeScorer, at

from device_drivers.records import Vital
from edge_agent.alerts import Alert, AlertState
from edge_agent.scoring import labels as L
from edge_agent.scoring.patient import AgeBand, PatientContext
from models.events import DEFAULT_RULES


def halves(message: str) -> tuple[str, str]:
    """The page's split (edge_agent/dashboard/static/app.js ownHalf): exactly two halves."""
    parts = message.split(" / ")
    assert len(parts) == 2, message
    assert unicodedata.normalize("NFC", message) == message
    return parts[0], parts[1]


def _kinds(events: list[Alert]) -> dict[str, Alert]:
    return {e.kind: e for e in events}


def test_each_detector_text_is_bilingual() -> None:
    expected = {
        "desaturation": (
            "Giảm SpO2: SpO2 < 90 % trong 12 giây (thấp nhất 88.5 %)",
            "Desaturation: SpO2 < 90 % for 12 s (lowest 88.5 %)",
        ),
        "tachycardia": (
            "Nhịp tim nhanh: nhịp tim > 100 lần/phút trong 12 giây (cao nhất 88.5 lần/phút)",
            "Tachycardia: heart rate > 100 /min for 12 s (highest 88.5 /min)",
        ),
        "bradycardia": (
            "Nhịp tim chậm: nhịp tim < 50 lần/phút trong 12 giây (thấp nhất 88.5 lần/phút)",
            "Bradycardia: heart rate < 50 /min for 12 s (lowest 88.5 /min)",
        ),
        "fever": ("Sốt: nhiệt độ ≥ 38 °C (cao nhất 88.5 °C)", "Fever: temperature ≥ 38 °C (highest 88.5 °C)"),
        "hypothermia": (
            "Hạ thân nhiệt: nhiệt độ < 35 °C (thấp nhất 88.5 °C)",
            "Hypothermia: temperature < 35 °C (lowest 88.5 °C)",
        ),
    }
    for rule in DEFAULT_RULES:
        held = 12.0 if rule.duration_s > 0 else None
        text = L.event_text(rule.kind, rule.vital, rule.op, rule.threshold, held, 88.5)
        assert halves(text) == expected[rule.kind]
    assert halves(L.event_resolved_text("tachycardia", "heart_rate", 80)) == (
        "Nhịp tim 80 lần/phút: hết nhịp tim nhanh",
        "Heart rate 80 /min: tachycardia resolved",
    )


@given(
    rule=st.sampled_from(DEFAULT_RULES),
    held=st.none() | st.floats(0, 1e5),
    worst=st.floats(-1e4, 1e4, allow_nan=False),
)
def test_any_detector_text_splits_in_two_and_vietnamese_has_no_english_unit(
    rule: object, held: float | None, worst: float
) -> None:
    from models.events import EventRule

    assert isinstance(rule, EventRule)
    vi, en = halves(L.event_text(rule.kind, rule.vital, rule.op, rule.threshold, held, worst))
    assert "/min" not in vi and " s " not in vi + " " and "lần/phút" not in en
    assert vi.startswith(L.cap(L.EVENT_NAMES[rule.kind])) and en.startswith(L.cap(L.EVENT_NAMES_EN[rule.kind]))


def test_vietnamese_values_use_vietnamese_units() -> None:
    assert L.value("resp_rate", 24, 0) == "24 lần/phút" and L.value("resp_rate", 24, 1) == "24 /min"
    assert L.value("o2_flow", 2, 0) == "2 lít/phút" and L.value("cap_refill", 3, 0) == "3 giây"
    assert L.value("body_temp", 35.05, 0) == "35.05 °C" and L.value("spo2", 91, 0) == "91 %"


def test_scorer_event_alerts_are_bilingual(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    events: dict[str, Alert] = {}
    for s in range(12):
        events |= _kinds(
            scorer.on_readings([make_reading(Vital.SPO2, 85, s), make_reading(Vital.HEART_RATE, 88, s)], at(s))
        )
    vi, en = halves(events["desaturation"].message)
    assert vi == "Giảm SpO2: SpO2 < 90 % trong 10 giây (thấp nhất 85 %)"
    assert en == "Desaturation: SpO2 < 90 % for 10 s (lowest 85 %)"
    vi, en = halves(events["news2"].message)
    assert "nhịp thở" in vi and "respiration rate" in en
    fever = _kinds(scorer.on_readings([make_reading(Vital.BODY_TEMP, 39.5, 20, device="thermo-1")], at(20)))
    assert halves(fever["fever"].message) == (
        "Sốt: nhiệt độ ≥ 38 °C (cao nhất 39.5 °C)",
        "Fever: temperature ≥ 38 °C (highest 39.5 °C)",
    )


@pytest.mark.parametrize("vitals", [{"sbp": 144.0}, {"sbp": 166.0, "dbp": 112.0}])
def test_pregnancy_text_keeps_each_language_in_its_half(
    make_scorer: MakeScorer, make_reading: MakeReading, vitals: dict[str, float]
) -> None:
    scorer = make_scorer()
    scorer.set_patient("M-9", PatientContext(AgeBand.ADULT, pregnant=True))
    names = {"sbp": Vital.BP_SYSTOLIC, "dbp": Vital.BP_DIASTOLIC}
    readings = [make_reading(names[k], v, 0, device="bp-1", patient="M-9") for k, v in vitals.items()]
    alert = _kinds(scorer.on_readings(readings, at(0)))["pregnancy_bp"]
    assert alert.state == AlertState.RAISED
    vi, en = halves(alert.message)
    assert "HA " in vi and "BP " in en
    if "dbp" not in vitals:
        assert vi.endswith("(chưa đủ: huyết áp tâm trương)") and en.endswith("(missing: diastolic BP)")


def test_imci_referral_threshold_is_in_each_language(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    scorer.set_patient("C-9", PatientContext(AgeBand.MONTHS_2_11))
    rr = make_reading(Vital.RESP_RATE, 56, 0, device="mon-1", patient="C-9")
    vi, en = halves(_kinds(scorer.on_readings([rr], at(0)))["imci_fast_breathing"].message)
    assert "(≥ 50 lần/phút)" in vi and "nhịp thở 56 lần/phút" in vi and "/min" not in vi
    assert "(≥ 50 /min)" in en and "respiration rate 56 /min" in en


def test_a_cleared_alert_keeps_its_two_halves(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    for s in range(11):
        scorer.on_readings([make_reading(Vital.SPO2, 85, s)], at(s))
    cleared = _kinds(scorer.on_readings([make_reading(Vital.SPO2, 97, 12)], at(12)))["desaturation"]
    assert cleared.state == AlertState.CLEARED
    assert halves(cleared.message) == (
        "Đã đóng (đã hết): hiện SpO2 97 %: hết giảm SpO2",
        "cleared (resolved): now SpO2 97 %: desaturation resolved",
    )
    assert (
        L.cleared_text("stale: no values", "a / b", now=False)
        == "Đã đóng (không còn số đo): a / cleared (stale: no values): b"
    )
    assert L.cleared_text("x", "English only", now=False) == "cleared (x): English only"
