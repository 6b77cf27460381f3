"""The demo's child and pregnant woman: their scripted vitals, scored with their visit's age band
and pregnancy and the nurse's entries, raise the alerts the sources prescribe."""

from __future__ import annotations

import itertools

from scoring_helpers import MakeReading, MakeScorer, at

from device_drivers.records import Vital
from device_drivers.simulators.base import patient_timeline
from device_drivers.simulators.hl7 import MESSAGE_EVERY_S
from edge_agent.alerts import Alert, AlertLevel, AlertState
from edge_agent.scoring import Scorer
from edge_agent.scoring.demo_people import DEMO_PEOPLE, apply


def _play(scorer: Scorer, make: MakeReading, code: str, scenario: str, seconds: int) -> list[Alert]:
    """What the HL7 monitor sends: one full vital set every MESSAGE_EVERY_S seconds."""
    events: list[Alert] = []
    for s in itertools.islice(patient_timeline(scenario), seconds):
        if int(s.t) % MESSAGE_EVERY_S:
            continue
        vitals = [(Vital.HEART_RATE, s.heart_rate), (Vital.RESP_RATE, s.resp_rate), (Vital.SPO2, s.spo2),
                  (Vital.BP_SYSTOLIC, s.bp_systolic), (Vital.BP_DIASTOLIC, s.bp_diastolic),
                  (Vital.BODY_TEMP, s.body_temp)]  # fmt: skip
        readings = [make(v, x, s.t, device="monitor", patient=code) for v, x in vitals]
        events += scorer.on_readings(readings, at(s.t))
    return events


def test_demo_child_gets_pews_and_imci_referrals(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    opened: list[tuple[str, tuple[str, ...]]] = []
    apply(scorer, lambda pid, devices: opened.append((pid, tuple(devices))))
    assert [pid for pid, _ in opened] == [p.code for p in DEMO_PEOPLE]
    child = DEMO_PEOPLE[0]
    events = _play(scorer, make_reading, child.code, child.device.scenario, 40)
    raised = {e.kind: e for e in events if e.state in (AlertState.RAISED, AlertState.ESCALATED)}
    assert {"pews", "imci_fast_breathing", "imci_hypoxaemia", "fever"} <= set(raised)
    assert not {"news2", "tachycardia", "bp_crisis"} & set(raised)
    # complete PEWS: RR 48 (1) + mild distress (1) + SpO2 88 (4) + air (0) + HR 150 (2) + SBP 95 (0) + CRT 2 s (0)
    pews = raised["pews"]
    assert not pews.partial and pews.score == 8 and pews.level is AlertLevel.LOW_MEDIUM  # PEWS Medium
    assert raised["imci_hypoxaemia"].level is AlertLevel.HIGH


def test_demo_mother_gets_pregnancy_thresholds(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    apply(scorer)
    mother = DEMO_PEOPLE[1]
    events = _play(scorer, make_reading, mother.code, mother.device.scenario, 40)
    preg = [e for e in events if e.kind == "pregnancy_bp"]
    assert [(e.state, e.level) for e in preg] == [
        (AlertState.RAISED, AlertLevel.LOW_MEDIUM),  # 146/94: recheck in 4 h
        (AlertState.ESCALATED, AlertLevel.HIGH),  # 164/112: at once
    ]
    assert not any(e.kind == "bp_crisis" for e in events)
    score = next(s for s in scorer.scores() if s.subject == mother.code)
    assert "not_validated_in_pregnancy" in score.notes and score.pregnancy_bp == "severe-hypertension-in-pregnancy"
