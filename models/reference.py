"""The reference scores, called with a model's input row and returning its outputs.

Adapts ``news2``, ``bp`` and ``pews`` to the column layout of the built models
(``tables.NEWS2_INPUTS``, ``tables.BP_INPUTS``, ``tables.PEWS_INPUTS``; NaN = missing) so a
reference result and an ONNX result can be compared output by output. Used by the build
(self-test vectors), the tests and the benchmark baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from models import bp, news2, pews

NAN = math.nan


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def news2_row(row: Sequence[float]) -> dict[str, list[float]]:
    rr, spo2, oxy, sbp, hr, acvpu, temp, scale = row
    res = news2.news2(
        resp_rate=_opt(rr),
        spo2=_opt(spo2),
        on_oxygen=None if math.isnan(oxy) else oxy > 0.5,
        bp_systolic=_opt(sbp),
        heart_rate=_opt(hr),
        consciousness=None if math.isnan(acvpu) else (0 if acvpu <= 0.5 else 1),
        body_temp=_opt(temp),
        spo2_scale=2 if scale == 2.0 else 1,
    )
    nothing = len(res.missing) == len(news2.PARAMETERS)
    return {
        "subscores": [NAN if s is None else float(s) for s in res.subscores],
        "total": [NAN if nothing else float(res.total)],
        "red": [1.0 if res.red else 0.0],
        "risk": [NAN if nothing else float(int(res.risk))],
        "partial": [1.0 if res.partial else 0.0],
        "missing_count": [float(len(res.missing))],
    }


def bp_row(row: Sequence[float]) -> dict[str, list[float]]:
    sbp, dbp = row
    res = bp.bp_category(bp_systolic=_opt(sbp), bp_diastolic=_opt(dbp))
    return {
        "category": [NAN if res.category is None else float(int(res.category))],
        "crisis": [NAN if res.crisis is None else (1.0 if res.crisis else 0.0)],
    }


PEWS_OUTPUTS = ("subscores", "total", "escalation", "partial", "missing_count", "sepsis")


def pews_row(row: Sequence[float]) -> dict[str, list[float]]:
    age, rr, distress, spo2, flow, high_flow, hr, sbp, crt, acvpu, temp = row
    if math.isnan(age) or age not in (0.0, 1.0, 2.0, 3.0):
        return {"subscores": [NAN] * len(pews.PARAMETERS), **{k: [NAN] for k in PEWS_OUTPUTS[1:]}}
    res = pews.pews(
        age_group=int(age),
        resp_rate=_opt(rr),
        resp_distress=None if math.isnan(distress) else int(distress),
        spo2=_opt(spo2),
        o2_flow=_opt(flow),
        o2_high_flow=not math.isnan(high_flow) and high_flow > 0.5,
        heart_rate=_opt(hr),
        bp_systolic=_opt(sbp),
        cap_refill=_opt(crt),
        consciousness=None if math.isnan(acvpu) else int(acvpu),
        body_temp=_opt(temp),
    )
    nothing = len(res.missing) == len(pews.PARAMETERS) + 1
    return {
        "subscores": [NAN if s is None else float(s) for s in res.subscores],
        "total": [NAN if nothing else float(res.total)],
        "escalation": [NAN if nothing else float(int(res.escalation))],
        "partial": [1.0 if res.partial else 0.0],
        "missing_count": [float(len(res.missing))],
        "sepsis": [NAN if res.sepsis is None else (1.0 if res.sepsis else 0.0)],
    }
