"""The scorer: readings in, alert events out (the pipeline's ``Scorer``).

For every subject touched by new readings it builds one row per model from the latest value of
each input within the window (plus the nurse's observations), runs the signed ONNX models
(NEWS2, BP category) in one batch per model, runs the sustained-event detectors on the recent
series, and hands each result to the alert book. Events are saved to the store (the outbox for
the hub) and returned for the terminal and dashboard.

A missing parameter is NaN in the model row: its sub-score is missing, the result is marked
*partial* with the missing parameters named, and the total is a lower bound. Nothing missing is
ever scored as normal. If onnxruntime or a model is unavailable, ``status()`` says so
(``available: False`` and ``error``); the event detectors, which are plain Python, keep working.

Which score applies follows the person (``set_patient``; clinical.md section 6): NEWS2 for
adults (age not recorded: NEWS2, labelled so; pregnant: NEWS2 labelled "not validated in
pregnancy" plus the pregnancy BP thresholds); children 0-15 the national PEWS, under-5s also the
WHO IMCI flags, and no adult heart-rate events. The BP category (ISH 2020) is for adults.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, overload

import numpy as np

from device_drivers.records import VITALS, Reading, Vital
from edge_agent.alerts import Alert, AlertLevel
from edge_agent.scoring import findings as F
from edge_agent.scoring import labels as L
from edge_agent.scoring.errors import ManualObservationError
from edge_agent.scoring.lifecycle import AlertBook, Finding
from edge_agent.scoring.observations import MANUAL_UID, Observations, Series, SubjectState
from edge_agent.scoring.patient import PatientContext
from edge_agent.scoring.registry import LoadedModel, ModelRegistry
from edge_agent.scoring.runtime import RuntimeInfo
from edge_agent.scoring.settings import ScoringSettings
from models import imci
from models import news2 as ref_news2
from models.events import ADULT_ONLY, EventRule, detect
from models.vitals import acvpu_code

log = logging.getLogger(__name__)

# Manual observations the nurse enters, and what each is (all expire after manual_valid_s, or
# when the visit closes: a stale "on air" or SpO2 scale would mis-score).
MANUAL_KEYS = ("resp_rate", "consciousness", "on_oxygen", "spo2_scale", "o2_flow", "o2_high_flow",
               "resp_distress", "cap_refill")  # fmt: skip
_MANUAL_ONLY = frozenset({"on_oxygen", "spo2_scale", "o2_flow", "o2_high_flow", "resp_distress", "cap_refill"})


class AlertStore(Protocol):
    """The part of edge_agent.store.BufferStore the scorer uses."""

    def save_alert(self, alert_id: str, payload: dict[str, object], *, updated_at: datetime) -> object: ...

    def load_alerts(self, *, open_only: bool = False) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class SubjectScore:
    """The latest scores of one subject, for status and the dashboard.

    Generic keys (any score): ``score`` ("NEWS2" or "PEWS"), ``total`` (a lower bound when
    ``partial``), ``level`` (the score's own level name: NEWS2 none/low/low-medium/medium/high,
    PEWS none/low/medium/high/emergency; a lower bound when partial), ``alert_level`` (the alert
    level it maps to, or None), ``partial``, ``missing`` (parameter names to enter), ``notes``
    (codes: age_not_recorded, not_validated_in_pregnancy, pews_not_validated_prehospital,
    think_sepsis), ``text_vi`` / ``text_en`` ("≥ 3, chưa đủ: nhịp thở" / "at least 3, missing:
    respiration rate"). The ``news2_*`` keys stay for NEWS2 (None for a child).
    """

    subject: str
    at: datetime
    news2_total: int | None = None
    news2_level: str | None = None  # "none", "low", ...
    news2_partial: bool = True
    news2_missing: tuple[str, ...] = ()
    bp_category: str | None = None
    bp_partial: bool = True
    risks: tuple[tuple[str, float], ...] = ()  # (model ref, first output value) for role "risk"
    score: str | None = None
    total: int | None = None
    level: str | None = None
    alert_level: str | None = None
    partial: bool = True
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    text_vi: str = ""
    text_en: str = ""
    pregnancy_bp: str | None = None  # "normal", "hypertension-in-pregnancy", "severe-..."
    imci_flags: tuple[str, ...] = ()  # WHO IMCI referral reasons now present (under-5s)

    def to_json(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "at": self.at.isoformat(),
            "score": self.score,
            "total": self.total,
            "level": self.level,
            "alert_level": self.alert_level,
            "partial": self.partial,
            "missing": list(self.missing),
            "notes": list(self.notes),
            "text_vi": self.text_vi,
            "text_en": self.text_en,
            "news2_total": self.news2_total,
            "news2_level": self.news2_level,
            "news2_partial": self.news2_partial,
            "news2_missing": list(self.news2_missing),
            "bp_category": self.bp_category,
            "bp_partial": self.bp_partial,
            "pregnancy_bp": self.pregnancy_bp,
            "imci_flags": list(self.imci_flags),
            "risks": [list(r) for r in self.risks],
        }


class Scorer:
    def __init__(
        self,
        *,
        registry: ModelRegistry,
        runtime: RuntimeInfo,
        store: AlertStore | None,
        clock: Callable[[], datetime],
        settings: ScoringSettings,
    ) -> None:
        self.registry = registry
        self.runtime = runtime
        self.store = store
        self.clock = clock
        self.settings = settings
        self.book = AlertBook(renotify_s=settings.renotify_s)
        self.obs = Observations()
        self._rules: tuple[EventRule, ...] = settings.event_rules()
        self._dirty: set[str] = set()
        self._scores: dict[str, SubjectScore] = {}
        self._patients: dict[str, PatientContext] = {}
        self._lock = threading.RLock()
        self.run_error = ""  # last model-run failure (cleared by the next success)
        self.store_errors = 0
        self.events_emitted = 0

    # -- the pipeline's interface ---------------------------------------------------------------
    def on_readings(self, readings: Sequence[Reading], now: datetime) -> list[Alert]:
        with self._lock:
            touched = []
            for r in readings:
                subject = self.obs.add(r)
                if subject is not None:
                    touched.append(subject)
            return self._evaluate(list(dict.fromkeys(touched)), now)

    def tick(self, now: datetime) -> list[Alert]:
        with self._lock:
            events = self._evaluate(sorted(self._dirty), now) if self._dirty else []
            stale_before = now.timestamp() - self.settings.stale_clear_s
            # One pass over the open alerts (linear: a subject without state is judged by its
            # newest alert), then each stale subject's alerts are closed through the book's index.
            newest: dict[str, float] = {}
            for a in self.book.open_alerts():
                t = (a.updated_at or a.raised_at).timestamp()
                if t > newest.get(a.subject, -math.inf):
                    newest[a.subject] = t
            for subject, newest_alert in newest.items():
                st = self.obs.subjects.get(subject)
                last = st.last_seen if st else newest_alert
                if last < stale_before:
                    events += self.book.clear_subject(subject, now, "stale: no values")
            events += self.book.renotify_due(now)
            keep_from = now.timestamp() - self.settings.window_s
            forget = now.timestamp() - max(self.settings.stale_clear_s, self.settings.manual_valid_s)
            self.obs.prune(keep_from, forget_idle_before=forget)
            self._persist(events, now)
            return events

    def warm_start(self, readings: Sequence[Reading]) -> None:
        """Remember already-stored readings (after a restart) without raising anything for them."""
        with self._lock:
            for r in readings:
                self.obs.add(r)

    def acknowledge(self, alert_id: str, who: str, now: datetime) -> Alert:
        with self._lock:
            alert = self.book.acknowledge(alert_id, who, now)
            self._persist([alert], now)
            return alert

    def set_manual(self, subject: str, **obs: object) -> None:
        """Nurse's observations: ``resp_rate`` (/min), ``consciousness`` (ACVPU letter),
        ``on_oxygen`` (bool), ``spo2_scale`` (1 or 2); for PEWS also ``o2_flow`` (L/min, 0 = room
        air), ``o2_high_flow`` (bool: high flow, CPAP or BiPAP), ``resp_distress`` (0 none,
        1 mild, 2 moderate, 3 severe) and ``cap_refill`` (seconds). ``None`` withdraws one.
        Every one of them expires after ``manual_valid_s`` (or when the visit closes).
        Applied at the next ``tick`` or ``on_readings``."""
        parsed: dict[str, float | None] = {}
        for key, value in obs.items():
            parsed[key] = None if value is None else _parse_manual(key, value)
        with self._lock:
            now = self.clock()
            st = self.obs.state(subject)
            for key, v in parsed.items():
                if v is None:
                    st.manual.pop(key, None)
                else:
                    self.obs.set_manual(subject, key, v, now)
            self._dirty.add(subject)

    def set_patient(self, subject: str, ctx: PatientContext | None) -> None:
        """The visit's age band and pregnancy for ``subject`` (a patient id); ``None`` forgets
        them (visit closed), and with them the nurse's observations of that visit (a stale "on
        air" or SpO2 scale must not carry over). Applied at the next ``tick`` or ``on_readings``."""
        with self._lock:
            if ctx is None:
                self._patients.pop(subject, None)
                st = self.obs.subjects.get(subject)
                if st is not None:
                    st.manual.clear()
            else:
                self._patients[subject] = ctx
            self._dirty.add(subject)

    def patient(self, subject: str) -> PatientContext | None:
        with self._lock:
            return self._patients.get(subject)

    def status(self) -> dict[str, object]:
        with self._lock:
            news2 = self.registry.by_role("news2")
            if not self.runtime.available:
                error = f"scores unavailable: {self.runtime.error}"
            elif news2 is None:
                why = self.registry.config_error or (self.registry.errors[-1] if self.registry.errors else "")
                error = "scores unavailable: no NEWS2 model loaded" + (f" ({why})" if why else "")
            else:
                error = self.run_error
            open_alerts = self.book.open_alerts()
            by_level: dict[str, int] = {}
            for a in open_alerts:
                by_level[str(a.level)] = by_level.get(str(a.level), 0) + 1
            return {
                "available": self.runtime.available and news2 is not None and not self.run_error,
                "error": error,
                "runtime": {"onnxruntime": self.runtime.version, "available": self.runtime.available},
                **self.registry.status(),
                "open_alerts": len(open_alerts),
                "open_alerts_by_level": by_level,
                "unacknowledged": sum(1 for a in open_alerts if not a.acknowledged),
                "alert_events": self.events_emitted,
                "store_errors": self.store_errors,
                "subjects": len(self.obs.subjects),
            }

    # -- extras ---------------------------------------------------------------------------------
    def scores(self) -> list[SubjectScore]:
        with self._lock:
            return list(self._scores.values())

    def open_alerts(self) -> list[Alert]:
        with self._lock:
            return self.book.open_alerts()

    def push_model(self, manifest_bytes: bytes, model_bytes: bytes) -> LoadedModel:
        """A model pushed by the hub (signed): validated, persisted, swapped in atomically."""
        return self.registry.push(manifest_bytes, model_bytes)

    # -- evaluation -----------------------------------------------------------------------------
    def _evaluate(self, subjects: list[str], now: datetime) -> list[Alert]:
        if not subjects:
            return []
        self._dirty.difference_update(subjects)
        states = [(s, self.obs.state(s)) for s in subjects]
        findings: list[Finding] = []
        scores: dict[str, dict[str, Any]] = {s: {} for s in subjects}
        for model in self.registry.models():
            rows, inputs = self._rows(model, states, now)
            if not rows:
                continue
            try:
                out = model.run(np.array(rows, dtype=np.float64))
            except Exception as exc:
                self.run_error = f"model {model.ref} failed: {type(exc).__name__}: {exc}"
                log.error("event=model_run_failed model=%s error=%r", model.ref, exc)
                continue
            self.run_error = ""
            for i, (subject, used) in enumerate(inputs):
                findings += self._findings(model, subject, used, {k: v[i] for k, v in out.items()}, scores[subject])
        for subject, st in states:
            ctx = self._patients.get(subject)
            findings += self._event_findings(subject, st, now, child=F.route(ctx) == "child")
            if ctx is not None and ctx.age_band in F.IMCI_AGE:
                findings += self._imci_findings(subject, st, F.IMCI_AGE[ctx.age_band], now, scores[subject])
            if ctx is not None and ctx.pregnant:
                findings += self._pregnancy_findings(subject, st, now, scores[subject])
        events = [e for f in findings if (e := self.book.assess(f, now)) is not None]
        for subject in subjects:
            ctx = self._patients.get(subject)
            for kind in sorted(self.book.open_kinds(subject)):
                if not F.applies(kind, ctx):
                    closed = self.book.clear_kind(subject, kind, now, "does not apply: age band or pregnancy changed")
                    if closed is not None:
                        events.append(closed)
        for subject in subjects:
            if scores[subject]:
                self._scores[subject] = SubjectScore(subject=subject, at=now, **scores[subject])
        self._persist(events, now)
        return events

    def _value(self, st: SubjectState, name: str, now: float) -> tuple[float, str] | None:
        s = self.settings
        manual = st.manual.get(name)
        if manual is not None and now - manual.t > s.manual_valid_s:
            manual = None  # expired: orders (oxygen, SpO2 scale) too, like every manual value
        if name == "spo2_scale":
            return (manual.value, MANUAL_UID) if manual else (float(s.spo2_scale_default), "default")
        if name == "o2_flow" and manual is None:
            oxy = self._value(st, "on_oxygen", now)
            if oxy is not None and oxy[0] == 0.0:
                return (0.0, MANUAL_UID)  # "on air" means no oxygen flow
        if name in _MANUAL_ONLY:
            return (manual.value, MANUAL_UID) if manual else None
        device = st.latest(name, now - s.window_s)
        best = max((x for x in (device, manual) if x is not None), key=lambda x: x.t, default=None)
        return None if best is None else (best.value, best.uid)

    def _rows(
        self, model: LoadedModel, states: list[tuple[str, SubjectState]], now: datetime
    ) -> tuple[list[list[float]], list[tuple[str, list[tuple[str, float, str]]]]]:
        t = now.timestamp()
        rows, inputs = [], []
        columns = model.columns
        wanted = "child" if model.manifest.role == "pews" else "adult"
        for subject, st in states:
            ctx = self._patients.get(subject)
            if F.route(ctx) != wanted:
                continue  # the score does not apply to this person (NEWS2, ISH BP, risk: adults)
            row, used = [], []
            for name in columns:
                if name == "pews_age_group":
                    assert ctx is not None and ctx.age_band is not None
                    row.append(F.PEWS_AGE_GROUP[ctx.age_band])
                    continue
                v = self._value(st, name, t)
                if v is None:
                    row.append(math.nan)
                else:
                    row.append(v[0])
                    if v[1] != "default":
                        used.append((name, v[0], v[1]))
            # nothing but defaults/orders known: no assessment (not a "normal" one)
            if any(name not in ("spo2_scale", "on_oxygen", "o2_flow", "o2_high_flow") for name, _, _ in used):
                rows.append(row)
                inputs.append((subject, used))
        return rows, inputs

    def _findings(
        self,
        model: LoadedModel,
        subject: str,
        used: list[tuple[str, float, str]],
        out: dict[str, np.ndarray],
        score: dict[str, Any],
    ) -> list[Finding]:
        role = model.manifest.role
        if role == "news2":
            return self._news2_finding(model, subject, used, out, score)
        if role == "pews":
            return F.pews_finding(model.ref, subject, used, out, score)
        if role == "bp_category":
            ctx = self._patients.get(subject)
            return F.bp_finding(model.ref, subject, used, out, score, ctx, self.settings.bp_crisis_level)
        # role "risk": reported in scores, no alert (a trained model is advisory until validated)
        first = model.manifest.outputs[-1]
        vals = np.asarray(out[first], dtype=np.float64).reshape(-1)
        score["risks"] = (*score.get("risks", ()), (model.ref, float(vals[-1])))
        return []

    def _news2_finding(self, model: LoadedModel, subject: str, used: list[tuple[str, float, str]],
                       out: dict[str, np.ndarray], score: dict[str, Any]) -> list[Finding]:  # fmt: skip
        ctx = self._patients.get(subject)
        return F.news2_finding(model.ref, subject, used, out, score, ctx, self.settings.news2_min_level)

    def _imci_findings(
        self, subject: str, st: SubjectState, age: imci.ImciAge, now: datetime, score: dict[str, Any]
    ) -> list[Finding]:
        t = now.timestamp()
        vals = {n: v for n in ("resp_rate", "spo2", "body_temp") if (v := self._value(st, n, t)) is not None}
        return F.imci_findings(subject, age, vals, score)

    def _pregnancy_findings(
        self, subject: str, st: SubjectState, now: datetime, score: dict[str, Any]
    ) -> list[Finding]:
        t = now.timestamp()
        vals = {n: v for n in ("bp_systolic", "bp_diastolic") if (v := self._value(st, n, t)) is not None}
        return F.pregnancy_findings(subject, vals, score)

    def _event_findings(self, subject: str, st: SubjectState, now: datetime, *, child: bool = False) -> list[Finding]:
        t = now.timestamp()
        since = t - self.settings.window_s
        out = []
        for rule in self._rules:
            if child and rule.kind in ADULT_ONLY:
                continue  # adult heart-rate definitions; PEWS scores a child's rate by age
            series = st.series.get(rule.vital)
            if not series or series.t[-1] < since:
                continue  # nothing recent: neither raised nor resolved
            ev = detect(rule, _SeriesView(series, since), max_gap_s=self.settings.event_max_gap_s)
            known = frozenset({rule.vital})
            if ev is None:
                last = series.last()
                if not rule.holds(last.value):  # back to normal: resolved
                    text = L.event_resolved_text(rule.kind, rule.vital, last.value)
                    inputs = ((rule.vital, last.value, last.uid),)
                    finding = Finding(subject, rule.kind, None, known, (rule.vital,), text, last.value, inputs=inputs)
                    out.append(finding)
                continue  # (condition holds but not for long enough yet: undecided, no change)
            points = self._single_points(rule.vital, ev.worst, st, t)
            level = AlertLevel.LOW_MEDIUM if points == 3 else AlertLevel.LOW
            held = ev.duration_s if rule.duration_s > 0 else None
            text = L.event_text(rule.kind, rule.vital, rule.op, rule.threshold, held, ev.worst)
            last = series.last()
            out.append(
                Finding(
                    subject,
                    rule.kind,
                    level,
                    known,
                    (rule.vital,),
                    text,
                    ev.worst,
                    False,
                    (),
                    ((rule.vital, ev.worst, last.uid),),
                    f"rule:{rule.kind}@{rule.op}{rule.threshold:g}/{rule.duration_s:g}s",
                )
            )
        return out

    def _single_points(self, vital: str, value: float, st: SubjectState, now: float) -> int:
        """NEWS2 points of one value (clinical.md §3.2: a single 3 means low-medium)."""
        if vital == "heart_rate":
            return ref_news2.score_pulse(value)
        if vital == "body_temp":
            return ref_news2.score_temperature(value)
        if vital == "spo2":
            scale = self._value(st, "spo2_scale", now)
            if scale is not None and scale[0] == 2.0:
                oxy = self._value(st, "on_oxygen", now)
                return ref_news2.score_spo2_scale2(value, None if oxy is None else oxy[0] > 0.5) or 0
            return ref_news2.score_spo2_scale1(value)
        return 0

    def _persist(self, events: list[Alert], now: datetime) -> None:
        self.events_emitted += len(events)
        if self.store is None:
            return
        for a in events:
            try:
                self.store.save_alert(a.alert_id, a.to_json(), updated_at=a.updated_at or now)
            except Exception as exc:
                self.store_errors += 1
                log.error("event=alert_save_failed alert=%s error=%r", a.alert_id, exc)


class _SeriesView(Sequence[tuple[float, float]]):
    """``(t, value)`` pairs of the samples since ``since``, without copying the series (the
    detector walks back from the end and stops at the first break)."""

    __slots__ = ("_start", "_t", "_v")

    def __init__(self, series: Series, since: float) -> None:
        self._t = series.t
        self._v = series.v
        self._start = bisect.bisect_left(series.t, since)

    def __len__(self) -> int:
        return len(self._t) - self._start

    @overload
    def __getitem__(self, i: int) -> tuple[float, float]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[float, float]]: ...
    def __getitem__(self, i: int | slice) -> tuple[float, float] | Sequence[tuple[float, float]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        j = self._start + i
        return (self._t[j], self._v[j])


def _parse_manual(key: str, value: object) -> float:
    if key == "resp_rate":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ManualObservationError(key, f"must be a number (/min), got {value!r}")
        spec = VITALS[Vital.RESP_RATE]
        if not (spec.low <= float(value) <= spec.high):
            raise ManualObservationError(key, f"{value} /min is outside {spec.low:g}–{spec.high:g}")
        return float(value)
    if key == "consciousness":
        if not isinstance(value, str):
            raise ManualObservationError(key, f"must be an ACVPU letter, got {value!r}")
        try:
            return float(acvpu_code(value))
        except ValueError as exc:
            raise ManualObservationError(key, str(exc)) from exc
    if key == "on_oxygen":
        if not isinstance(value, bool):
            raise ManualObservationError(key, f"must be true or false, got {value!r}")
        return 1.0 if value else 0.0
    if key == "spo2_scale":
        if isinstance(value, bool) or value not in (1, 2):
            raise ManualObservationError(key, f"must be 1 or 2, got {value!r}")
        return float(value)
    if key == "o2_high_flow":
        if not isinstance(value, bool):
            raise ManualObservationError(key, f"must be true or false, got {value!r}")
        return 1.0 if value else 0.0
    if key == "resp_distress":
        if isinstance(value, bool) or value not in (0, 1, 2, 3):
            raise ManualObservationError(key, f"must be 0 (none), 1 (mild), 2 (moderate) or 3 (severe), got {value!r}")
        return float(value)
    if key in ("o2_flow", "cap_refill"):
        limit = 60.0 if key == "o2_flow" else 30.0
        unit = "L/min" if key == "o2_flow" else "s"
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= float(value) <= limit:
            raise ManualObservationError(key, f"must be a number of {unit} between 0 and {limit:g}, got {value!r}")
        return float(value)
    raise ManualObservationError(key, f"unknown observation ({', '.join(MANUAL_KEYS)})")


def utc_clock() -> datetime:
    return datetime.now(UTC)
