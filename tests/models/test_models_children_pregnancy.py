"""PEWS, WHO IMCI flags and pregnancy BP against their published tables (clinical.md section 6),
typed in from the source tables row by row, independently of models.tables."""

from __future__ import annotations

import pytest

from models import imci, pews, pregnancy
from models.pews import Escalation

# (age group, value, points) from the SPOT NPEWS tables (rcpch/digital-pews), every band edge.
RR = [
    (0, 9.99, 4), (0, 10, 2), (0, 19.99, 2), (0, 20, 1), (0, 29.99, 1), (0, 30, 0), (0, 49.99, 0),
    (0, 50, 1), (0, 59.99, 1), (0, 60, 2), (0, 69.99, 2), (0, 70, 4),
    (1, 9.99, 4), (1, 10, 2), (1, 19.99, 2), (1, 20, 0), (1, 39.99, 0), (1, 40, 1), (1, 49.99, 1),
    (1, 50, 2), (1, 59.99, 2), (1, 60, 4),
    (2, 9.99, 4), (2, 10, 2), (2, 14.99, 2), (2, 15, 1), (2, 19.99, 1), (2, 20, 0), (2, 24.99, 0),
    (2, 25, 1), (2, 39.99, 1), (2, 40, 2), (2, 49.99, 2), (2, 50, 4),
    (3, 9.99, 4), (3, 10, 1), (3, 14.99, 1), (3, 15, 0), (3, 24.99, 0), (3, 25, 1), (3, 29.99, 1),
    (3, 30, 2), (3, 39.99, 2), (3, 40, 4),
]  # fmt: skip
HR = [
    (0, 79.99, 4), (0, 80, 2), (0, 90, 1), (0, 110, 0), (0, 149.99, 0), (0, 150, 1), (0, 170, 2), (0, 180, 4),
    (1, 59.99, 4), (1, 60, 2), (1, 70, 1), (1, 90, 0), (1, 139.99, 0), (1, 140, 1), (1, 150, 2), (1, 170, 4),
    (2, 59.99, 4), (2, 60, 2), (2, 70, 1), (2, 80, 0), (2, 119.99, 0), (2, 120, 1), (2, 140, 2), (2, 160, 4),
    (3, 49.99, 4), (3, 50, 2), (3, 60, 1), (3, 70, 0), (3, 99.99, 0), (3, 100, 1), (3, 120, 2), (3, 130, 4),
]  # fmt: skip
SBP = [
    (0, 49.99, 4), (0, 50, 2), (0, 60, 1), (0, 70, 0), (0, 89.99, 0), (0, 90, 1), (0, 100, 2), (0, 110, 4),
    (1, 49.99, 4), (1, 50, 2), (1, 60, 1), (1, 80, 0), (1, 99.99, 0), (1, 100, 1), (1, 120, 2), (1, 130, 4),
    (2, 69.99, 4), (2, 70, 2), (2, 80, 1), (2, 90, 0), (2, 109.99, 0), (2, 110, 1), (2, 120, 2), (2, 130, 4),
    (3, 79.99, 4), (3, 80, 2), (3, 90, 1), (3, 100, 0), (3, 119.99, 0), (3, 120, 1), (3, 130, 2), (3, 140, 4),
]  # fmt: skip


@pytest.mark.parametrize(("age", "value", "points"), RR)
def test_pews_resp_rate(age: int, value: float, points: int) -> None:
    assert pews.score_resp_rate(value, age) == points


@pytest.mark.parametrize(("age", "value", "points"), HR)
def test_pews_heart_rate(age: int, value: float, points: int) -> None:
    assert pews.score_heart_rate(value, age) == points


@pytest.mark.parametrize(("age", "value", "points"), SBP)
def test_pews_systolic(age: int, value: float, points: int) -> None:
    assert pews.score_systolic(value, age) == points


def test_pews_all_ages_parameters_and_gaps() -> None:
    assert [pews.score_spo2(v) for v in (85, 91, 91.005, 91.01, 94.99, 95, 100)] == [4, 4, 4, 1, 1, 0, 0]
    assert [pews.score_o2_support(v) for v in (0, 0.005, 0.01, 1.99, 2, 5.99, 6, 15)] == [0, 1, 1, 1, 2, 2, 4, 4]
    assert pews.score_o2_support(1, high_flow=True) == 4
    assert [pews.score_resp_distress(v) for v in (0, 1, 2, 3)] == [0, 1, 2, 4]
    assert [pews.score_cap_refill(v) for v in (1, 2, 2.5, 3, 5)] == [0, 0, 2, 2, 2]  # gap (2, 3): 2


