"""The NEWS2 and ISH 2020 tables as data, for the ONNX build (``models.build``).

Each parameter is a step function of its rounded value ``r``: ``base`` points for the lowest band,
and at every threshold ``t`` the points change by ``delta`` once ``r > t``. This is the same table
as ``models.news2`` / ``models.bp`` (sources cited there), written differently on purpose: the
equivalence tests compare the graph built from this data with the hand-written reference.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Steps:
    base: float
    thresholds: tuple[float, ...]  # ascending; the step applies when r > threshold
    deltas: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.deltas):
            raise ValueError("thresholds and deltas differ in length")
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError("thresholds must ascend")

    def __call__(self, r: float) -> float:
        return self.base + sum(d for t, d in zip(self.thresholds, self.deltas, strict=True) if r > t)


# NEWS2 (RCP 2017 chart 1; clinical.md §3.1). r = whole number, temperature in tenths.
RESP_RATE = Steps(3, (8, 11, 20, 24), (-2, -1, +2, +1))  # ≤8:3 9–11:1 12–20:0 21–24:2 ≥25:3
SPO2_SCALE1 = Steps(3, (91, 93, 95), (-1, -1, -1))  # ≤91:3 92–93:2 94–95:1 ≥96:0
SPO2_SCALE2_LOW = Steps(3, (83, 85, 87), (-1, -1, -1))  # ≤83:3 84–85:2 86–87:1 ≥88:0
SPO2_SCALE2_ON_O2 = Steps(0, (92, 94, 96), (+1, +1, +1))  # added on oxygen: 93–94:1 95–96:2 ≥97:3
SYSTOLIC = Steps(3, (90, 100, 110, 219), (-1, -1, -1, +3))  # ≤90:3 91–100:2 101–110:1 111–219:0 ≥220:3
PULSE = Steps(3, (40, 50, 90, 110, 130), (-2, -1, +1, +1, +1))  # ≤40:3 41–50:1 51–90:0 91–110:1 111–130:2 ≥131:3
TEMP_TENTHS = Steps(3, (350, 360, 380, 390), (-2, -1, +1, +1))  # ≤35.0:3 35.1–36.0:1 36.1–38.0:0 38.1–39.0:1 ≥39.1:2
CONSCIOUSNESS = Steps(0, (0.5,), (3,))  # A (0): 0; C, V, P, U (1–4): 3
AIR_OXYGEN = Steps(0, (0.5,), (2,))  # air (0): 0; oxygen (1): 2
# Aggregate → risk code (clinical.md §3.2): 0 none, 1 low (1–4), 3 medium (5–6), 4 high (≥7);
# a single 3 lifts it to at least 2 (low-medium).
RISK_FROM_TOTAL = Steps(0, (0, 4, 6), (1, 2, 1))
RISK_RED = 2

# ISH 2020 (clinical.md §3.4), r = whole mmHg. Category: 0 normal, 1 high-normal, 2 grade 1, 3 grade 2.
BP_SYSTOLIC_CATEGORY = Steps(0, (129, 139, 159), (1, 1, 1))
BP_DIASTOLIC_CATEGORY = Steps(0, (84, 89, 99), (1, 1, 1))
BP_CRISIS_SYSTOLIC_ABOVE = 179  # ≥180
BP_CRISIS_DIASTOLIC_ABOVE = 109  # ≥110

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
