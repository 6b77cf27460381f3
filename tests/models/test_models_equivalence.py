"""The built ONNX models agree with the plain-Python references: on every band boundary
(each threshold, one step below and above, and the rounding edges) and on generated vital sets.
Any disagreement fails."""

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


def _compare(
    session: ort.InferenceSession, rows: Sequence[Sequence[float]], ref: Callable[..., dict[str, list[float]]]
) -> None:
    x = np.array(rows, dtype=np.float64)
    names = [o.name for o in session.get_outputs()]
    outs = dict(zip(names, session.run(names, {"vitals": x}), strict=True))
    for i, row in enumerate(rows):
        expected = ref(row)
        for name, exp in expected.items():
            got = outs[name][i].tolist()
            assert np.array_equal(np.array(got), np.array(exp), equal_nan=True), (
                f"row {list(row)}: {name} onnx={got} ref={exp}"
            )


def _edges(thresholds: Sequence[float], step: float) -> list[float]:
    """Each threshold, one step below and above, and the rounding edges around it."""
    out = []
    for t in thresholds:
        out += [t - step, t, t + step, t + step / 2, t + step / 2 - 1e-9, t + step / 2 + 1e-9, t - step / 2]
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
        ("body_temp", [t / 10 for t in tables.TEMP_TENTHS.thresholds], 0.1),
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
def test_news2_band_boundaries(name: str, thresholds: Sequence[float], step: float) -> None:
    values = [*_edges(thresholds, step), N]
    rows = []
    for scale in (1.0, 2.0):
        for oxy in (0.0, 1.0, N):
            rows += _vary(name, values, spo2_scale=scale, on_oxygen=oxy)
    _compare(NEWS2, rows, reference.news2_row)


def test_news2_observations_and_totals() -> None:
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
    rows += [_vary("heart_rate", [95.0 + i])[0] for i in range(0, 40, 3)]
    _compare(NEWS2, rows, reference.news2_row)


@pytest.mark.parametrize("which", [0, 1])
def test_bp_band_boundaries(which: int) -> None:
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


def _maybe(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[float]:
    return st.one_of(st.just(N), strategy)


vital_sets = st.tuples(
    _maybe(st.floats(1, 120)),  # resp_rate
    _maybe(st.floats(30, 100)),  # spo2
    _maybe(st.sampled_from([0.0, 1.0])),  # on_oxygen
    _maybe(st.floats(40, 300)),  # bp_systolic
    _maybe(st.floats(15, 350)),  # heart_rate
    _maybe(st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.0])),  # consciousness
    _maybe(st.floats(25, 45)),  # body_temp
    st.sampled_from([1.0, 2.0]),  # spo2_scale
)


@settings(max_examples=300, deadline=None)
@given(st.lists(vital_sets, min_size=1, max_size=8))
def test_news2_generated_vital_sets(rows: list[tuple[float, ...]]) -> None:
    _compare(NEWS2, rows, reference.news2_row)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_maybe(st.floats(40, 300)), _maybe(st.floats(15, 200))), min_size=1, max_size=8))
def test_bp_generated(rows: list[tuple[float, float]]) -> None:
    _compare(BP, rows, reference.bp_row)


def test_a_wrong_table_is_caught() -> None:
    """The comparison can fail: a graph built from a shifted table disagrees on a boundary."""
    from onnx import numpy_helper

    from models import graphs

    model = graphs.news2_graph()
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.shape == (3,) and arr.tolist() == [91.0, 93.0, 95.0]:
            init.CopyFrom(numpy_helper.from_array(np.array([90.0, 93.0, 95.0]), init.name))
    broken = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(AssertionError):
        _compare(broken, _vary("spo2", [91.0]), reference.news2_row)
