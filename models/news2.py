"""NEWS2, reference implementation in plain Python.

Source: Royal College of Physicians, *National Early Warning Score (NEWS) 2*, 2017, chart 1
(scoring) and charts 2/3 (thresholds and response), as tabulated in
shared/reference/clinical.md §3.1 and §3.2. Written as explicit comparisons so it can be read
line by line against the chart; the ONNX graph is built from ``models.tables`` instead, and the
tests check the two agree on every boundary.

Rounding (clinical.md §3.1 notes): temperature is rounded to one decimal, every other parameter to
a whole number, before banding; halves round up (``floor(x + 0.5)``), with the same IEEE double
operations as the ONNX graph so the two agree bit for bit.

Missing parameters are ``None``: their sub-score is ``None`` and the result is *partial*. A
partial total is a lower bound (a missing parameter can only add points), never "normal".
NEWS2 is validated for adults (≥16 years), not in pregnancy (clinical.md §3.2).
"""

from __future__ import annotations

import enum
import math
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


def round_whole(x: float) -> int:
    return math.floor(x + 0.5)


def round_tenths(x: float) -> int:
    """Temperature in tenths of a degree, rounded half up: 38.05 → 381."""
    return math.floor(x * 10.0 + 0.5)


def score_resp_rate(rr: float) -> int:
    r = round_whole(rr)
    if r <= 8:
        return 3
    if r <= 11:  # 9–11
        return 1
    if r <= 20:  # 12–20
        return 0
    if r <= 24:  # 21–24
        return 2
    return 3  # ≥25


def score_spo2_scale1(spo2: float) -> int:
    s = round_whole(spo2)
    if s <= 91:
        return 3
    if s <= 93:  # 92–93
        return 2
    if s <= 95:  # 94–95
        return 1
    return 0  # ≥96


def score_spo2_scale2(spo2: float, on_oxygen: bool | None) -> int | None:
    """Scale 2 (hypercapnic respiratory failure, target 88–92 %, chosen by a clinician).

    ≥93 % scores 0 on air but 1/2/3 on oxygen, so above 92 % the score needs ``on_oxygen``;
    when it is unknown the sub-score is unknown (``None``).
    """
    s = round_whole(spo2)
    if s <= 83:
        return 3
    if s <= 85:  # 84–85
        return 2
    if s <= 87:  # 86–87
        return 1
    if s <= 92:  # 88–92
        return 0
    if on_oxygen is None:
        return None
    if not on_oxygen:
        return 0  # ≥93 on air
    if s <= 94:  # 93–94 on O2
        return 1
    if s <= 96:  # 95–96 on O2
        return 2
    return 3  # ≥97 on O2


def score_air_oxygen(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def score_systolic(sbp: float) -> int:
    s = round_whole(sbp)
    if s <= 90:
        return 3
    if s <= 100:  # 91–100
        return 2
    if s <= 110:  # 101–110
        return 1
    if s <= 219:  # 111–219
        return 0
    return 3  # ≥220


def score_pulse(hr: float) -> int:
    p = round_whole(hr)
    if p <= 40:
        return 3
    if p <= 50:  # 41–50
        return 1
    if p <= 90:  # 51–90
        return 0
    if p <= 110:  # 91–110
        return 1
    if p <= 130:  # 111–130
        return 2
    return 3  # ≥131


def score_consciousness(acvpu: int) -> int:
    """0 = Alert scores 0; new Confusion, Voice, Pain, Unresponsive (1–4) score 3."""
    return 0 if acvpu == 0 else 3


def score_temperature(temp_c: float) -> int:
    t = round_tenths(temp_c)
    if t <= 350:  # ≤35.0
        return 3
    if t <= 360:  # 35.1–36.0
        return 1
    if t <= 380:  # 36.1–38.0
        return 0
    if t <= 390:  # 38.1–39.0
        return 1
    return 2  # ≥39.1


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
