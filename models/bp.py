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

Values are rounded to whole mmHg (half up) first, as in NEWS2. A missing component is ``None``:
the category is then decided by the other one alone (a lower bound, reported as partial), and
the crisis flag is set if the present component crosses its threshold.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class BpCategory(enum.IntEnum):
    NORMAL = 0
    HIGH_NORMAL = 1
    GRADE_1 = 2
    GRADE_2 = 3

    @property
    def label(self) -> str:
        return ("normal", "high-normal", "grade-1-hypertension", "grade-2-hypertension")[self]


CRISIS_SYSTOLIC = 180  # mmHg, ≥
CRISIS_DIASTOLIC = 110  # mmHg, ≥


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def systolic_category(sbp: float) -> BpCategory:
    s = _round(sbp)
    if s < 130:
        return BpCategory.NORMAL
    if s < 140:  # 130–139
        return BpCategory.HIGH_NORMAL
    if s < 160:  # 140–159
        return BpCategory.GRADE_1
    return BpCategory.GRADE_2  # ≥160


def diastolic_category(dbp: float) -> BpCategory:
    d = _round(dbp)
    if d < 85:
        return BpCategory.NORMAL
    if d < 90:  # 85–89
        return BpCategory.HIGH_NORMAL
    if d < 100:  # 90–99
        return BpCategory.GRADE_1
    return BpCategory.GRADE_2  # ≥100


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
        crisis.append(_round(bp_systolic) >= CRISIS_SYSTOLIC)
    if bp_diastolic is not None:
        cats.append(diastolic_category(bp_diastolic))
        crisis.append(_round(bp_diastolic) >= CRISIS_DIASTOLIC)
    if not cats:
        return BpResult(category=None, crisis=None, partial=True)
    return BpResult(category=max(cats), crisis=any(crisis), partial=len(cats) < 2)
