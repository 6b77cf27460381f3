"""WHO IMCI danger flags for children under 5 (primary care), reference implementation.

Sources (shared/reference/clinical.md section 6.2):

* Fast breathing, counted for a full minute with the child calm: < 2 months >= 60 /min;
  2-11 months >= 50 /min; 12-59 months >= 40 /min (WHO IMCI; thresholds as reproduced in
  PMC5193399 Table 1 and in Arch Dis Child; the WHO chart booklet itself was not opened).
* Hypoxaemia: SpO2 < 90 %: urgent referral and oxygen (WHO; Subhi, Smith & Duke, Arch Dis Child
  2009). At altitude the normal range is lower (WHO *Oxygen therapy for children*, 2016): that
  rule is UNVERIFIED and not applied.
* Young infant (< 2 months): temperature >= 37.5 C or < 35.5 C, a sign of possible serious
  bacterial infection (WHO *Management of the sick young infant*, 2019 chart booklet). UNVERIFIED:
  the wording was seen only in IMCI-based app code; verify against the booklet before relying on it.
  Note: PMC7156088 (PLoS One 2020, Table 1), quoting WHO's PSBI guideline, gives fever as
  >= 38 C and low temperature as < 35.5 C; the lower 37.5 C of clinical.md is kept (it flags more
  infants, the conservative side) until the booklet is checked.

Between the steps (clinical.md section 5): the charts count whole breaths and print temperature
to one decimal, so a value in the gap below a threshold counts as the flag (RR 59.5 in a young
infant is fast breathing; 37.45 C is a fever). SpO2 < 90 % is printed as a strict bound: 89.9
flags, 90.0 does not.

Each flag is a reason to refer; the gateway raises one alert per flag, naming it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ImciAge(enum.IntEnum):
    UNDER_2_MONTHS = 0
    MONTHS_2_11 = 1
    MONTHS_12_59 = 2


# Fast breathing from this many breaths per minute, by age (the gap below counts: > t - 1).
FAST_BREATHING_FROM: dict[ImciAge, float] = {
    ImciAge.UNDER_2_MONTHS: 60.0,
    ImciAge.MONTHS_2_11: 50.0,
    ImciAge.MONTHS_12_59: 40.0,
}
HYPOXAEMIA_BELOW = 90.0  # SpO2 %, strict
YOUNG_INFANT_FEVER_FROM = 37.5  # C
YOUNG_INFANT_FEVER_ABOVE = 37.4  # printed to one decimal: the gap (37.4, 37.5) counts as fever
YOUNG_INFANT_LOW_BELOW = 35.5  # C, strict


@dataclass(frozen=True, slots=True)
class ImciFlag:
    kind: str  # "fast_breathing" | "hypoxaemia" | "young_infant_temperature"
    vital: str
    value: float
    threshold: str  # as printed in the source, e.g. ">= 50 /min"


def fast_breathing(rr: float, age: ImciAge) -> bool:
    return rr > FAST_BREATHING_FROM[age] - 1.0


def hypoxaemia(spo2: float) -> bool:
    return spo2 < HYPOXAEMIA_BELOW


def young_infant_temperature(temp_c: float) -> bool:
    return temp_c > YOUNG_INFANT_FEVER_ABOVE or temp_c < YOUNG_INFANT_LOW_BELOW


def flags(
    age: ImciAge, *, resp_rate: float | None = None, spo2: float | None = None, body_temp: float | None = None
) -> tuple[ImciFlag, ...]:
    out = []
    if resp_rate is not None and fast_breathing(resp_rate, age):
        out.append(ImciFlag("fast_breathing", "resp_rate", resp_rate, f">= {FAST_BREATHING_FROM[age]:g} /min"))
    if spo2 is not None and hypoxaemia(spo2):
        out.append(ImciFlag("hypoxaemia", "spo2", spo2, f"< {HYPOXAEMIA_BELOW:g} %"))
    if age is ImciAge.UNDER_2_MONTHS and body_temp is not None and young_infant_temperature(body_temp):
        low = body_temp < YOUNG_INFANT_LOW_BELOW
        shown = f"< {YOUNG_INFANT_LOW_BELOW:g} C" if low else f">= {YOUNG_INFANT_FEVER_FROM:g} C"
        out.append(ImciFlag("young_infant_temperature", "body_temp", body_temp, shown))
    return tuple(out)
