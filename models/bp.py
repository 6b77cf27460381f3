"""Blood-pressure category, reference implementation in plain Python.

Source: ISH 2020 Global Hypertension Practice Guidelines (Unger et al., J Hypertens 2020;38:982),
office BP in adults, as summarised in shared/reference/clinical.md §3.4:

* normal: SBP <130 and DBP <85
* high-normal: SBP 130–139 and/or DBP 85–89
* grade 1 hypertension: SBP 140–159 and/or DBP 90–99
* grade 2 hypertension: SBP ≥160 and/or DBP ≥100

The higher of the two components decides. One reading gives a category, not a diagnosis.

Severe elevation ("crisis"): SBP ≥180 and/or DBP ≥110, grade 3 of the older WHO/ISH
classification, the threshold commonly used to flag hypertensive urgency/emergency for immediate
review (clinical.md §3.4). Separate from NEWS2, which scores only SBP ≥220.

Between the steps (clinical.md section 5): device values are not rounded; bands printed as
closed ranges (130-139, 140-159) leave gaps that score in the more severe band, so SBP 139.5 is
grade 1 and 159.5 grade 2, DBP 89.5 grade 1 and 99.5 grade 2; "normal" is printed as ``<130`` /
``<85``, so 129.9 is normal. Severe elevation is SBP > 179 or DBP > 109 (the gaps below 180 and
110 count as severe). A missing component is ``None``:
the category is then decided by the other one alone (a lower bound, reported as partial), and
the crisis flag is set if the present component crosses its threshold.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BpCategory(enum.IntEnum):
    NORMAL = 0
    HIGH_NORMAL = 1
    GRADE_1 = 2
    GRADE_2 = 3

    @property
    def label(self) -> str:
        return ("normal", "high-normal", "grade-1-hypertension", "grade-2-hypertension")[self]


CRISIS_SYSTOLIC_ABOVE = 179.0  # mmHg: severe when SBP > 179 (>= 180 and the gap below it)
CRISIS_DIASTOLIC_ABOVE = 109.0  # mmHg: severe when DBP > 109


def systolic_category(sbp: float) -> BpCategory:
    if sbp < 130:
        return BpCategory.NORMAL
    if sbp <= 139:  # 130-139
        return BpCategory.HIGH_NORMAL
    if sbp <= 159:  # (139, 140) and 140-159
        return BpCategory.GRADE_1
    return BpCategory.GRADE_2  # (159, 160) and >=160


def diastolic_category(dbp: float) -> BpCategory:
    if dbp < 85:
        return BpCategory.NORMAL
    if dbp <= 89:  # 85-89
        return BpCategory.HIGH_NORMAL
    if dbp <= 99:  # (89, 90) and 90-99
        return BpCategory.GRADE_1
    return BpCategory.GRADE_2  # (99, 100) and >=100


def severe_systolic(sbp: float) -> bool:
    return sbp > CRISIS_SYSTOLIC_ABOVE


def severe_diastolic(dbp: float) -> bool:
    return dbp > CRISIS_DIASTOLIC_ABOVE


@dataclass(frozen=True, slots=True)
class BpResult:
    category: BpCategory | None  # None only when both components are missing
    crisis: bool | None  # None only when both components are missing
    partial: bool


def bp_category(*, bp_systolic: float | None = None, bp_diastolic: float | None = None) -> BpResult:
    cats = []
    crisis = []
    if bp_systolic is not None:
        cats.append(systolic_category(bp_systolic))
        crisis.append(severe_systolic(bp_systolic))
    if bp_diastolic is not None:
        cats.append(diastolic_category(bp_diastolic))
        crisis.append(severe_diastolic(bp_diastolic))
    if not cats:
        return BpResult(category=None, crisis=None, partial=True)
    return BpResult(category=max(cats), crisis=any(crisis), partial=len(cats) < 2)
