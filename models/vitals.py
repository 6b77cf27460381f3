"""Names and units of model inputs (DESIGN §3 vital table, plus the nurse's observations).

Device vitals use the contract names and UCUM units of DESIGN §3. Observations a device cannot
make (consciousness, air or oxygen, the SpO2 scale) are numeric codes with UCUM annotation units,
so every model input is one number in one unit. The gateway checks a manifest's inputs against
its own vital table before it loads a model (a model expecting °F is refused, not fed Cel).
"""

from __future__ import annotations

# DESIGN §3 (contract): one unit per vital.
VITAL_UNITS: dict[str, str] = {
    "heart_rate": "/min",
    "spo2": "%",
    "resp_rate": "/min",
    "body_temp": "Cel",
    "glucose": "mmol/L",
    "bp_systolic": "mm[Hg]",
    "bp_diastolic": "mm[Hg]",
    "bp_mean": "mm[Hg]",
    "body_weight": "kg",
    "perfusion_index": "%",
}

# Observations entered by the nurse. Codes:
#   consciousness: ACVPU as 0=A(lert), 1=C(new confusion), 2=V(oice), 3=P(ain), 4=U(nresponsive)
#   on_oxygen:     0 = room air, 1 = any supplemental oxygen
#   spo2_scale:    1 or 2 (NEWS2 SpO2 scale; scale 2 only when a clinician prescribed it)
#   o2_flow:       supplemental oxygen flow, L/min (0 = room air)          (PEWS)
#   o2_high_flow:  1 = high flow, CPAP or BiPAP, 0 = not                     (PEWS)
#   resp_distress: 0 none, 1 mild, 2 moderate, 3 severe                      (PEWS)
#   cap_refill:    capillary refill time, seconds                           (PEWS)
#   pews_age_group: 0 = 0-11 months, 1 = 1-4 y, 2 = 5-12 y, 3 = >=13 y, from the visit's age band
OBSERVATION_UNITS: dict[str, str] = {
    "consciousness": "{ACVPU}",
    "on_oxygen": "{bool}",
    "spo2_scale": "{scale}",
    "o2_flow": "L/min",
    "o2_high_flow": "{bool}",
    "resp_distress": "{severity}",
    "cap_refill": "s",
    "pews_age_group": "{PEWS age group}",
}

ACVPU = "ACVPU"

ALL_UNITS: dict[str, str] = {**VITAL_UNITS, **OBSERVATION_UNITS}


def acvpu_code(letter: str) -> int:
    """``"A"`` → 0 … ``"U"`` → 4; raises ValueError for anything else."""
    idx = ACVPU.find(letter.strip().upper()) if len(letter.strip()) == 1 else -1
    if idx < 0:
        raise ValueError(f"consciousness must be one of A, C, V, P, U; got {letter!r}")
    return idx
