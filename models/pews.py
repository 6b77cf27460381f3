"""National PEWS (NHS England SPOT NPEWS), children 0-15, reference implementation in plain Python.

Source: ``rcpch/digital-pews`` ``spec/npews-scoring-tables.generated.md`` and
``spec/escalation.md``, generated from the *Configuration Document for SPOT NPEWS (NHS England)*
and checked against the live NHS England charts by a clinician on 2026-06-30; tabulated in
shared/reference/clinical.md section 6.1. Only the tables were used, none of that project's code.

Age groups change on the 1st, 5th and 13th birthdays: 0 = 0-11 months, 1 = 1-4 years,
2 = 5-12 years, 3 = 13 years and over (the gateway uses NEWS2 from 16, so 13-15 here).

Bands: the source's bands "meet at x.99" and are continuous (clinical.md 6.1: 10-19.99 means
10 <= x < 20), so between them there is no gap. Where the source does leave a gap, the project's
rule (clinical.md section 5) puts it in the more severe band: SpO2 between 91 and 91.01 scores 4,
capillary refill between 2 and 3 s scores 2, an oxygen flow between 0 and 0.01 L/min scores 1.

Scored (added to the total): respiratory rate, respiratory distress (nurse: 0 none, 1 mild,
2 moderate, 3 severe -> 0/1/2/4 points), SpO2, oxygen support (flow in L/min; high flow, CPAP or
BiPAP score 4 whatever the flow), heart rate, systolic BP, capillary refill time (s).
Not added: temperature >= 38 or < 36 C gives a "think sepsis" prompt; AVPU V escalates to at
least High, P or U to Emergency, whatever the total. The ACVPU code's C (new confusion) is not
on the PEWS chart; it is treated like V here (a conservative project choice).

Escalation by total: 0 none; 1-4 Low (reassess within 60 min); 5-8 Medium (medical review
within 30 min); 9-12 High (within 15 min); >= 13 Emergency (immediate). PEWS is an inpatient
tool, not validated before hospital: at a commune station it guides referral.

Missing parameters are ``None``; the result is then *partial*: the total and the escalation are
lower bounds (a missing AVPU could raise the escalation, so it makes the result partial too).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PARAMETERS: tuple[str, ...] = (
    "resp_rate",
    "resp_distress",
    "spo2",
    "o2_support",
    "heart_rate",
    "bp_systolic",
    "cap_refill",
)

AGE_GROUPS: tuple[str, ...] = ("0-11 months", "1-4 years", "5-12 years", ">=13 years")


class Escalation(enum.IntEnum):
    NONE = 0
    LOW = 1  # total 1-4: reassess within 60 minutes
    MEDIUM = 2  # 5-8: medical review within 30 minutes
    HIGH = 3  # 9-12: review within 15 minutes (or AVPU V)
    EMERGENCY = 4  # >= 13: immediate (or AVPU P/U)


def _check_age(age_group: int) -> None:
    if age_group not in (0, 1, 2, 3):
        raise ValueError(f"age_group must be 0-3, got {age_group!r}")


def score_resp_rate(rr: float, age_group: int) -> int:
    _check_age(age_group)
    if rr < 10:
        return 4
    if age_group == 0:  # 0-11 months
        if rr < 20:
            return 2
        if rr < 30:
            return 1
        if rr < 50:
            return 0
        if rr < 60:
            return 1
        if rr < 70:
            return 2
        return 4
    if age_group == 1:  # 1-4 years
        if rr < 20:
            return 2
        if rr < 40:
            return 0
        if rr < 50:
            return 1
        if rr < 60:
            return 2
        return 4
    if age_group == 2:  # 5-12 years
        if rr < 15:
            return 2
        if rr < 20:
            return 1
        if rr < 25:
            return 0
        if rr < 40:
            return 1
        if rr < 50:
            return 2
        return 4
    if rr < 15:  # >= 13 years
        return 1
    if rr < 25:
        return 0
    if rr < 30:
        return 1
    if rr < 40:
        return 2
    return 4


def score_heart_rate(hr: float, age_group: int) -> int:
    _check_age(age_group)
    if age_group == 0:
        if hr < 80:
            return 4
        if hr < 90:
            return 2
        if hr < 110:
            return 1
        if hr < 150:
            return 0
        if hr < 170:
            return 1
        if hr < 180:
            return 2
        return 4
    if age_group == 1:
        if hr < 60:
            return 4
        if hr < 70:
            return 2
        if hr < 90:
            return 1
        if hr < 140:
            return 0
        if hr < 150:
            return 1
        if hr < 170:
            return 2
        return 4
    if age_group == 2:
        if hr < 60:
            return 4
        if hr < 70:
            return 2
        if hr < 80:
            return 1
        if hr < 120:
            return 0
        if hr < 140:
            return 1
        if hr < 160:
            return 2
        return 4
    if hr < 50:
        return 4
    if hr < 60:
        return 2
    if hr < 70:
        return 1
    if hr < 100:
        return 0
    if hr < 120:
        return 1
    if hr < 130:
        return 2
    return 4


def score_systolic(sbp: float, age_group: int) -> int:
    _check_age(age_group)
    if age_group == 0:
        if sbp < 50:
            return 4
        if sbp < 60:
            return 2
        if sbp < 70:
            return 1
        if sbp < 90:
            return 0
        if sbp < 100:
            return 1
        if sbp < 110:
            return 2
        return 4
    if age_group == 1:
        if sbp < 50:
            return 4
        if sbp < 60:
            return 2
        if sbp < 80:
            return 1
        if sbp < 100:
            return 0
        if sbp < 120:
            return 1
        if sbp < 130:
            return 2
        return 4
    if age_group == 2:
        if sbp < 70:
            return 4
        if sbp < 80:
            return 2
        if sbp < 90:
            return 1
        if sbp < 110:
            return 0
        if sbp < 120:
            return 1
        if sbp < 130:
            return 2
        return 4
    if sbp < 80:
        return 4
    if sbp < 90:
        return 2
    if sbp < 100:
        return 1
    if sbp < 120:
        return 0
    if sbp < 130:
        return 1
    if sbp < 140:
        return 2
    return 4


def score_spo2(spo2: float) -> int:
    if spo2 < 91.01:  # <= 91, and the gap (91, 91.01)
        return 4
    if spo2 < 95:  # 91.01-94.99
        return 1
    return 0


def score_o2_support(flow_l_min: float, high_flow: bool = False) -> int:
    """Flow in L/min (0 = room air); high flow, CPAP or BiPAP score 4 whatever the flow."""
    if high_flow:
        return 4
    if flow_l_min <= 0:
        return 0
    if flow_l_min < 2:  # (0, 0.01) gap and 0.01-1.99
        return 1
    if flow_l_min < 6:
        return 2
    return 4


def score_resp_distress(severity: int) -> int:
    """0 none, 1 mild, 2 moderate, 3 severe."""
    if severity not in (0, 1, 2, 3):
        raise ValueError(f"resp_distress must be 0-3, got {severity!r}")
    return (0, 1, 2, 4)[severity]


def score_cap_refill(seconds: float) -> int:
    return 0 if seconds <= 2 else 2  # >= 3 s scores 2, and so does the gap (2, 3)


def escalation_from_total(total: int) -> Escalation:
    if total >= 13:
        return Escalation.EMERGENCY
    if total >= 9:
        return Escalation.HIGH
    if total >= 5:
        return Escalation.MEDIUM
    if total >= 1:
        return Escalation.LOW
    return Escalation.NONE


def escalation_from_avpu(acvpu: int) -> Escalation:
    """ACVPU code 0=A 1=C 2=V 3=P 4=U: V (and C) -> High, P/U -> Emergency."""
    if acvpu >= 3:
        return Escalation.EMERGENCY
    if acvpu >= 1:
        return Escalation.HIGH
    return Escalation.NONE


def think_sepsis(temp_c: float) -> bool:
    return temp_c >= 38.0 or temp_c < 36.0


@dataclass(frozen=True, slots=True)
class PewsResult:
    age_group: int
    subscores: tuple[int | None, ...]  # in PARAMETERS order; None = missing
    total: int  # sum of the known sub-scores (a lower bound when partial)
    escalation: Escalation  # max of the total's level and the AVPU trigger (a lower bound when partial)
    avpu_known: bool
    sepsis: bool | None  # think-sepsis prompt from temperature; None if no temperature

    @property
    def missing(self) -> tuple[str, ...]:
        gone = tuple(p for p, s in zip(PARAMETERS, self.subscores, strict=True) if s is None)
        return gone if self.avpu_known else (*gone, "consciousness")

    @property
    def partial(self) -> bool:
        return bool(self.missing)


def pews(
    *,
    age_group: int,
    resp_rate: float | None = None,
    resp_distress: int | None = None,
    spo2: float | None = None,
    o2_flow: float | None = None,
    o2_high_flow: bool = False,
    heart_rate: float | None = None,
    bp_systolic: float | None = None,
    cap_refill: float | None = None,
    consciousness: int | None = None,
    body_temp: float | None = None,
) -> PewsResult:
    """Score one vital set. ``o2_flow`` None = oxygen support not recorded (0 = room air)."""
    _check_age(age_group)
    if o2_high_flow:
        o2: int | None = 4
    else:
        o2 = None if o2_flow is None else score_o2_support(o2_flow)
    subs: tuple[int | None, ...] = (
        None if resp_rate is None else score_resp_rate(resp_rate, age_group),
        None if resp_distress is None else score_resp_distress(resp_distress),
        None if spo2 is None else score_spo2(spo2),
        o2,
        None if heart_rate is None else score_heart_rate(heart_rate, age_group),
        None if bp_systolic is None else score_systolic(bp_systolic, age_group),
        None if cap_refill is None else score_cap_refill(cap_refill),
    )
    total = sum(s for s in subs if s is not None)
    level = escalation_from_total(total)
    if consciousness is not None:
        level = max(level, escalation_from_avpu(consciousness))
    return PewsResult(
        age_group=age_group,
        subscores=subs,
        total=total,
        escalation=Escalation(level),
        avpu_known=consciousness is not None,
        sepsis=None if body_temp is None else think_sepsis(body_temp),
    )
