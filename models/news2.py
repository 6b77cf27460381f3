"""NEWS2, reference implementation in plain Python.

Source: Royal College of Physicians, *National Early Warning Score (NEWS) 2*, 2017, chart 1
(scoring) and charts 2/3 (thresholds and response), as tabulated in
shared/reference/clinical.md §3.1 and §3.2. Written as explicit comparisons so it can be read
line by line against the chart; the ONNX graph is built from ``models.tables`` instead, and the
tests check the two agree on every boundary.

Between the chart's steps (clinical.md section 5, the project's rule of 2026-12-01): each band
is the closed interval of real numbers printed on the chart (36.1-38.0 means 36.1 <= t <= 38.0),
and a value in the gap between two bands scores in the **more severe** band: 35.05 C scores 3,
SpO2 95.5 % scores 1, SBP 90.5 scores 3, HR 130.5 scores 3. Device values are never rounded
(rounding halves up would under-score exactly these values); shown values keep the device's
precision. The ONNX graph makes the same IEEE comparisons, so the two agree bit for bit.

Missing parameters are ``None``: their sub-score is ``None`` and the result is *partial*. A
partial total is a lower bound (a missing parameter can only add points), never "normal".
NEWS2 is validated for adults (≥16 years), not in pregnancy (clinical.md §3.2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PARAMETERS: tuple[str, ...] = (
    "resp_rate",
    "spo2",
    "air_oxygen",
    "bp_systolic",
    "heart_rate",
    "consciousness",
    "body_temp",
)


class Risk(enum.IntEnum):
    """Clinical risk (clinical.md §3.2). NONE = aggregate 0: routine monitoring, no alert."""

    NONE = 0
    LOW = 1  # aggregate 1–4
    LOW_MEDIUM = 2  # a single parameter scoring 3 ("red score")
    MEDIUM = 3  # aggregate 5–6 (key threshold: urgent response)
    HIGH = 4  # aggregate ≥7 (emergency response)


def score_resp_rate(rr: float) -> int:
    if rr < 9:  # <=8, and the gap (8, 9)
        return 3
    if rr < 12:  # 9-11, and (11, 12)
        return 1
    if rr <= 20:  # 12-20
        return 0
    if rr <= 24:  # (20, 21) and 21-24
        return 2
    return 3  # (24, 25) and >=25


def score_spo2_scale1(spo2: float) -> int:
    if spo2 < 92:  # <=91, (91, 92)
        return 3
    if spo2 < 94:  # 92-93, (93, 94)
        return 2
    if spo2 < 96:  # 94-95, (95, 96)
        return 1
    return 0  # >=96


def score_spo2_scale2(spo2: float, on_oxygen: bool | None) -> int | None:
    """Scale 2 (hypercapnic respiratory failure, target 88-92 %, chosen by a clinician).

    Above 92 % the score needs ``on_oxygen`` (>=93 scores 0 on air but 1/2/3 on oxygen); when it
    is unknown the sub-score is unknown (``None``).
    """
    if spo2 < 84:  # <=83, (83, 84)
        return 3
    if spo2 < 86:  # 84-85, (85, 86)
        return 2
    if spo2 < 88:  # 86-87, (87, 88)
        return 1
    if spo2 <= 92:  # 88-92
        return 0
    if on_oxygen is None:
        return None
    if not on_oxygen:
        return 0  # >=93 on air (and the gap (92, 93): both bands score 0 on air)
    if spo2 <= 94:  # (92, 93) and 93-94 on O2
        return 1
    if spo2 <= 96:  # (94, 95) and 95-96 on O2
        return 2
    return 3  # (96, 97) and >=97 on O2


def score_air_oxygen(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def score_systolic(sbp: float) -> int:
    if sbp < 91:  # <=90, (90, 91)
        return 3
    if sbp < 101:  # 91-100, (100, 101)
        return 2
    if sbp < 111:  # 101-110, (110, 111)
        return 1
    if sbp <= 219:  # 111-219
        return 0
    return 3  # (219, 220) and >=220


def score_pulse(hr: float) -> int:
    if hr < 41:  # <=40, (40, 41)
        return 3
    if hr < 51:  # 41-50, (50, 51)
        return 1
    if hr <= 90:  # 51-90
        return 0
    if hr <= 110:  # (90, 91) and 91-110
        return 1
    if hr <= 130:  # (110, 111) and 111-130
        return 2
    return 3  # (130, 131) and >=131


def score_consciousness(acvpu: int) -> int:
    """0 = Alert scores 0; new Confusion, Voice, Pain, Unresponsive (1-4) score 3."""
    return 0 if acvpu == 0 else 3


def score_temperature(temp_c: float) -> int:
    if temp_c < 35.1:  # <=35.0, (35.0, 35.1)
        return 3
    if temp_c < 36.1:  # 35.1-36.0, (36.0, 36.1)
        return 1
    if temp_c <= 38.0:  # 36.1-38.0
        return 0
    if temp_c <= 39.0:  # (38.0, 38.1) and 38.1-39.0
        return 1
    return 2  # (39.0, 39.1) and >=39.1


def risk_from(total: int, red: bool) -> Risk:
    """clinical.md §3.2: 0 none; 1–4 low; any single 3 low-medium; 5–6 medium; ≥7 high.

    The higher applicable level wins (a red score in a total of 6 is medium).
    """
    if total >= 7:
        level = Risk.HIGH
    elif total >= 5:
        level = Risk.MEDIUM
    elif total >= 1:
        level = Risk.LOW
    else:
        level = Risk.NONE
    if red and level < Risk.LOW_MEDIUM:
        level = Risk.LOW_MEDIUM
    return level


@dataclass(frozen=True, slots=True)
class News2Result:
    subscores: tuple[int | None, ...]  # in PARAMETERS order; None = missing
    total: int  # sum of the known sub-scores (a lower bound when partial)
    red: bool  # some known parameter scored 3
    risk: Risk

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(p for p, s in zip(PARAMETERS, self.subscores, strict=True) if s is None)

    @property
    def partial(self) -> bool:
        return any(s is None for s in self.subscores)


def news2(
    *,
    resp_rate: float | None = None,
    spo2: float | None = None,
    on_oxygen: bool | None = None,
    bp_systolic: float | None = None,
    heart_rate: float | None = None,
    consciousness: int | None = None,
    body_temp: float | None = None,
    spo2_scale: int = 1,
) -> News2Result:
    """Score one vital set. ``consciousness`` is the ACVPU code (0=A … 4=U)."""
    if spo2_scale not in (1, 2):
        raise ValueError(f"spo2_scale must be 1 or 2, got {spo2_scale!r}")
    if spo2 is None:
        s_spo2: int | None = None
    elif spo2_scale == 2:
        s_spo2 = score_spo2_scale2(spo2, on_oxygen)
    else:
        s_spo2 = score_spo2_scale1(spo2)
    subs: tuple[int | None, ...] = (
        None if resp_rate is None else score_resp_rate(resp_rate),
        s_spo2,
        None if on_oxygen is None else score_air_oxygen(on_oxygen),
        None if bp_systolic is None else score_systolic(bp_systolic),
        None if heart_rate is None else score_pulse(heart_rate),
        None if consciousness is None else score_consciousness(consciousness),
        None if body_temp is None else score_temperature(body_temp),
    )
    known = [s for s in subs if s is not None]
    total = sum(known)
    red = any(s == 3 for s in known)
    return News2Result(subscores=subs, total=total, red=red, risk=risk_from(total, red))
