"""Sustained-event detectors over a short window, reference implementation in plain Python.

An event is a condition on one vital that has held for at least ``duration_s``: every sample of
the current run meets the condition, consecutive samples are at most ``max_gap_s`` apart, and the
run spans ``last - first >= duration_s``. A duration of 0 means one sample is enough (used for
temperature: a thermometer gives a settled spot reading, not a stream).

Default thresholds and durations, with their sources:

* desaturation: SpO2 < 90 % — hypoxaemia as defined in the WHO Pulse Oximetry Training Manual
  (2011). Duration 10 s: a short alarm delay that suppresses motion artefact; bedside oximeters
  offer delays of roughly 5–15 s (UNVERIFIED; the Dartmouth surveillance programme, Taenzer et
  al., Anesthesiology 2010, used a 15 s delay at 80 %).
* tachycardia: heart rate > 100 /min for 60 s — the conventional adult definition (resting
  rate above 100 /min, e.g. AHA patient material; UNVERIFIED as a primary source). The 60 s
  duration is a project choice so a patient who has just walked in does not alarm.
* bradycardia: heart rate < 50 /min for 60 s — 2018 ACC/AHA/HRS guideline on bradycardia
  (Kusumoto et al., Circulation 2019;140:e382) defines sinus bradycardia as < 50 /min.
* fever: body temperature ≥ 38.0 °C, one reading — the conventional threshold (e.g. NICE NG143;
  UNVERIFIED for adults at this station's measurement sites).
* hypothermia: body temperature < 35.0 °C, one reading — the clinical definition of
  hypothermia (core temperature below 35 °C; Brown et al., N Engl J Med 2012;367:1930). NEWS2
  gives ≤35.0 °C three points.

Between the steps (clinical.md section 5): every rule compares the device value as measured,
never rounded, against a half-line (``< 90``, ``> 100``, ``>= 38.0``), so there is no gap between
"condition" and "no condition": SpO2 89.9 is a desaturation, HR 100.4 tachycardia, 49.6
bradycardia, 34.95 C hypothermia. (Rounding half up would have hidden exactly these.)

The heart-rate rules use the adult definitions: the scorer applies them to adults (and to
people whose age is not recorded), never to children, whose normal rates are higher (PEWS
scores them by age instead).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

ADULT_ONLY = frozenset({"tachycardia", "bradycardia"})  # rule kinds not applied to children

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class EventRule:
    kind: str
    vital: str
    op: str  # one of < <= > >=
    threshold: float
    duration_s: float
    source: str

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"{self.kind}: op must be one of {sorted(_OPS)}, got {self.op!r}")
        if self.duration_s < 0:
            raise ValueError(f"{self.kind}: duration_s must be >= 0")

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)

    def with_duration(self, duration_s: float) -> EventRule:
        return replace(self, duration_s=duration_s)


DEFAULT_RULES: tuple[EventRule, ...] = (
    EventRule("desaturation", "spo2", "<", 90.0, 10.0, "WHO Pulse Oximetry Training Manual 2011"),
    EventRule("tachycardia", "heart_rate", ">", 100.0, 60.0, "conventional adult definition (>100/min)"),
    EventRule("bradycardia", "heart_rate", "<", 50.0, 60.0, "ACC/AHA/HRS 2018 bradycardia guideline"),
    EventRule("fever", "body_temp", ">=", 38.0, 0.0, "conventional fever threshold (NICE NG143)"),
    EventRule("hypothermia", "body_temp", "<", 35.0, 0.0, "Brown et al., NEJM 2012 (core < 35 °C)"),
)


@dataclass(frozen=True, slots=True)
class SustainedEvent:
    kind: str
    vital: str
    started_at: float  # seconds (caller's epoch) of the first sample of the run
    last_at: float
    worst: float  # the most extreme value in the run (lowest for < rules, highest for >)
    samples: int

    @property
    def duration_s(self) -> float:
        return self.last_at - self.started_at


def detect(rule: EventRule, samples: Sequence[tuple[float, float]], *, max_gap_s: float) -> SustainedEvent | None:
    """The event in progress at the last sample, or None.

    ``samples`` are ``(t_seconds, value)`` in ascending time order, all of ``rule.vital``.
    """
    if not samples or not rule.holds(samples[-1][1]):
        return None
    first = len(samples) - 1
    while first > 0:
        t_prev, v_prev = samples[first - 1]
        if not rule.holds(v_prev) or samples[first][0] - t_prev > max_gap_s:
            break
        first -= 1
    start, last = samples[first][0], samples[-1][0]
    if last - start < rule.duration_s:
        return None
    values = [samples[i][1] for i in range(first, len(samples))]
    worst = min(values) if rule.op in ("<", "<=") else max(values)
    return SustainedEvent(rule.kind, rule.vital, start, last, worst, len(values))
