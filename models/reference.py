"""The reference scores, called with a model's input row and returning its outputs.

Adapts ``news2`` and ``bp`` to the column layout of the built models (``tables.NEWS2_INPUTS``,
``tables.BP_INPUTS``; NaN = missing) so a reference result and an ONNX result can be compared
output by output. Used by the build (self-test vectors), the tests and the benchmark baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from models import bp, news2

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
    return {
        "subscores": [NAN if s is None else float(s) for s in res.subscores],
        "total": [float(res.total)],
        "red": [1.0 if res.red else 0.0],
        "risk": [float(int(res.risk))],
    }


def bp_row(row: Sequence[float]) -> dict[str, list[float]]:
    sbp, dbp = row
    res = bp.bp_category(bp_systolic=_opt(sbp), bp_diastolic=_opt(dbp))
    return {
        "category": [NAN if res.category is None else float(int(res.category))],
        "crisis": [NAN if res.crisis is None else (1.0 if res.crisis else 0.0)],
    }
