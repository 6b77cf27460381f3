"""ONNX graphs for the scoring tables (build time only: needs the ``onnx`` package).

Every graph takes one float64 tensor ``vitals`` of shape [N, K] (columns in the manifest's
order, NaN = missing) and computes in float64 with the same IEEE operations as the reference
(``floor(x + 0.5)``), so the two agree exactly. Opset 17 and IR version 8 keep the files loadable
by every onnxruntime the project allows (>= 1.20).
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

    def round_whole(self, x: str, scale: float = 1.0) -> str:
        if scale != 1.0:
            x = self.op("Mul", x, self.const(scale))
        return self.op("Floor", self.op("Add", x, self.const(0.5)))

    def steps(self, r: str, table: Steps) -> str:
        """base + sum(delta_i * (r > t_i)), shape [N, 1]."""
        gt = self.op("Greater", r, self.const(list(table.thresholds)))  # [N, K]
        gtf = self.op("Cast", gt, to=TensorProto.DOUBLE)
        deltas = self.const(np.asarray(table.deltas, dtype=np.float64).reshape(-1, 1))
        return self.op("Add", self.op("MatMul", gtf, deltas), self.const(float(table.base)))

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
    news2.PARAMETERS order), total [N,1] (sum of known), red [N,1] (0/1), risk [N,1] (0–4)."""
    cols = {name: i for i, name in enumerate(tables.NEWS2_INPUTS)}
    g = _Graph(len(tables.NEWS2_INPUTS))
    x = {name: g.column(i, name) for name, i in cols.items()}

    rr = g.nan_where_missing(x["resp_rate"], g.steps(g.round_whole(x["resp_rate"]), tables.RESP_RATE))

    r_spo2 = g.round_whole(x["spo2"])
    s1 = g.steps(r_spo2, tables.SPO2_SCALE1)
    low = g.steps(r_spo2, tables.SPO2_SCALE2_LOW)
    high = g.steps(r_spo2, tables.SPO2_SCALE2_ON_O2)
    oxy = x["on_oxygen"]
    # High band counts only on oxygen; needs on_oxygen (NaN propagates) only when the band is > 0.
    high_on_o2 = g.op("Mul", high, g.op("Where", g.op("Greater", oxy, g.const(0.5)), g.const(1.0), g.const(0.0)))
    high_on_o2 = g.nan_where_missing(oxy, high_on_o2)
    high_term = g.op("Where", g.op("Equal", high, g.const(0.0)), g.const(0.0), high_on_o2)
    s2 = g.op("Add", low, high_term)
    spo2 = g.op("Where", g.op("Equal", x["spo2_scale"], g.const(2.0)), s2, s1)
    spo2 = g.nan_where_missing(x["spo2"], spo2)

    air = g.nan_where_missing(oxy, g.steps(oxy, tables.AIR_OXYGEN))
    sbp = g.nan_where_missing(x["bp_systolic"], g.steps(g.round_whole(x["bp_systolic"]), tables.SYSTOLIC))
    hr = g.nan_where_missing(x["heart_rate"], g.steps(g.round_whole(x["heart_rate"]), tables.PULSE))
    acvpu = g.nan_where_missing(x["consciousness"], g.steps(x["consciousness"], tables.CONSCIOUSNESS))
    temp = g.nan_where_missing(x["body_temp"], g.steps(g.round_whole(x["body_temp"], 10.0), tables.TEMP_TENTHS))

    subs = g.op("Concat", rr, spo2, air, sbp, hr, acvpu, temp, axis=1)
    known = g.op("Where", g.op("IsNaN", subs), g.const(0.0), subs)
    total = g.op("ReduceSum", known, g.const([1], np.int64), keepdims=1)
    is3 = g.op("Cast", g.op("Equal", known, g.const(3.0)), to=TensorProto.DOUBLE)
    red = g.op("ReduceMax", is3, axes=[1], keepdims=1)
    risk_total = g.steps(total, tables.RISK_FROM_TOTAL)
    risk = g.op("Max", risk_total, g.op("Mul", red, g.const(float(tables.RISK_RED))))
    return g.finish(
        "news2",
        [(subs, "subscores", 7), (total, "total", 1), (red, "red", 1), (risk, "risk", 1)],
        "NEWS2 (RCP 2017), built from models.tables by models.build",
    )


def bp_graph() -> onnx.ModelProto:
    """Inputs: tables.BP_INPUTS. Outputs: category [N,1] (0–3, NaN if both missing),
    crisis [N,1] (0/1, NaN if both missing)."""
    g = _Graph(len(tables.BP_INPUTS))
    s, d = g.column(0, "sbp"), g.column(1, "dbp")
    rs, rd = g.round_whole(s), g.round_whole(d)
    minus1 = g.const(-1.0)
    cs = g.op("Where", g.op("IsNaN", s), minus1, g.steps(rs, tables.BP_SYSTOLIC_CATEGORY))
    cd = g.op("Where", g.op("IsNaN", d), minus1, g.steps(rd, tables.BP_DIASTOLIC_CATEGORY))
    cat = g.op("Max", cs, cd)
    both_missing = g.op("And", g.op("IsNaN", s), g.op("IsNaN", d))
    cat = g.op("Where", both_missing, g.const(np.nan), cat)
    crisis_s = g.op("Greater", rs, g.const(float(tables.BP_CRISIS_SYSTOLIC_ABOVE)))  # NaN > x is false
    crisis_d = g.op("Greater", rd, g.const(float(tables.BP_CRISIS_DIASTOLIC_ABOVE)))
    crisis = g.op("Cast", g.op("Or", crisis_s, crisis_d), to=TensorProto.DOUBLE)
    crisis = g.op("Where", both_missing, g.const(np.nan), crisis)
    return g.finish(
        "bp_category",
        [(cat, "category", 1), (crisis, "crisis", 1)],
        "Office BP category (ISH 2020) and severe elevation >=180/110, built by models.build",
    )
