"""What the scorer knows about each subject: recent device values and the nurse's observations.

A subject is a patient id, or ``device:<device_id>`` for readings outside an open visit. Per
vital it keeps the samples of the last ``window_s`` seconds in time order (the sustained-event
detectors need the series; NEWS2 needs the latest). Readings the device itself marks unreliable
(artefact, probe off, sensor fault) or replays from its memory are not scored.

Times are the gateway's receive times: one clock for every device, so a device whose own clock
is wrong (or was never set) can make a value neither look stale nor look fresh. A stored
measurement a device replays later is flagged ``FROM_STORAGE`` and skipped.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from datetime import datetime

from device_drivers.records import Quality, Reading

NOT_SCORED = frozenset({Quality.DEVICE_ARTEFACT, Quality.PROBE_OFF, Quality.SENSOR_FAULT, Quality.FROM_STORAGE})

MANUAL_UID = "manual"


def subject_of(r: Reading) -> str:
    return r.patient_id or f"device:{r.device_id}"


@dataclass(slots=True)
class Sample:
    t: float  # received_at, POSIX seconds (see the module docstring)
    value: float
    uid: str


class Series:
    """One vital's device samples in receive-time order: times and values in two flat
    ``array("d")`` (16 B a sample), and the uid of the newest sample only, the one a finding
    names (``latest``, the event findings). Issue 14: a :class:`Sample` per reading (the object,
    two float objects and the reading's uid string, about 170 B) kept about 280 KiB in the
    300 s window at the demo's load (5.5 readings/s), and that window filling was most of the
    agent's Python-level growth in its first five minutes (tracemalloc)."""

    __slots__ = ("last_uid", "t", "v")

    def __init__(self) -> None:
        self.t = array("d")
        self.v = array("d")
        self.last_uid = ""

    def __len__(self) -> int:
        return len(self.t)

    def add(self, t: float, value: float, uid: str) -> None:
        if not self.t or self.t[-1] <= t:
            self.t.append(t)
            self.v.append(value)
            self.last_uid = uid
        else:  # late arrival: keep time order (after equal times, as bisect.insort)
            i = bisect.bisect_right(self.t, t)
            self.t.insert(i, t)
            self.v.insert(i, value)

    def last(self) -> Sample:
        return Sample(self.t[-1], self.v[-1], self.last_uid)

    def drop_before(self, before: float) -> None:
        cut = bisect.bisect_left(self.t, before)
        if cut:
            del self.t[:cut]
            del self.v[:cut]


@dataclass(slots=True)
class SubjectState:
    series: dict[str, Series] = field(default_factory=dict)
    manual: dict[str, Sample] = field(default_factory=dict)  # resp_rate, consciousness, on_oxygen, spo2_scale
    last_seen: float = 0.0  # receive time of the newest reading, or of a manual observation

    def latest(self, name: str, since: float) -> Sample | None:
        s = self.series.get(name)
        if s and s.t[-1] >= since:
            return s.last()
        return None


class Observations:
    def __init__(self) -> None:
        self.subjects: dict[str, SubjectState] = {}

    def state(self, subject: str) -> SubjectState:
        st = self.subjects.get(subject)
        if st is None:
            st = self.subjects[subject] = SubjectState()
        return st

    def add(self, r: Reading) -> str | None:
        """Record a reading; returns its subject, or None if the reading is not scored."""
        subject = subject_of(r)
        st = self.state(subject)
        st.last_seen = max(st.last_seen, r.received_at.timestamp())
        if r.flags & NOT_SCORED:
            return None
        series = st.series.get(str(r.vital))
        if series is None:
            series = st.series[str(r.vital)] = Series()
        series.add(r.received_at.timestamp(), float(r.value), r.uid)
        return subject

    def set_manual(self, subject: str, name: str, value: float, at: datetime) -> None:
        st = self.state(subject)
        st.manual[name] = Sample(at.timestamp(), value, MANUAL_UID)
        st.last_seen = max(st.last_seen, at.timestamp())

    def prune(self, before: float, *, forget_idle_before: float) -> None:
        """Drop samples older than ``before``; forget subjects idle since ``forget_idle_before``."""
        for subject, st in list(self.subjects.items()):
            for name, series in list(st.series.items()):
                series.drop_before(before)
                if not series:
                    del st.series[name]
            if not st.series and st.last_seen < forget_idle_before:
                del self.subjects[subject]
