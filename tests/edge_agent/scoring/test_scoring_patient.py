"""The score follows the person (clinical.md section 6), partial scores say so everywhere, the
nurse's orders expire, and stale alerts clear in one pass."""

from __future__ import annotations

from typing import Any

import pytest
from scoring_helpers import MakeReading, MakeScorer, at

from device_drivers.records import Vital
from edge_agent.alerts import Alert, AlertLevel, AlertState
from edge_agent.scoring import Scorer
from edge_agent.scoring.patient import AgeBand, PatientContext


def _kinds(events: list[Alert]) -> dict[str, Alert]:
    return {e.kind: e for e in events}


def _monitor(make: MakeReading, patient: str, at_s: float, **vitals: float) -> list[Any]:
    names = {"rr": Vital.RESP_RATE, "hr": Vital.HEART_RATE, "spo2": Vital.SPO2, "sbp": Vital.BP_SYSTOLIC,
             "dbp": Vital.BP_DIASTOLIC, "temp": Vital.BODY_TEMP}  # fmt: skip
    return [make(names[k], v, at_s, device="mon-1", patient=patient) for k, v in vitals.items()]


def _score(scorer: Scorer, subject: str) -> dict[str, Any]:
    return next(s.to_json() for s in scorer.scores() if s.subject == subject)


