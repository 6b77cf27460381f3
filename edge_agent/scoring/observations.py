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


@dataclass(slots=True)
class SubjectState:
    series: dict[str, list[Sample]] = field(default_factory=dict)
    manual: dict[str, Sample] = field(default_factory=dict)  # resp_rate, consciousness, on_oxygen, spo2_scale
    last_seen: float = 0.0  # receive time of the newest reading, or of a manual observation

    def latest(self, name: str, since: float) -> Sample | None:
        s = self.series.get(name)
        if s and s[-1].t >= since:
            return s[-1]
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
        series = st.series.setdefault(str(r.vital), [])
        sample = Sample(r.received_at.timestamp(), float(r.value), r.uid)
        if not series or series[-1].t <= sample.t:
            series.append(sample)
        else:  # late arrival: keep time order
            bisect.insort(series, sample, key=lambda s: s.t)
        return subject

    def set_manual(self, subject: str, name: str, value: float, at: datetime) -> None:
        st = self.state(subject)
        st.manual[name] = Sample(at.timestamp(), value, MANUAL_UID)
        st.last_seen = max(st.last_seen, at.timestamp())

    def prune(self, before: float, *, forget_idle_before: float) -> None:
        """Drop samples older than ``before``; forget subjects idle since ``forget_idle_before``."""
        for subject, st in list(self.subjects.items()):
            for name, series in list(st.series.items()):
                cut = bisect.bisect_left(series, before, key=lambda s: s.t)
                if cut:
                    del series[:cut]
                if not series:
                    del st.series[name]
            if not st.series and st.last_seen < forget_idle_before:
                del self.subjects[subject]
