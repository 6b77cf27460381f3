"""ONNX graphs for the scoring tables (build time only: needs the ``onnx`` package).

Every graph takes one float64 tensor ``vitals`` of shape [N, K] (columns in the manifest's
order, NaN = missing) and computes in float64 with the same IEEE comparisons as the reference
(device values are never rounded: clinical.md section 5), so the two agree exactly. Opset 17
and IR version 8 keep the files loadable by every onnxruntime the project allows (>= 1.20).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import tables
from models.tables import Steps

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "vitals"


class _Graph:
    def __init__(self, n_columns: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0
        self.input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, ["N", n_columns])

    def _name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, value: object, dtype: type = np.float64, stem: str = "c") -> str:
        name = self._name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, stem: str | None = None, **attrs: Any) -> str:
        out = self._name(stem or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out + "_node", **attrs))
        return out

    def column(self, i: int, stem: str) -> str:
        return self.op("Gather", INPUT_NAME, self.const([i], np.int64), axis=1, stem=stem)  # [N, 1]

    def steps(self, x: str, table: Steps) -> str:
        """base + sum(delta_i * (x > t_i or x >= t_i)), shape [N, 1]."""
        acc = self.const([[float(table.base)]])
        for inclusive, op in ((False, "Greater"), (True, "GreaterOrEqual")):
            idx = [i for i, ge in enumerate(table.inclusive) if ge is inclusive]
            if not idx:
                continue
            hit = self.op(op, x, self.const([table.thresholds[i] for i in idx]))  # [N, K]
            hitf = self.op("Cast", hit, to=TensorProto.DOUBLE)
            deltas = self.const(np.asarray([table.deltas[i] for i in idx], dtype=np.float64).reshape(-1, 1))
            acc = self.op("Add", acc, self.op("MatMul", hitf, deltas))
        return acc

    def flag(self, cond: str) -> str:
        return self.op("Cast", cond, to=TensorProto.DOUBLE)

    def nan_where_missing(self, x: str, value: str) -> str:
        return self.op("Where", self.op("IsNaN", x), self.const(np.nan), value)

    def finish(self, name: str, outputs: Sequence[tuple[str, str, int]], doc: str) -> onnx.ModelProto:
        """outputs: (internal name, public name, width)."""
        final = []
        for internal, public, width in outputs:
            self.nodes.append(helper.make_node("Identity", [internal], [public], name=public + "_out"))
            final.append(helper.make_tensor_value_info(public, TensorProto.DOUBLE, ["N", width]))
        graph = helper.make_graph(self.nodes, name, [self.input], final, initializer=self.inits, doc_string=doc)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="station-edge models.build",
            ir_version=IR_VERSION,
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def news2_graph() -> onnx.ModelProto:
    """Inputs: tables.NEWS2_INPUTS. Outputs: subscores [N,7] (NaN = missing, in
    news2.PARAMETERS order), total [N,1] (sum of known; NaN when nothing is known), red [N,1]
    (0/1), risk [N,1] (0-4, a lower bound when partial; NaN when nothing is known), partial [N,1]
    (0/1) and missing_count [N,1] (0-7), so no consumer can read a partial set as normal."""
    cols = {name: i for i, name in enumerate(tables.NEWS2_INPUTS)}
    g = _Graph(len(tables.NEWS2_INPUTS))
    x = {name: g.column(i, name) for name, i in cols.items()}

    rr = g.nan_where_missing(x["resp_rate"], g.steps(x["resp_rate"], tables.RESP_RATE))

    s1 = g.steps(x["spo2"], tables.SPO2_SCALE1)
    low = g.steps(x["spo2"], tables.SPO2_SCALE2_LOW)
    high = g.steps(x["spo2"], tables.SPO2_SCALE2_ON_O2)
    oxy = x["on_oxygen"]
    # High band counts only on oxygen; needs on_oxygen (NaN propagates) only when the band is > 0.
    high_on_o2 = g.op("Mul", high, g.op("Where", g.op("Greater", oxy, g.const(0.5)), g.const(1.0), g.const(0.0)))
    high_on_o2 = g.nan_where_missing(oxy, high_on_o2)
    high_term = g.op("Where", g.op("Equal", high, g.const(0.0)), g.const(0.0), high_on_o2)
    s2 = g.op("Add", low, high_term)
    spo2 = g.op("Where", g.op("Equal", x["spo2_scale"], g.const(2.0)), s2, s1)
    spo2 = g.nan_where_missing(x["spo2"], spo2)

    air = g.nan_where_missing(oxy, g.steps(oxy, tables.AIR_OXYGEN))
    sbp = g.nan_where_missing(x["bp_systolic"], g.steps(x["bp_systolic"], tables.SYSTOLIC))
    hr = g.nan_where_missing(x["heart_rate"], g.steps(x["heart_rate"], tables.PULSE))
    acvpu = g.nan_where_missing(x["consciousness"], g.steps(x["consciousness"], tables.CONSCIOUSNESS))
    temp = g.nan_where_missing(x["body_temp"], g.steps(x["body_temp"], tables.TEMPERATURE))

    subs = g.op("Concat", rr, spo2, air, sbp, hr, acvpu, temp, axis=1)
    isnan = g.op("IsNaN", subs)
    known = g.op("Where", isnan, g.const(0.0), subs)
    total = g.op("ReduceSum", known, g.const([1], np.int64), keepdims=1)
    is3 = g.flag(g.op("Equal", known, g.const(3.0)))
    red = g.op("ReduceMax", is3, axes=[1], keepdims=1)
    risk_total = g.steps(total, tables.RISK_FROM_TOTAL)
    risk = g.op("Max", risk_total, g.op("Mul", red, g.const(float(tables.RISK_RED))))
    n_missing = g.op("ReduceSum", g.flag(isnan), g.const([1], np.int64), keepdims=1)
    partial = g.flag(g.op("Greater", n_missing, g.const(0.0)))
    nothing = g.op("Equal", n_missing, g.const(7.0))  # all seven parameters missing
    total = g.op("Where", nothing, g.const(np.nan), total)
    risk = g.op("Where", nothing, g.const(np.nan), risk)
    return g.finish(
        "news2",
        [
            (subs, "subscores", 7),
            (total, "total", 1),
            (red, "red", 1),
            (risk, "risk", 1),
            (partial, "partial", 1),
            (n_missing, "missing_count", 1),
        ],
        "NEWS2 (RCP 2017), built from models.tables by models.build",
    )


def bp_graph() -> onnx.ModelProto:
    """Inputs: tables.BP_INPUTS. Outputs: category [N,1] (0–3, NaN if both missing),
    crisis [N,1] (0/1, NaN if both missing)."""
    g = _Graph(len(tables.BP_INPUTS))
    s, d = g.column(0, "sbp"), g.column(1, "dbp")
    minus1 = g.const(-1.0)
    cs = g.op("Where", g.op("IsNaN", s), minus1, g.steps(s, tables.BP_SYSTOLIC_CATEGORY))
    cd = g.op("Where", g.op("IsNaN", d), minus1, g.steps(d, tables.BP_DIASTOLIC_CATEGORY))
    cat = g.op("Max", cs, cd)
    both_missing = g.op("And", g.op("IsNaN", s), g.op("IsNaN", d))
    cat = g.op("Where", both_missing, g.const(np.nan), cat)
    crisis_s = g.op("Greater", s, g.const(float(tables.BP_CRISIS_SYSTOLIC_ABOVE)))  # NaN > x is false
    crisis_d = g.op("Greater", d, g.const(float(tables.BP_CRISIS_DIASTOLIC_ABOVE)))
    crisis = g.op("Cast", g.op("Or", crisis_s, crisis_d), to=TensorProto.DOUBLE)
    crisis = g.op("Where", both_missing, g.const(np.nan), crisis)
    return g.finish(
        "bp_category",
        [(cat, "category", 1), (crisis, "crisis", 1)],
        "Office BP category (ISH 2020) and severe elevation (SBP > 179 or DBP > 109), built by models.build",
    )


def _by_age(g: _Graph, age: str, x: str, per_age: tuple[Steps, ...]) -> str:
    """The step function of the child's age group (0-3), shape [N, 1]."""
    out = g.steps(x, per_age[-1])
    for i in range(len(per_age) - 2, -1, -1):
        out = g.op("Where", g.op("Equal", age, g.const(float(i))), g.steps(x, per_age[i]), out)
    return out