def test_age_not_recorded_uses_news2_and_says_so(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    scorer.on_readings(_monitor(make_reading, "P-1", 0, rr=16, hr=70, spo2=97, sbp=120, temp=37.0), at(0))
    s = _score(scorer, "P-1")
    assert s["score"] == "NEWS2" and s["notes"] == ["age_not_recorded"] and s["news2_total"] == 0
    scorer.set_patient("P-1", PatientContext(AgeBand.ADULT))
    scorer.tick(at(1))
    assert _score(scorer, "P-1")["notes"] == []


def test_partial_news2_is_a_lower_bound_with_names(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    scorer.set_patient("P-2", PatientContext(AgeBand.ADULT))
    (alert,) = scorer.on_readings(_monitor(make_reading, "P-2", 0, spo2=91, hr=70, sbp=120, temp=37.0), at(0))
    s = _score(scorer, "P-2")
    assert s["partial"] is True and s["total"] == 3 and s["level"] == "low-medium"
    assert s["missing"] == ["resp_rate", "air_oxygen", "consciousness"]
    assert s["text_vi"].startswith("NEWS2 ≥ 3, chưa đủ: nhịp thở, thở oxy hay khí trời, ý thức")
    assert s["text_en"].startswith("NEWS2 at least 3, missing: respiration rate, air or oxygen, consciousness")
    assert alert.partial and "≥ 3" in alert.message and "at least 3" in alert.message
    assert "SpO2 91 %" in alert.message and "monitor at least hourly" in alert.message  # inputs, response


def test_gap_values_score_more_severe_at_the_scorer(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    events = _kinds(scorer.on_readings([make_reading(Vital.BODY_TEMP, 35.05, 0, device="t-1")], at(0)))
    assert events["news2"].score == 3 and "35.05 °C" in events["news2"].message  # device precision kept
    bp = _kinds(
        scorer.on_readings(
            [
                make_reading(Vital.BP_SYSTOLIC, 179.5, 1, device="bp"),
                make_reading(Vital.BP_DIASTOLIC, 80, 1, device="bp"),
            ],
            at(1),
        )
    )
    assert bp["bp_crisis"].causes == ("bp_systolic",) and "179.5/80" in bp["bp_crisis"].message


def test_child_gets_pews_not_news2_nor_adult_heart_rate_events(
    make_scorer: MakeScorer, make_reading: MakeReading
) -> None:
    scorer = make_scorer()
    p = "C-1"
    scorer.set_patient(p, PatientContext(AgeBand.YEARS_5_12))
    events: list[Alert] = []
    for t in range(0, 75, 5):  # HR 125 for 70 s: tachycardia for an adult, 1 PEWS point at 5-12 y
        events += scorer.on_readings(_monitor(make_reading, p, t, hr=125, rr=22, spo2=98, sbp=100), at(t))
    kinds = {e.kind for e in events}
    assert "news2" not in kinds and "tachycardia" not in kinds and "bp_crisis" not in kinds
    pews = next(e for e in events if e.kind == "pews")
    assert pews.level is AlertLevel.LOW and pews.partial and pews.score == 1
    assert "PEWS ≥ 1" in pews.message and "reassess within 60 minutes" in pews.message
    assert "chưa được thẩm định ngoài bệnh viện" in pews.message and "not validated before hospital" in pews.message
    s = _score(scorer, p)
    assert s["score"] == "PEWS" and s["news2_total"] is None and s["bp_category"] is None
    assert "pews_not_validated_prehospital" in s["notes"]
    assert set(s["missing"]) == {"resp_distress", "o2_support", "cap_refill", "consciousness"}


def test_pews_avpu_escalates_and_nurse_entries_complete_it(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    p = "C-2"
    scorer.set_patient(p, PatientContext(AgeBand.YEARS_1_4))
    scorer.on_readings(_monitor(make_reading, p, 0, hr=120, rr=30, spo2=98, sbp=95, temp=38.4), at(0))
    scorer.set_manual(p, consciousness="V", on_oxygen=False, resp_distress=0, cap_refill=1)
    (esc,) = [e for e in scorer.tick(at(1)) if e.kind == "pews"]
    assert esc.level is AlertLevel.MEDIUM and not esc.partial and esc.score == 0  # PEWS High, total 0
    s = _score(scorer, p)
    assert s["level"] == "high" and s["partial"] is False and "think_sepsis" in s["notes"]
    scorer.set_manual(p, consciousness="P")
    (emerg,) = [e for e in scorer.tick(at(2)) if e.kind == "pews"]
    assert emerg.state == AlertState.ESCALATED and emerg.level is AlertLevel.HIGH
    assert "cấp cứu nhi" in emerg.message and "emergency" in emerg.message


@pytest.mark.parametrize(
    ("band", "rr", "kind_expected"),
    [(AgeBand.UNDER_2_MONTHS, 62, True), (AgeBand.MONTHS_2_11, 52, True), (AgeBand.YEARS_1_4, 42, True),
     (AgeBand.YEARS_1_4, 38, False)],
)  # fmt: skip
def test_imci_fast_breathing_by_age_raises_a_referral(
    make_scorer: MakeScorer, make_reading: MakeReading, band: AgeBand, rr: float, kind_expected: bool
) -> None:
    scorer = make_scorer()
    scorer.set_patient("C-3", PatientContext(band))
    events = _kinds(scorer.on_readings(_monitor(make_reading, "C-3", 0, rr=rr), at(0)))
    assert ("imci_fast_breathing" in events) is kind_expected
    if kind_expected:
        a = events["imci_fast_breathing"]
        assert a.message.startswith("Chuyển tuyến: thở nhanh theo tuổi") and "Referral: fast breathing" in a.message
        assert f"respiration rate {rr:g} /min" in a.message


def test_imci_hypoxaemia_and_young_infant_temperature(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    p = "C-4"
    scorer.set_patient(p, PatientContext(AgeBand.UNDER_2_MONTHS))
    events = _kinds(scorer.on_readings(_monitor(make_reading, p, 0, spo2=88, temp=37.6), at(0)))
    assert events["imci_hypoxaemia"].level is AlertLevel.HIGH and "give oxygen" in events["imci_hypoxaemia"].message
    assert events["imci_young_infant_temperature"].level is AlertLevel.MEDIUM
    assert _score(scorer, p)["imci_flags"] == ["hypoxaemia", "young_infant_temperature"]
    cleared = _kinds(scorer.on_readings(_monitor(make_reading, p, 10, spo2=97, temp=36.8), at(10)))
    assert cleared["imci_hypoxaemia"].state == AlertState.CLEARED
    assert cleared["imci_young_infant_temperature"].state == AlertState.CLEARED
    # a 3-year-old's 37.6 C is not a young-infant sign
    scorer.set_patient("C-5", PatientContext(AgeBand.YEARS_1_4))
    assert "imci_young_infant_temperature" not in _kinds(
        scorer.on_readings(_monitor(make_reading, "C-5", 20, temp=37.6), at(20))
    )


def test_pregnancy_thresholds_recheck_then_severe_at_once(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    p = "M-1"
    scorer.set_patient(p, PatientContext(AgeBand.ADULT, pregnant=True))
    first = _kinds(scorer.on_readings(_monitor(make_reading, p, 0, sbp=144, dbp=92), at(0)))
    preg = first["pregnancy_bp"]
    assert preg.level is AlertLevel.LOW_MEDIUM and "recheck at least 4 h later" in preg.message
    assert "Tăng huyết áp thai kỳ" in preg.message
    severe = _kinds(scorer.on_readings(_monitor(make_reading, p, 60, sbp=166, dbp=112), at(60)))
    s = severe["pregnancy_bp"]
    assert s.state == AlertState.ESCALATED and s.level is AlertLevel.HIGH and s.alert_id == preg.alert_id
    assert "do not wait for a second reading" in s.message
    assert "bp_crisis" not in severe  # no second, higher-threshold BP alert for the same reading
    score = _score(scorer, p)
    assert score["pregnancy_bp"] == "severe-hypertension-in-pregnancy"
    assert score["score"] == "NEWS2" and "not_validated_in_pregnancy" in score["notes"]


def test_pregnant_news2_alert_says_not_validated(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    scorer.set_patient("M-2", PatientContext(AgeBand.ADULT, pregnant=True))
    events = _kinds(scorer.on_readings(_monitor(make_reading, "M-2", 0, spo2=90), at(0)))
    assert "NEWS2 is not validated in pregnancy" in events["news2"].message
    assert "chưa được thẩm định cho phụ nữ có thai" in events["news2"].message


def test_oxygen_and_scale_orders_expire(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer(manual_valid_s=600)
    p = "P-3"
    scorer.set_manual(p, on_oxygen=False, spo2_scale=2)  # set at T0 (the scorer's clock)
    scorer.on_readings([make_reading(Vital.SPO2, 90, 0, patient=p)], at(0))
    assert _score(scorer, p)["news2_total"] == 0  # scale 2: 88-92 scores 0, on air 0
    # 11 minutes later both orders have expired: scale 1 again (90 % = 3) and oxygen unknown
    scorer.on_readings([make_reading(Vital.SPO2, 90, 660, patient=p)], at(660))
    s = _score(scorer, p)
    assert s["news2_total"] == 3 and "air_oxygen" in s["missing"]


def test_closing_the_visit_forgets_the_nurses_entries(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    p = "P-4"
    scorer.set_patient(p, PatientContext(AgeBand.ADULT))
    scorer.set_manual(p, on_oxygen=True, resp_rate=18, consciousness="A")
    scorer.on_readings([make_reading(Vital.SPO2, 97, 0, patient=p)], at(0))
    assert _score(scorer, p)["news2_total"] == 2  # oxygen
    scorer.set_patient(p, None)
    scorer.on_readings([make_reading(Vital.SPO2, 97, 5, patient=p)], at(5))
    s = _score(scorer, p)
    assert s["news2_total"] == 0 and {"air_oxygen", "resp_rate", "consciousness"} <= set(s["missing"])


def test_pews_manual_entries_are_validated(make_scorer: MakeScorer) -> None:
    from edge_agent.scoring import ManualObservationError

    scorer = make_scorer()
    for bad in ({"resp_distress": 4}, {"cap_refill": -1}, {"o2_flow": "2"}, {"o2_high_flow": 1}):
        with pytest.raises(ManualObservationError):
            scorer.set_manual("C-9", **bad)
    scorer.set_manual("C-9", resp_distress=2, cap_refill=2.5, o2_flow=1.5, o2_high_flow=False)


def test_stale_alerts_of_many_subjects_clear_in_one_tick(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer(stale_clear_s=600)
    for i in range(300):
        p = f"S-{i}"
        scorer.on_readings(
            [make_reading(Vital.SPO2, 85, 0, patient=p), make_reading(Vital.BODY_TEMP, 39.5, 0, patient=p)], at(0)
        )
    assert scorer.status()["open_alerts"] == 600  # news2 and fever for each
    scorer.on_readings([make_reading(Vital.SPO2, 85, 500, patient="S-0")], at(500))  # S-0 still sends
    events = scorer.tick(at(700))
    assert len(events) == 598 and {e.clear_reason for e in events} == {"stale: no values"}
    assert {a.subject for a in scorer.open_alerts()} == {"S-0"}
    # subjects with no state left (forgotten after a restart) are judged by their newest alert
    scorer.obs.subjects.clear()
    assert [e.subject for e in scorer.tick(at(1200))] == ["S-0", "S-0"]


def test_oxygen_without_a_flow_leaves_pews_oxygen_support_missing(
    make_scorer: MakeScorer, make_reading: MakeReading
) -> None:
    scorer = make_scorer()
    p = "C-6"
    scorer.set_patient(p, PatientContext(AgeBand.YEARS_5_12))
    scorer.set_manual(p, on_oxygen=True)
    scorer.on_readings(_monitor(make_reading, p, 0, hr=90, rr=22), at(0))
    assert "o2_support" in _score(scorer, p)["missing"]
    scorer.set_manual(p, o2_flow=3)
    scorer.tick(at(1))
    s = _score(scorer, p)
    assert "o2_support" not in s["missing"] and s["total"] == 2  # 2-5.99 L/min: 2 points


def test_without_onnxruntime_a_child_still_gets_imci_and_never_news2(make_reading: MakeReading) -> None:
    from scoring_helpers import T0

    from edge_agent.scoring.registry import ModelRegistry, trusted_keys
    from edge_agent.scoring.runtime import RuntimeInfo
    from edge_agent.scoring.settings import ScoringSettings

    runtime = RuntimeInfo(None, "", "onnxruntime crashed on import with SIGILL")
    reg = ModelRegistry(runtime=runtime, trusted=trusted_keys((), allow_dev_key=True))
    scorer = Scorer(registry=reg, runtime=runtime, store=None, clock=lambda: T0, settings=ScoringSettings())
    scorer.set_patient("C-7", PatientContext(AgeBand.MONTHS_2_11))
    kinds = set(_kinds(scorer.on_readings(_monitor(make_reading, "C-7", 0, rr=55, spo2=86), at(0))))
    assert {"imci_fast_breathing", "imci_hypoxaemia"} <= kinds and "news2" not in kinds and "pews" not in kinds


def test_alerts_of_a_score_that_no_longer_applies_are_closed(
    make_scorer: MakeScorer, make_reading: MakeReading
) -> None:
    scorer = make_scorer()
    p = "C-8"
    first = _kinds(scorer.on_readings(_monitor(make_reading, p, 0, hr=135, spo2=97), at(0)))  # age unknown: NEWS2
    assert first["news2"].level is AlertLevel.LOW_MEDIUM
    scorer.set_patient(p, PatientContext(AgeBand.YEARS_1_4))  # the visit says: a 3-year-old
    events = _kinds(scorer.tick(at(1)))
    assert events["news2"].state == AlertState.CLEARED and "does not apply" in events["news2"].clear_reason
    assert "news2" not in {a.kind for a in scorer.open_alerts()}
