"""The scorer's per-vital window (edge_agent.scoring.observations.Series): time order with late
arrivals, the newest sample's uid, pruning, and the compact storage of issue 14."""

from __future__ import annotations

import sys
from datetime import timedelta

from scoring_helpers import T0, MakeReading

from device_drivers.records import Vital
from edge_agent.scoring.observations import Observations, Sample, Series, subject_of


def test_series_keeps_time_order_and_the_newest_uid() -> None:
    s = Series()
    s.add(10.0, 96.0, "gw:1")
    s.add(12.0, 95.0, "gw:2")
    s.add(11.0, 90.0, "gw:late")  # late arrival: in order, not the newest
    s.add(12.0, 94.0, "gw:3")  # same time as the newest: after it, and it is the newest now
    assert list(s.t) == [10.0, 11.0, 12.0, 12.0]
    assert list(s.v) == [96.0, 90.0, 95.0, 94.0]
    assert s.last() == Sample(12.0, 94.0, "gw:3")
    s.drop_before(11.5)
    assert list(s.t) == [12.0, 12.0] and s.last().uid == "gw:3"
    s.drop_before(13.0)
    assert len(s) == 0 and not s


def test_observations_latest_prune_and_forget(make_reading: MakeReading) -> None:
    obs = Observations()
    r1 = make_reading(Vital.SPO2, 97, 0)
    r2 = make_reading(Vital.SPO2, 91, 30)
    for r in (r1, r2):
        assert obs.add(r) == subject_of(r)
    st = obs.subjects[subject_of(r1)]
    t0 = T0.timestamp()
    assert st.latest("spo2", since=t0 + 10) == Sample((T0 + timedelta(seconds=30)).timestamp(), 91.0, r2.uid)
    assert st.latest("spo2", since=t0 + 31) is None
    obs.prune(t0 + 10, forget_idle_before=t0)
    assert list(st.series["spo2"].v) == [91.0]
    obs.prune(t0 + 31, forget_idle_before=t0 + 60)  # empty and idle: the subject is forgotten
    assert obs.subjects == {}


def test_a_window_sample_costs_two_doubles() -> None:
    s = Series()
    for i in range(1000):
        s.add(float(i), 95.0 + i % 5, f"gw-01:{i}")
    # the samples' own storage (no object, float or uid string per sample)
    assert sys.getsizeof(s.t) + sys.getsizeof(s.v) < 1000 * 2 * 8 * 1.2 + 200
