"""The scoring tables as data, for the ONNX build (``models.build``).

Each parameter is a step function of the device value ``x`` (never rounded): ``base`` points for
the lowest band, and at every threshold ``t`` the points change by ``delta`` once ``x > t``, or
once ``x >= t`` where ``ge`` says so. This is the same table as ``models.news2`` / ``models.bp``
/ ``models.pews`` (sources cited there), written differently on purpose: the equivalence tests
compare the graph built from this data with the hand-written reference.

Between the chart's steps (clinical.md section 5): each printed band is a closed interval, and a
value in the gap between two bands scores in the more severe one. So where severity *falls* as
the value rises (``<=8: 3``, ``9-11: 1``) the step is taken at the lower edge of the next band,
``x >= 9``; where it *rises* (``12-20: 0``, ``21-24: 2``) it is taken past the upper edge of the
band, ``x > 20``. Either way the whole gap (8, 9) or (20, 21) gets the more severe points.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Steps:
    base: float
    thresholds: tuple[float, ...]  # ascending
    deltas: tuple[float, ...]
    ge: tuple[bool, ...] = ()  # per threshold: step when x >= t (True) or x > t (False); () = all >

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.deltas):
            raise ValueError("thresholds and deltas differ in length")
        if self.ge and len(self.ge) != len(self.thresholds):
            raise ValueError("ge and thresholds differ in length")
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError("thresholds must ascend")

    @property
    def inclusive(self) -> tuple[bool, ...]:
        return self.ge or tuple(False for _ in self.thresholds)

    def __call__(self, x: float) -> float:
        return self.base + sum(
            d
            for t, d, ge in zip(self.thresholds, self.deltas, self.inclusive, strict=True)
            if (x >= t if ge else x > t)
        )


T, F = True, False

# NEWS2 (RCP 2017 chart 1; clinical.md section 3.1), device values as measured.
RESP_RATE = Steps(3, (9, 12, 20, 24), (-2, -1, +2, +1), (T, T, F, F))  # <=8:3 9-11:1 12-20:0 21-24:2 >=25:3
SPO2_SCALE1 = Steps(3, (92, 94, 96), (-1, -1, -1), (T, T, T))  # <=91:3 92-93:2 94-95:1 >=96:0
SPO2_SCALE2_LOW = Steps(3, (84, 86, 88), (-1, -1, -1), (T, T, T))  # <=83:3 84-85:2 86-87:1 >=88:0
SPO2_SCALE2_ON_O2 = Steps(0, (92, 94, 96), (+1, +1, +1), (F, F, F))  # on oxygen: 93-94:1 95-96:2 >=97:3
SYSTOLIC = Steps(3, (91, 101, 111, 219), (-1, -1, -1, +3), (T, T, T, F))  # <=90:3 91-100:2 101-110:1 111-219:0 >=220:3
PULSE = Steps(3, (41, 51, 90, 110, 130), (-2, -1, +1, +1, +1), (T, T, F, F, F))  # <=40:3 41-50:1 51-90:0 ... >=131:3
TEMPERATURE = Steps(
    3, (35.1, 36.1, 38.0, 39.0), (-2, -1, +1, +1), (T, T, F, F)
)  # <=35.0:3 35.1-36.0:1 36.1-38.0:0 38.1-39.0:1 >=39.1:2
CONSCIOUSNESS = Steps(0, (0.5,), (3,))  # A (0): 0; C, V, P, U (1-4): 3
AIR_OXYGEN = Steps(0, (0.5,), (2,))  # air (0): 0; oxygen (1): 2
# Aggregate -> risk code (clinical.md section 3.2): 0 none, 1 low (1-4), 3 medium (5-6), 4 high (>=7);
# a single 3 lifts it to at least 2 (low-medium). Totals are whole numbers: no gaps.
RISK_FROM_TOTAL = Steps(0, (0, 4, 6), (1, 2, 1))
RISK_RED = 2

# ISH 2020 (clinical.md section 3.4). Category: 0 normal, 1 high-normal, 2 grade 1, 3 grade 2.
# normal is printed "<130" / "<85" (no gap below high-normal); 139.5 lies between 130-139 and
# 140-159, so it is grade 1.
BP_SYSTOLIC_CATEGORY = Steps(0, (130, 139, 159), (1, 1, 1), (T, F, F))
BP_DIASTOLIC_CATEGORY = Steps(0, (85, 89, 99), (1, 1, 1), (T, F, F))
BP_CRISIS_SYSTOLIC_ABOVE = 179.0  # severe from 180; (179, 180) is a gap: severe (clinical.md section 5)
BP_CRISIS_DIASTOLIC_ABOVE = 109.0  # severe from 110

# Input column order of the built models (names and units: models.vitals).
NEWS2_INPUTS: tuple[str, ...] = (
    "resp_rate",
    "spo2",
    "on_oxygen",
    "bp_systolic",
    "heart_rate",
    "consciousness",
    "body_temp",
    "spo2_scale",
)
BP_INPUTS: tuple[str, ...] = ("bp_systolic", "bp_diastolic")

# National PEWS (clinical.md section 6.1; models.pews). Bands are continuous, [a, b): every step
# is taken at x >= t. One table per age group: 0 = 0-11 months, 1 = 1-4 y, 2 = 5-12 y, 3 = >=13 y.
_ALL_GE = {n: tuple(T for _ in range(n)) for n in range(1, 8)}
PEWS_RESP_RATE: tuple[Steps, ...] = (
    Steps(4, (10, 20, 30, 50, 60, 70), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
    Steps(4, (10, 20, 40, 50, 60), (-2, -2, +1, +1, +2), _ALL_GE[5]),
    Steps(4, (10, 15, 20, 25, 40, 50), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
    Steps(4, (10, 15, 25, 30, 40), (-3, -1, +1, +1, +2), _ALL_GE[5]),
)
PEWS_HEART_RATE: tuple[Steps, ...] = (
    Steps(4, (80, 90, 110, 150, 170, 180), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
    Steps(4, (60, 70, 90, 140, 150, 170), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
    Steps(4, (60, 70, 80, 120, 140, 160), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
    Steps(4, (50, 60, 70, 100, 120, 130), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
)
PEWS_SYSTOLIC: tuple[Steps, ...] = (
    Steps(4, (50, 60, 70, 90, 100, 110), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
    Steps(4, (50, 60, 80, 100, 120, 130), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
    Steps(4, (70, 80, 90, 110, 120, 130), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
    Steps(4, (80, 90, 100, 120, 130, 140), (-2, -1, -1, +1, +1, +2), _ALL_GE[6]),
)
PEWS_SPO2 = Steps(4, (91.01, 95), (-3, -1), (T, T))  # <=91 and the gap to 91.01: 4; 91.01-94.99: 1; >=95: 0
PEWS_O2_FLOW = Steps(0, (0, 2, 6), (+1, +1, +2), (F, T, T))  # 0: 0; (0, 2): 1; [2, 6): 2; >=6: 4
PEWS_RESP_DISTRESS = Steps(0, (0.5, 1.5, 2.5), (+1, +1, +2))  # none 0, mild 1, moderate 2, severe 4
PEWS_CAP_REFILL = Steps(0, (2,), (+2,), (F,))  # <=2 s: 0; the gap (2, 3) and >=3 s: 2
PEWS_ESCALATION_FROM_TOTAL = Steps(0, (1, 5, 9, 13), (1, 1, 1, 1), _ALL_GE[4])  # 0, 1-4, 5-8, 9-12, >=13
PEWS_ESCALATION_FROM_AVPU = Steps(0, (0.5, 2.5), (3, 1))  # A: 0; C, V: 3 (High); P, U: 4 (Emergency)
PEWS_SEPSIS_HIGH_C = 38.0  # >= 38: think sepsis
PEWS_SEPSIS_LOW_C = 36.0  # < 36: think sepsis

# Input column order of the PEWS model. pews_age_group: 0-3 as above (from the visit's age band);
# o2_flow: L/min (0 = room air); o2_high_flow: 1 = high flow, CPAP or BiPAP; resp_distress: 0-3;
# cap_refill: seconds; consciousness: ACVPU code (not scored: escalation only); body_temp: not
# scored (think-sepsis prompt only).
PEWS_INPUTS: tuple[str, ...] = (
    "pews_age_group",
    "resp_rate",
    "resp_distress",
    "spo2",
    "o2_flow",
    "o2_high_flow",
    "heart_rate",
    "bp_systolic",
    "cap_refill",
    "consciousness",
    "body_temp",
)
