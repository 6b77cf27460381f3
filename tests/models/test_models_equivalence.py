"""The built ONNX models agree with the plain-Python references: on every band edge (each
threshold, the doubles either side of it, and values inside the gaps between printed bands,
clinical.md section 5) and on generated vital sets. Any disagreement fails."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import BUILT_DIR, reference, tables

N = math.nan


def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(Path(BUILT_DIR) / f"{name}.onnx"), providers=["CPUExecutionProvider"])


NEWS2 = _session("news2")
BP = _session("bp_category")
PEWS = _session("pews")


def _compare(
    session: ort.InferenceSession, rows: Sequence[Sequence[float]], ref: Callable[..., dict[str, list[float]]]
) -> None:
    x = np.array(rows, dtype=np.float64)
    names = [o.name for o in session.get_outputs()]
    outs = dict(zip(names, session.run(names, {"vitals": x}), strict=True))
    for i, row in enumerate(rows):
        expected = ref(row)
        assert set(expected) == set(names), f"outputs {names} != reference {sorted(expected)}"
        for name, exp in expected.items():
            got = outs[name][i].tolist()
            assert np.array_equal(np.array(got), np.array(exp), equal_nan=True), (
                f"row {list(row)}: {name} onnx={got} ref={exp}"
            )


def _edges(thresholds: Sequence[float], step: float) -> list[float]:
    """Each threshold, the doubles next to it, one printed step either side, and points inside
    the gap between printed bands (t - step/2, t + step/2, and close to both ends)."""
    out = []
    for t in thresholds:
        out += [
            t - step,
            t - step / 2,
            float(np.nextafter(t, -math.inf)),
            t,
            float(np.nextafter(t, math.inf)),
            t + step / 2,
            t + step - 1e-9,
            t + step,
            t - step + 1e-9,
        ]
    return out


COL = {name: i for i, name in enumerate(tables.NEWS2_INPUTS)}
BASE = (16.0, 97.0, 0.0, 120.0, 70.0, 0.0, 37.0, 1.0)


def _vary(name: str, values: Sequence[float], **fixed: float) -> list[list[float]]:
    rows = []
    for v in values:
        row = list(BASE)
        for k, fv in fixed.items():
            row[COL[k]] = fv
        row[COL[name]] = v
        rows.append(row)
    return rows


@pytest.mark.parametrize(
    ("name", "thresholds", "step"),
    [
        ("resp_rate", tables.RESP_RATE.thresholds, 1.0),
        ("bp_systolic", tables.SYSTOLIC.thresholds, 1.0),
        ("heart_rate", tables.PULSE.thresholds, 1.0),
        ("body_temp", tables.TEMPERATURE.thresholds, 0.1),
        (
            "spo2",
            [
                *tables.SPO2_SCALE1.thresholds,
                *tables.SPO2_SCALE2_LOW.thresholds,
                *tables.SPO2_SCALE2_ON_O2.thresholds,
            ],
            1.0,
        ),
    ],
)
def test_news2_band_edges_and_gaps(name: str, thresholds: Sequence[float], step: float) -> None:
    values = [*_edges(thresholds, step), N]
    rows = []
    for scale in (1.0, 2.0):
        for oxy in (0.0, 1.0, N):
            rows += _vary(name, values, spo2_scale=scale, on_oxygen=oxy)
    _compare(NEWS2, rows, reference.news2_row)


def test_news2_observations_totals_and_partial_sets() -> None:
    rows = []
    for c in (0.0, 1.0, 2.0, 3.0, 4.0, N):
        rows += _vary("consciousness", [c])
    # totals across every risk threshold (0..20) by stacking deranged parameters
    derangements = [("resp_rate", 26.0), ("spo2", 85.0), ("on_oxygen", 1.0), ("bp_systolic", 85.0),
                    ("heart_rate", 140.0), ("consciousness", 2.0), ("body_temp", 34.0)]  # fmt: skip
    for k in range(len(derangements) + 1):
        row = list(BASE)
        for name, v in derangements[:k]:
            row[COL[name]] = v
        rows.append(row)
    # every number of missing parameters, including none known at all
    for k in range(8):
        row = list(BASE)
        for name in tables.NEWS2_INPUTS[:k]:
            if name != "spo2_scale":
                row[COL[name]] = N
        rows.append(row)
    rows.append([N, N, N, N, N, N, N, 1.0])
    _compare(NEWS2, rows, reference.news2_row)


@pytest.mark.parametrize("which", [0, 1])
def test_bp_band_edges_and_gaps(which: int) -> None:
    thresholds = [
        [*tables.BP_SYSTOLIC_CATEGORY.thresholds, tables.BP_CRISIS_SYSTOLIC_ABOVE],
        [*tables.BP_DIASTOLIC_CATEGORY.thresholds, tables.BP_CRISIS_DIASTOLIC_ABOVE],
    ][which]
    values = [*_edges([t + 0.0 for t in thresholds], 1.0), N]
    rows = []
    for other in (N, 60.0, 120.0, 95.0, 200.0):
        for v in values:
            rows.append([v, other] if which == 0 else [other, v])
    _compare(BP, rows, reference.bp_row)


PCOL = {name: i for i, name in enumerate(tables.PEWS_INPUTS)}
PEWS_BASE = (1.0, 30.0, 0.0, 98.0, 0.0, 0.0, 120.0, 95.0, 1.0, 0.0, 37.0)


def _pvary(name: str, values: Sequence[float], age: float) -> list[list[float]]:
    rows = []
    for v in values:
        row = list(PEWS_BASE)
        row[PCOL["pews_age_group"]] = age
        row[PCOL[name]] = v
        rows.append(row)
    return rows


@pytest.mark.parametrize("age", [0.0, 1.0, 2.0, 3.0])
def test_pews_band_edges_and_gaps_per_age_group(age: float) -> None:
    a = int(age)
    per_param = {
        "resp_rate": _edges(tables.PEWS_RESP_RATE[a].thresholds, 0.01),
        "heart_rate": _edges(tables.PEWS_HEART_RATE[a].thresholds, 0.01),
        "bp_systolic": _edges(tables.PEWS_SYSTOLIC[a].thresholds, 0.01),
        "spo2": _edges([91.0, *tables.PEWS_SPO2.thresholds], 0.01),
        "o2_flow": [0.0, 5e-324, 0.005, 0.009, 0.01, *_edges([2.0, 6.0], 0.01), 20.0],
        "cap_refill": [0.0, 2.0, 2.0000001, 2.5, 2.99, 3.0, 10.0],
        "resp_distress": [0.0, 1.0, 2.0, 3.0],
        "consciousness": [0.0, 1.0, 2.0, 3.0, 4.0],
        "body_temp": [35.9, float(np.nextafter(36.0, 0)), 36.0, 37.99, float(np.nextafter(38.0, 0)), 38.0, 40.0],
        "o2_high_flow": [0.0, 1.0],
    }
    rows = []
    for name, values in per_param.items():
        rows += _pvary(name, [*values, N], age)
    _compare(PEWS, rows, reference.pews_row)


def test_pews_totals_escalation_and_age_groups() -> None:
    rows = []
    deranged = [("resp_rate", 75.0), ("resp_distress", 3.0), ("spo2", 85.0), ("o2_flow", 7.0),
                ("heart_rate", 200.0), ("bp_systolic", 150.0), ("cap_refill", 4.0)]  # fmt: skip
    for age in (0.0, 1.0, 2.0, 3.0):
        for k in range(len(deranged) + 1):
            row = list(PEWS_BASE)
            row[0] = age
            for name, v in deranged[:k]:
                row[PCOL[name]] = v
            rows.append(row)
    for age in (N, -1.0, 0.5, 4.0, 16.0):  # not a PEWS age group: no score at all
        row = list(PEWS_BASE)
        row[0] = age
        rows.append(row)
    rows.append([1.0, *([N] * 10)])
    _compare(PEWS, rows, reference.pews_row)


def _maybe(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[float]:
    return st.one_of(st.just(N), strategy)


def _near(points: Sequence[float]) -> st.SearchStrategy[float]:
    """A band edge, or a value just inside a gap next to it."""
    return st.builds(lambda p, d: p + d, st.sampled_from(list(points)), st.sampled_from([-0.5, -0.05, 0.0, 0.05, 0.5]))


vital_sets = st.tuples(
    _maybe(st.one_of(st.floats(1, 120), _near(tables.RESP_RATE.thresholds))),  # resp_rate
    _maybe(st.one_of(st.floats(30, 100), _near((*tables.SPO2_SCALE1.thresholds, *tables.SPO2_SCALE2_LOW.thresholds)))),
    _maybe(st.sampled_from([0.0, 1.0])),  # on_oxygen
    _maybe(st.one_of(st.floats(40, 300), _near(tables.SYSTOLIC.thresholds))),  # bp_systolic
    _maybe(st.one_of(st.floats(15, 350), _near(tables.PULSE.thresholds))),  # heart_rate
    _maybe(st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.0])),  # consciousness
    _maybe(st.one_of(st.floats(25, 45), _near(tables.TEMPERATURE.thresholds))),  # body_temp
    st.sampled_from([1.0, 2.0]),  # spo2_scale
)


@settings(max_examples=300, deadline=None)
@given(st.lists(vital_sets, min_size=1, max_size=8))
def test_news2_generated_vital_sets(rows: list[tuple[float, ...]]) -> None:
    _compare(NEWS2, rows, reference.news2_row)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            _maybe(st.one_of(st.floats(40, 300), _near((130, 139, 140, 159, 160, 179, 180)))),
            _maybe(st.one_of(st.floats(15, 200), _near((85, 89, 90, 99, 100, 109, 110)))),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_bp_generated(rows: list[tuple[float, float]]) -> None:
    _compare(BP, rows, reference.bp_row)


pews_sets = st.tuples(
    _maybe(st.sampled_from([0.0, 1.0, 2.0, 3.0])),  # age group
    _maybe(st.floats(0, 120)),  # resp_rate
    _maybe(st.sampled_from([0.0, 1.0, 2.0, 3.0])),  # resp_distress
    _maybe(st.one_of(st.floats(50, 100), _near((91.0, 91.01, 95.0)))),  # spo2
    _maybe(st.one_of(st.floats(0, 20), st.sampled_from([0.0, 0.005, 2.0, 6.0]))),  # o2_flow
    _maybe(st.sampled_from([0.0, 1.0])),  # o2_high_flow
    _maybe(st.floats(20, 260)),  # heart_rate
    _maybe(st.floats(30, 200)),  # bp_systolic
    _maybe(st.floats(0, 8)),  # cap_refill
    _maybe(st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.0])),  # consciousness
    _maybe(st.floats(33, 42)),  # body_temp
)


@settings(max_examples=300, deadline=None)
@given(st.lists(pews_sets, min_size=1, max_size=8))
def test_pews_generated_vital_sets(rows: list[tuple[float, ...]]) -> None:
    _compare(PEWS, rows, reference.pews_row)


def test_a_wrong_table_is_caught() -> None:
    """The comparison can fail: a graph built from a shifted table disagrees on a boundary."""
    from onnx import numpy_helper

    from models import graphs

    model = graphs.news2_graph()
    hits = 0
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.shape == (3,) and arr.tolist() == [92.0, 94.0, 96.0]:
            init.CopyFrom(numpy_helper.from_array(np.array([91.0, 94.0, 96.0]), init.name))
            hits += 1
    assert hits
    broken = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(AssertionError):
        _compare(broken, _vary("spo2", [91.5]), reference.news2_row)


def test_a_rounding_graph_is_caught() -> None:
    """The gap values matter: the old half-up rounding disagrees with the rule on 35.05 C."""
    with pytest.raises(AssertionError):
        _compare(NEWS2, _vary("body_temp", [35.05]), lambda row: {**reference.news2_row(row), "total": [1.0]})
