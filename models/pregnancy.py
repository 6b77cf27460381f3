"""Blood pressure in pregnancy, reference implementation.

Source: ISSHP recommendations (*Hypertension* 2021, PMC8678921), as summarised in
shared/reference/clinical.md section 6.3:

* hypertension: SBP >= 140 and/or DBP >= 90 mmHg, to be confirmed by a second reading at least
  4 h later: the gateway asks for that recheck;
* severe hypertension: SBP >= 160 and/or DBP >= 110 mmHg: needs urgent treatment and referral,
  so the gateway alerts at once and does not wait for a second reading.

Between the steps (clinical.md section 5): the thresholds are in whole mmHg, so the gap below
each counts as reaching it: SBP 139.5 is hypertension, 159.5 severe; DBP 89.5, 109.5 likewise.

No maternal early-warning *score* is implemented: NHS England's national MEWS (Gerry et al., BMJ
Medicine 2024, PMC11097818) exists, but its per-parameter bands were not found in a primary
source the project could cite, so they are left out. NEWS2 is not validated in pregnancy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

HYPERTENSION_SYSTOLIC_ABOVE = 139.0  # >= 140, and the gap (139, 140)
HYPERTENSION_DIASTOLIC_ABOVE = 89.0  # >= 90
SEVERE_SYSTOLIC_ABOVE = 159.0  # >= 160
SEVERE_DIASTOLIC_ABOVE = 109.0  # >= 110
RECHECK_AFTER_S = 4 * 3600.0  # confirm a non-severe reading at least 4 h later


class PregnancyBp(enum.IntEnum):
    NORMAL = 0
    HYPERTENSION = 1  # recheck at least 4 h later
    SEVERE = 2  # alert at once: urgent treatment and referral

    @property
    def label(self) -> str:
        return ("normal", "hypertension-in-pregnancy", "severe-hypertension-in-pregnancy")[self]


@dataclass(frozen=True, slots=True)
class PregnancyBpResult:
    level: PregnancyBp | None  # None when both components are missing
    causes: tuple[str, ...]  # the components at or above the reported level's threshold
    partial: bool  # one component missing: the level is a lower bound


def pregnancy_bp(*, bp_systolic: float | None = None, bp_diastolic: float | None = None) -> PregnancyBpResult:
    if bp_systolic is None and bp_diastolic is None:
        return PregnancyBpResult(None, (), True)
    severe = []
    high = []
    if bp_systolic is not None:
        if bp_systolic > SEVERE_SYSTOLIC_ABOVE:
            severe.append("bp_systolic")
        if bp_systolic > HYPERTENSION_SYSTOLIC_ABOVE:
            high.append("bp_systolic")
    if bp_diastolic is not None:
        if bp_diastolic > SEVERE_DIASTOLIC_ABOVE:
            severe.append("bp_diastolic")
        if bp_diastolic > HYPERTENSION_DIASTOLIC_ABOVE:
            high.append("bp_diastolic")
    partial = bp_systolic is None or bp_diastolic is None
    if severe:
        return PregnancyBpResult(PregnancyBp.SEVERE, tuple(severe), partial)
    if high:
        return PregnancyBpResult(PregnancyBp.HYPERTENSION, tuple(high), partial)
    return PregnancyBpResult(PregnancyBp.NORMAL, (), partial)