@pytest.mark.parametrize(
    ("total", "level"),
    [(0, Escalation.NONE), (1, Escalation.LOW), (4, Escalation.LOW), (5, Escalation.MEDIUM), (8, Escalation.MEDIUM),
     (9, Escalation.HIGH), (12, Escalation.HIGH), (13, Escalation.EMERGENCY), (26, Escalation.EMERGENCY)],
)  # fmt: skip
def test_pews_escalation_table(total: int, level: Escalation) -> None:
    assert pews.escalation_from_total(total) is level


def test_pews_avpu_and_temperature_are_not_added_but_escalate_and_prompt() -> None:
    base = dict(age_group=1, resp_rate=30, resp_distress=0, spo2=98, o2_flow=0, heart_rate=120, bp_systolic=95,
                cap_refill=1)  # fmt: skip
    calm = pews.pews(**base, consciousness=0, body_temp=37.0)  # type: ignore[arg-type]
    assert (calm.total, calm.escalation, calm.partial, calm.sepsis) == (0, Escalation.NONE, False, False)
    voice = pews.pews(**base, consciousness=2, body_temp=38.0)  # type: ignore[arg-type]
    assert voice.total == 0 and voice.escalation is Escalation.HIGH and voice.sepsis is True
    pain = pews.pews(**base, consciousness=3, body_temp=35.9)  # type: ignore[arg-type]
    assert pain.escalation is Escalation.EMERGENCY and pain.sepsis is True
    no_avpu = pews.pews(**base)  # type: ignore[arg-type]
    assert no_avpu.partial and no_avpu.missing == ("consciousness",) and no_avpu.sepsis is None


def test_pews_partial_is_a_lower_bound() -> None:
    r = pews.pews(age_group=0, spo2=90, heart_rate=185)
    assert r.total == 8 and r.escalation is Escalation.MEDIUM and r.partial
    assert set(r.missing) == {"resp_rate", "resp_distress", "o2_support", "bp_systolic", "cap_refill", "consciousness"}
    with pytest.raises(ValueError):
        pews.pews(age_group=4)


@pytest.mark.parametrize(
    ("age", "rr", "fast"),
    [(imci.ImciAge.UNDER_2_MONTHS, 59, False), (imci.ImciAge.UNDER_2_MONTHS, 59.5, True),
     (imci.ImciAge.UNDER_2_MONTHS, 60, True), (imci.ImciAge.MONTHS_2_11, 49, False),
     (imci.ImciAge.MONTHS_2_11, 50, True), (imci.ImciAge.MONTHS_12_59, 39, False),
     (imci.ImciAge.MONTHS_12_59, 39.5, True), (imci.ImciAge.MONTHS_12_59, 40, True)],
)  # fmt: skip
def test_imci_fast_breathing_by_age(age: imci.ImciAge, rr: float, fast: bool) -> None:
    assert imci.fast_breathing(rr, age) is fast


def test_imci_hypoxaemia_and_young_infant_temperature() -> None:
    assert imci.hypoxaemia(89.9) and not imci.hypoxaemia(90.0)
    assert [imci.young_infant_temperature(t) for t in (35.4, 35.5, 37.4, 37.45, 37.5)] == [
        True,
        False,
        False,
        True,
        True,
    ]
    kinds = [f.kind for f in imci.flags(imci.ImciAge.UNDER_2_MONTHS, resp_rate=64, spo2=88, body_temp=38.0)]
    assert kinds == ["fast_breathing", "hypoxaemia", "young_infant_temperature"]
    # the temperature flag is for young infants only
    assert [f.kind for f in imci.flags(imci.ImciAge.MONTHS_12_59, resp_rate=30, spo2=97, body_temp=38.0)] == []


@pytest.mark.parametrize(
    ("sbp", "dbp", "level"),
    [(120, 80, pregnancy.PregnancyBp.NORMAL), (139, 89, pregnancy.PregnancyBp.NORMAL),
     (139.5, 80, pregnancy.PregnancyBp.HYPERTENSION), (140, 80, pregnancy.PregnancyBp.HYPERTENSION),
     (120, 90, pregnancy.PregnancyBp.HYPERTENSION), (159, 109, pregnancy.PregnancyBp.HYPERTENSION),
     (159.5, 80, pregnancy.PregnancyBp.SEVERE), (160, 80, pregnancy.PregnancyBp.SEVERE),
     (130, 110, pregnancy.PregnancyBp.SEVERE), (130, 109.5, pregnancy.PregnancyBp.SEVERE)],
)  # fmt: skip
def test_pregnancy_thresholds(sbp: float, dbp: float, level: pregnancy.PregnancyBp) -> None:
    r = pregnancy.pregnancy_bp(bp_systolic=sbp, bp_diastolic=dbp)
    assert r.level is level and not r.partial


def test_pregnancy_one_component() -> None:
    r = pregnancy.pregnancy_bp(bp_diastolic=112)
    assert r.level is pregnancy.PregnancyBp.SEVERE and r.partial and r.causes == ("bp_diastolic",)
    assert pregnancy.pregnancy_bp().level is None