def pews_graph() -> onnx.ModelProto:
    """Inputs: tables.PEWS_INPUTS. Outputs: subscores [N,7] (NaN = missing, in pews.PARAMETERS
    order), total [N,1] (sum of known; NaN when nothing is known), escalation [N,1] (0 none,
    1 low, 2 medium, 3 high, 4 emergency: the higher of the total's level and the AVPU trigger; a
    lower bound when partial; NaN when nothing is known), partial [N,1], missing_count [N,1]
    (scored parameters and AVPU), sepsis [N,1] (think-sepsis prompt from temperature, NaN if
    none). A row whose age group is not 0-3 gives NaN everywhere (never a score for the wrong age)."""
    cols = {name: i for i, name in enumerate(tables.PEWS_INPUTS)}
    g = _Graph(len(tables.PEWS_INPUTS))
    x = {name: g.column(i, name) for name, i in cols.items()}
    age = x["pews_age_group"]

    rr = g.nan_where_missing(x["resp_rate"], _by_age(g, age, x["resp_rate"], tables.PEWS_RESP_RATE))
    distress = g.nan_where_missing(x["resp_distress"], g.steps(x["resp_distress"], tables.PEWS_RESP_DISTRESS))
    spo2 = g.nan_where_missing(x["spo2"], g.steps(x["spo2"], tables.PEWS_SPO2))
    flow = g.nan_where_missing(x["o2_flow"], g.steps(x["o2_flow"], tables.PEWS_O2_FLOW))
    high_flow = g.op("Greater", x["o2_high_flow"], g.const(0.5))  # NaN > 0.5 is false
    o2 = g.op("Where", high_flow, g.const(4.0), flow)
    hr = g.nan_where_missing(x["heart_rate"], _by_age(g, age, x["heart_rate"], tables.PEWS_HEART_RATE))
    sbp = g.nan_where_missing(x["bp_systolic"], _by_age(g, age, x["bp_systolic"], tables.PEWS_SYSTOLIC))
    crt = g.nan_where_missing(x["cap_refill"], g.steps(x["cap_refill"], tables.PEWS_CAP_REFILL))

    subs = g.op("Concat", rr, distress, spo2, o2, hr, sbp, crt, axis=1)
    isnan = g.op("IsNaN", subs)
    known = g.op("Where", isnan, g.const(0.0), subs)
    total = g.op("ReduceSum", known, g.const([1], np.int64), keepdims=1)
    level = g.steps(total, tables.PEWS_ESCALATION_FROM_TOTAL)
    avpu = g.op("Where", g.op("IsNaN", x["consciousness"]), g.const(0.0),
                g.steps(x["consciousness"], tables.PEWS_ESCALATION_FROM_AVPU))  # fmt: skip
    level = g.op("Max", level, avpu)
    avpu_missing = g.flag(g.op("IsNaN", x["consciousness"]))
    n_missing = g.op("Add", g.op("ReduceSum", g.flag(isnan), g.const([1], np.int64), keepdims=1), avpu_missing)
    partial = g.flag(g.op("Greater", n_missing, g.const(0.0)))
    nothing = g.op("Equal", n_missing, g.const(8.0))
    temp = x["body_temp"]
    sepsis = g.flag(
        g.op(
            "Or",
            g.op("GreaterOrEqual", temp, g.const(tables.PEWS_SEPSIS_HIGH_C)),
            g.op("Less", temp, g.const(tables.PEWS_SEPSIS_LOW_C)),
        )
    )
    sepsis = g.nan_where_missing(temp, sepsis)
    total = g.op("Where", nothing, g.const(np.nan), total)
    level = g.op("Where", nothing, g.const(np.nan), level)
    valid_age = g.op(
        "And",
        g.op("GreaterOrEqual", age, g.const(0.0)),
        g.op("And", g.op("LessOrEqual", age, g.const(3.0)), g.op("Equal", age, g.op("Floor", age))),
    )
    outs = []
    for internal, public, width in [
        (subs, "subscores", 7),
        (total, "total", 1),
        (level, "escalation", 1),
        (partial, "partial", 1),
        (n_missing, "missing_count", 1),
        (sepsis, "sepsis", 1),
    ]:
        outs.append((g.op("Where", valid_age, internal, g.const(np.nan)), public, width))
    return g.finish("pews", outs, "National PEWS (NHS England SPOT NPEWS), built from models.tables by models.build")
