"""Who is being measured: the visit's age band and pregnancy, which choose the score.

NEWS2 applies to adults (>= 16) who are not pregnant (RCP 2017); children 0-15 get the national
PEWS, under-5s also the WHO IMCI flags, pregnancy its own thresholds (clinical.md section 6).
This module is the contract between the visit (dashboard) and the scorer; it holds no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date


class AgeBand(enum.StrEnum):
    """Age bands at the boundaries the scores use (PEWS changes on the 1st, 5th and 13th
    birthdays; WHO IMCI also at 2 months; NEWS2 from the 16th)."""

    UNDER_2_MONTHS = "0-1m"
    MONTHS_2_11 = "2-11m"
    YEARS_1_4 = "1-4y"
    YEARS_5_12 = "5-12y"
    YEARS_13_15 = "13-15y"
    ADULT = "16y+"

    @property
    def is_child(self) -> bool:
        return self is not AgeBand.ADULT


def age_band_on(birth: date, on: date) -> AgeBand:
    """The band of someone born on ``birth``, on the day ``on`` (a birthday counts from its day)."""
    if on < birth:
        raise ValueError("date of birth is after the visit")
    months = (on.year - birth.year) * 12 + (on.month - birth.month) - (1 if on.day < birth.day else 0)
    if months < 2:
        return AgeBand.UNDER_2_MONTHS
    if months < 12:
        return AgeBand.MONTHS_2_11
    years = months // 12
    if years < 5:
        return AgeBand.YEARS_1_4
    if years < 13:
        return AgeBand.YEARS_5_12
    if years < 16:
        return AgeBand.YEARS_13_15
    return AgeBand.ADULT


@dataclass(frozen=True, slots=True)
class PatientContext:
    """What the visit knows about the person. ``age_band=None``: age not recorded (NEWS2 is used
    and labelled so)."""

    age_band: AgeBand | None = None
    pregnant: bool = False
