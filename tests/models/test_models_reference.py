"""The plain-Python references against the published tables (clinical.md §3.1, §3.2, §3.4).

Expected values are typed in from the chart, row by row, independently of models.tables.
"""

from __future__ import annotations

import pytest

from models import bp, events, news2
from models.news2 import Risk

# (value, points) pairs read off RCP NEWS2 chart 1 (clinical.md §3.1), every band edge.
RR = [(5, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (40, 3)]
SPO2_1 = [(80, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SPO2_2_AIR = [(83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0), (93, 0), (99, 0)]
SPO2_2_O2 = [
    (83, 3),
    (85, 2),
    (87, 1),
    (88, 0),
    (92, 0),
    (93, 1),
    (94, 1),
    (95, 2),
    (96, 2),
    (97, 3),
    (100, 3),
]
SBP = [(70, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)]
PULSE = [
    (30, 3),
    (40, 3),
    (41, 1),
    (50, 1),
    (51, 0),
    (90, 0),
    (91, 1),
    (110, 1),
    (111, 2),
    (130, 2),
    (131, 3),
]
TEMP = [
    (34.0, 3),
    (35.0, 3),
    (35.1, 1),
    (36.0, 1),
    (36.1, 0),
    (38.0, 0),
    (38.1, 1),
    (39.0, 1),
    (39.1, 2),
    (41.0, 2),
]


@pytest.mark.parametrize(("value", "points"), RR)
def test_resp_rate(value: float, points: int) -> None:
    assert news2.score_resp_rate(value) == points


@pytest.mark.parametrize(("value", "points"), SPO2_1)
def test_spo2_scale1(value: float, points: int) -> None:
    assert news2.score_spo2_scale1(value) == points


@pytest.mark.parametrize(("value", "points"), SPO2_2_AIR)
def test_spo2_scale2_on_air(value: float, points: int) -> None:
    assert news2.score_spo2_scale2(value, on_oxygen=False) == points


@pytest.mark.parametrize(("value", "points"), SPO2_2_O2)
def test_spo2_scale2_on_oxygen(value: float, points: int) -> None:
    assert news2.score_spo2_scale2(value, on_oxygen=True) == points


def test_spo2_scale2_needs_oxygen_status_above_92() -> None:
    assert news2.score_spo2_scale2(95, on_oxygen=None) is None
    assert news2.score_spo2_scale2(85, on_oxygen=None) == 2


@pytest.mark.parametrize(("value", "points"), SBP)
def test_systolic(value: float, points: int) -> None:
    assert news2.score_systolic(value) == points


@pytest.mark.parametrize(("value", "points"), PULSE)
def test_pulse(value: float, points: int) -> None:
    assert news2.score_pulse(value) == points


@pytest.mark.parametrize(("value", "points"), TEMP)
def test_temperature(value: float, points: int) -> None:
    assert news2.score_temperature(value) == points


# clinical.md section 5: a value between two printed bands scores in the more severe one.
GAPS = [
    (news2.score_temperature, 35.05, 3),  # between <=35.0 (3) and 35.1-36.0 (1)
    (news2.score_temperature, 36.05, 1),
    (news2.score_temperature, 38.04, 1),  # between 36.1-38.0 (0) and 38.1-39.0 (1)
    (news2.score_temperature, 39.05, 2),
    (news2.score_spo2_scale1, 95.5, 1),
    (news2.score_spo2_scale1, 91.5, 3),
    (news2.score_spo2_scale1, 93.99, 2),
    (news2.score_systolic, 90.5, 3),
    (news2.score_systolic, 100.5, 2),
    (news2.score_systolic, 110.5, 1),
    (news2.score_systolic, 219.5, 3),
    (news2.score_pulse, 40.5, 3),
    (news2.score_pulse, 50.5, 1),
    (news2.score_pulse, 90.5, 1),
    (news2.score_pulse, 110.5, 2),
    (news2.score_pulse, 130.5, 3),
    (news2.score_resp_rate, 8.5, 3),
    (news2.score_resp_rate, 11.5, 1),
    (news2.score_resp_rate, 20.5, 2),
    (news2.score_resp_rate, 24.5, 3),
]


@pytest.mark.parametrize(("fn", "value", "points"), GAPS)
def test_gap_values_score_in_the_more_severe_band(fn: object, value: float, points: int) -> None:
    assert fn(value) == points  # type: ignore[operator]


def test_values_inside_a_band_are_not_moved() -> None:
    assert news2.score_temperature(38.0) == 0 and news2.score_temperature(36.1) == 0
    assert news2.score_pulse(90.0) == 0 and news2.score_pulse(51.0) == 0
    assert news2.score_spo2_scale1(96.0) == 0 and news2.score_spo2_scale1(99.9) == 0


def test_scale2_gaps() -> None:
    assert news2.score_spo2_scale2(83.5, on_oxygen=False) == 3
    assert news2.score_spo2_scale2(87.5, on_oxygen=True) == 1
    assert news2.score_spo2_scale2(92.5, on_oxygen=True) == 1  # between 88-92 (0) and 93-94 on O2 (1)
    assert news2.score_spo2_scale2(92.5, on_oxygen=False) == 0  # both neighbours score 0 on air
    assert news2.score_spo2_scale2(92.5, on_oxygen=None) is None


@pytest.mark.parametrize("letter_code", [1, 2, 3, 4])
def test_any_of_cvpu_scores_three(letter_code: int) -> None:
    assert news2.score_consciousness(letter_code) == 3
    assert news2.score_consciousness(0) == 0


@pytest.mark.parametrize(
    ("total", "red", "risk"),
    [(0, False, Risk.NONE), (1, False, Risk.LOW), (4, False, Risk.LOW), (3, True, Risk.LOW_MEDIUM),
     (4, True, Risk.LOW_MEDIUM), (5, False, Risk.MEDIUM), (6, True, Risk.MEDIUM), (7, False, Risk.HIGH),
     (20, True, Risk.HIGH)],
)  # fmt: skip
def test_clinical_response_thresholds(total: int, red: bool, risk: Risk) -> None:
    assert news2.risk_from(total, red) is risk


def test_full_vital_set_and_maximum() -> None:
    r = news2.news2(
        resp_rate=16,
        spo2=97,
        on_oxygen=False,
        bp_systolic=120,
        heart_rate=70,
        consciousness=0,
        body_temp=37.0,
    )
    assert (r.total, r.partial, r.risk) == (0, False, Risk.NONE)
    worst = news2.news2(
        resp_rate=30, spo2=80, on_oxygen=True, bp_systolic=80, heart_rate=150, consciousness=4, body_temp=34
    )
    assert worst.total == 3 + 3 + 2 + 3 + 3 + 3 + 3 == 20 and worst.risk is Risk.HIGH


def test_missing_parameters_make_partial_never_normal() -> None:
    r = news2.news2(spo2=85, heart_rate=80)
    assert r.partial and set(r.missing) == {
        "resp_rate",
        "air_oxygen",
        "bp_systolic",
        "consciousness",
        "body_temp",
    }
    assert r.total == 3 and r.red and r.risk is Risk.LOW_MEDIUM
    empty = news2.news2()
    assert empty.partial and len(empty.missing) == 7 and empty.total == 0


@pytest.mark.parametrize(
    ("sbp", "dbp", "category", "crisis"),
    [(129, 84, bp.BpCategory.NORMAL, False), (130, 70, bp.BpCategory.HIGH_NORMAL, False),
     (120, 85, bp.BpCategory.HIGH_NORMAL, False), (139, 89, bp.BpCategory.HIGH_NORMAL, False),
     (140, 80, bp.BpCategory.GRADE_1, False), (125, 90, bp.BpCategory.GRADE_1, False),
     (159, 99, bp.BpCategory.GRADE_1, False), (160, 80, bp.BpCategory.GRADE_2, False),
     (120, 100, bp.BpCategory.GRADE_2, False), (179, 109, bp.BpCategory.GRADE_2, False),
     (180, 90, bp.BpCategory.GRADE_2, True), (150, 110, bp.BpCategory.GRADE_2, True)],
)  # fmt: skip
def test_ish2020_categories_and_crisis(sbp: float, dbp: float, category: bp.BpCategory, crisis: bool) -> None:
    r = bp.bp_category(bp_systolic=sbp, bp_diastolic=dbp)
    assert (r.category, r.crisis, r.partial) == (category, crisis, False)


@pytest.mark.parametrize(
    ("sbp", "dbp", "category", "crisis"),
    [(129.9, 84.9, bp.BpCategory.NORMAL, False), (139.5, 60, bp.BpCategory.GRADE_1, False),
     (120, 89.5, bp.BpCategory.GRADE_1, False), (159.5, 60, bp.BpCategory.GRADE_2, False),
     (120, 99.5, bp.BpCategory.GRADE_2, False), (179.5, 60, bp.BpCategory.GRADE_2, True),
     (120, 109.5, bp.BpCategory.GRADE_2, True), (179.0, 109.0, bp.BpCategory.GRADE_2, False)],
)  # fmt: skip
def test_bp_gaps(sbp: float, dbp: float, category: bp.BpCategory, crisis: bool) -> None:
    r = bp.bp_category(bp_systolic=sbp, bp_diastolic=dbp)
    assert (r.category, r.crisis) == (category, crisis)


def test_detectors_use_the_unrounded_value() -> None:
    assert events.detect(_rule("hypothermia"), [(0.0, 34.95)], max_gap_s=15) is not None
    assert events.detect(_rule("fever"), [(0.0, 38.0)], max_gap_s=15) is not None
    assert events.detect(_rule("fever"), [(0.0, 37.99)], max_gap_s=15) is None
    assert events.detect(_rule("desaturation").with_duration(0), [(0.0, 89.9)], max_gap_s=15) is not None
    assert events.detect(_rule("tachycardia").with_duration(0), [(0.0, 100.4)], max_gap_s=15) is not None
    assert events.detect(_rule("bradycardia").with_duration(0), [(0.0, 49.6)], max_gap_s=15) is not None


def test_bp_one_component_is_partial() -> None:
    r = bp.bp_category(bp_systolic=185)
    assert r.partial and r.crisis and r.category is bp.BpCategory.GRADE_2
    assert bp.bp_category().category is None


def _rule(kind: str) -> events.EventRule:
    return next(r for r in events.DEFAULT_RULES if r.kind == kind)


def test_desaturation_needs_the_duration() -> None:
    rule = _rule("desaturation")
    samples = [(float(t), 85.0) for t in range(10)]  # spans 9 s
    assert events.detect(rule, samples, max_gap_s=15) is None
    ev = events.detect(rule, [*samples, (10.0, 86.0)], max_gap_s=15)
    assert ev is not None and ev.duration_s == 10 and ev.worst == 85 and ev.samples == 11


def test_run_broken_by_a_normal_value_or_a_gap() -> None:
    rule = _rule("desaturation")
    broken = [(0.0, 85.0), (5.0, 95.0), (6.0, 85.0), (12.0, 85.0)]
    assert events.detect(rule, broken, max_gap_s=15) is None
    gap = [(0.0, 85.0), (20.0, 85.0)]
    assert events.detect(rule, gap, max_gap_s=15) is None
    assert events.detect(rule, gap, max_gap_s=30) is not None


def test_temperature_events_need_one_reading() -> None:
    assert events.detect(_rule("fever"), [(0.0, 39.5)], max_gap_s=15) is not None
    assert events.detect(_rule("fever"), [(0.0, 37.9)], max_gap_s=15) is None
    assert events.detect(_rule("hypothermia"), [(0.0, 34.9)], max_gap_s=15) is not None
    assert events.detect(_rule("hypothermia"), [(0.0, 35.0)], max_gap_s=15) is None


def test_heart_rate_events() -> None:
    fast = [(float(t), 120.0) for t in range(0, 61, 5)]
    slow = [(float(t), 45.0) for t in range(0, 61, 5)]
    assert events.detect(_rule("tachycardia"), fast, max_gap_s=15) is not None
    assert events.detect(_rule("tachycardia"), fast[:-1], max_gap_s=15) is None
    assert events.detect(_rule("bradycardia"), slow, max_gap_s=15) is not None
    assert events.detect(_rule("bradycardia"), fast, max_gap_s=15) is None
