"""From model outputs and rule inputs to findings: which score applies to whom, the levels each
source's escalation table maps to, and the bilingual messages (edge_agent.scoring.labels). Pure:
no state, no I/O; the scorer (edge_agent.scoring.scorer) gathers the inputs and keeps the book.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge_agent.alerts import AlertLevel
from edge_agent.scoring import labels as L
from edge_agent.scoring.lifecycle import Finding
from edge_agent.scoring.patient import AgeBand, PatientContext
from models import imci, pregnancy
from models import news2 as ref_news2
from models import pews as ref_pews
from models.bp import BpCategory, severe_diastolic, severe_systolic
from models.events import ADULT_ONLY

_RISK_LEVEL: dict[int, AlertLevel | None] = {
    0: None,
    1: AlertLevel.LOW,
    2: AlertLevel.LOW_MEDIUM,
    3: AlertLevel.MEDIUM,
    4: AlertLevel.HIGH,
}
# PEWS escalation (0 none ... 4 emergency) -> its name and the alert level whose response matches
# it in urgency (DESIGN section 3 fixes the four alert levels): Low ~ reassess within 60 min (low),
# Medium ~ review within 30 min (low-medium), High ~ within 15 min (medium), Emergency (high).
_PEWS_LEVEL: dict[int, tuple[str, AlertLevel | None]] = {
    0: ("none", None),
    1: ("low", AlertLevel.LOW),
    2: ("medium", AlertLevel.LOW_MEDIUM),
    3: ("high", AlertLevel.MEDIUM),
    4: ("emergency", AlertLevel.HIGH),
}
PEWS_AGE_GROUP: dict[AgeBand, float] = {
    AgeBand.UNDER_2_MONTHS: 0.0,
    AgeBand.MONTHS_2_11: 0.0,
    AgeBand.YEARS_1_4: 1.0,
    AgeBand.YEARS_5_12: 2.0,
    AgeBand.YEARS_13_15: 3.0,
}
IMCI_AGE: dict[AgeBand, imci.ImciAge] = {
    AgeBand.UNDER_2_MONTHS: imci.ImciAge.UNDER_2_MONTHS,
    AgeBand.MONTHS_2_11: imci.ImciAge.MONTHS_2_11,
    AgeBand.YEARS_1_4: imci.ImciAge.MONTHS_12_59,
}
# IMCI flag -> alert level (project choice: hypoxaemia needs oxygen and urgent referral: high).
_IMCI_LEVEL: dict[str, AlertLevel] = {
    "fast_breathing": AlertLevel.MEDIUM,
    "hypoxaemia": AlertLevel.HIGH,
    "young_infant_temperature": AlertLevel.MEDIUM,
}
_IMCI_VITAL = {"fast_breathing": "resp_rate", "hypoxaemia": "spo2", "young_infant_temperature": "body_temp"}
_PREGNANCY_LEVEL: dict[pregnancy.PregnancyBp, AlertLevel | None] = {
    pregnancy.PregnancyBp.NORMAL: None,
    pregnancy.PregnancyBp.HYPERTENSION: AlertLevel.LOW_MEDIUM,  # recheck at least 4 h later
    pregnancy.PregnancyBp.SEVERE: AlertLevel.HIGH,  # alert at once: urgent treatment and referral
}
_ADULT_KINDS = frozenset({"news2", "bp_crisis", *ADULT_ONLY})
_CHILD_KINDS = frozenset({"pews", "imci_fast_breathing", "imci_hypoxaemia", "imci_young_infant_temperature"})


def applies(kind: str, ctx: PatientContext | None) -> bool:
    """Whether alerts of ``kind`` belong to this person (an alert raised before the visit said
    the age or pregnancy is closed once it no longer does: it would never resolve)."""
    if kind in _ADULT_KINDS and route(ctx) == "child":
        return False
    if kind in _CHILD_KINDS:
        if ctx is None or ctx.age_band is None or not ctx.age_band.is_child:
            return False
        if kind.startswith("imci_") and ctx.age_band not in IMCI_AGE:
            return False
        if kind == "imci_young_infant_temperature" and ctx.age_band is not AgeBand.UNDER_2_MONTHS:
            return False
    if kind == "pregnancy_bp" and (ctx is None or not ctx.pregnant):
        return False
    return not (kind == "bp_crisis" and ctx is not None and ctx.pregnant)


def route(ctx: PatientContext | None) -> str:
    """ "adult" (NEWS2) or "child" (PEWS)."""
    return "child" if ctx is not None and ctx.age_band is not None and ctx.age_band.is_child else "adult"


def first(out: dict[str, np.ndarray], name: str) -> float:
    return float(np.asarray(out[name]).reshape(-1)[0])


def news2_finding(
    model_ref: str,
    subject: str,
    used: list[tuple[str, float, str]],
    out: dict[str, np.ndarray],
    score: dict[str, Any],
    ctx: PatientContext | None,
    min_level: AlertLevel,
) -> list[Finding]:
    """NEWS2 model outputs -> the finding (alert or its absence) and the subject's score fields."""
    subs = [float(x) for x in np.asarray(out["subscores"]).reshape(-1)]
    params = ref_news2.PARAMETERS
    known = frozenset(p for p, x in zip(params, subs, strict=True) if not math.isnan(x))
    missing = tuple(p for p in params if p not in known)
    # the model says how complete it is; a set it calls partial is never shown as complete
    partial = bool(missing) or first(out, "partial") != 0.0
    raw_total, raw_risk = first(out, "total"), first(out, "risk")
    if math.isnan(raw_total) or math.isnan(raw_risk):
        return []  # nothing known: no score at all (never a "0")
    total, risk = int(raw_total), int(raw_risk)
    level = _RISK_LEVEL.get(risk)
    if level is not None and level.rank < min_level.rank:
        level = None
    causes = tuple(p for p, x in zip(params, subs, strict=True) if not math.isnan(x) and x > 0)
    red = [p for p, x in zip(params, subs, strict=True) if x == 3.0]
    notes = []
    if ctx is None or ctx.age_band is None:
        notes.append("age_not_recorded")
    if ctx is not None and ctx.pregnant:
        notes.append("not_validated_in_pregnancy")
    level_name = str(level) if level else "none"
    shown_vi, shown_en = L.bound(total, partial, missing)
    lvl_vi, lvl_en = L.NEWS2_LEVELS[level_name]
    text_vi = f"NEWS2 {shown_vi} ({'tối thiểu ' if partial else ''}nguy cơ {lvl_vi})"
    text_en = f"NEWS2 {shown_en} ({'at least ' if partial else ''}{lvl_en} risk)"
    score.update(news2_total=total, news2_level=level_name, news2_partial=partial, news2_missing=missing)
    shown_inputs = [(n, v) for n, v, _ in used if n not in ("spo2_scale",)]
    vi, en = [text_vi], [text_en]
    if red:
        vi.append(f"3 điểm: {L.names(red, 0)}")
        en.append(f"3 points for {L.names(red, 1)}")
    vi.append(L.inputs_text(shown_inputs, 0))
    en.append(L.inputs_text(shown_inputs, 1))
    if level is not None:
        vi.append(L.NEWS2_RESPONSE[level_name][0])
        en.append(L.NEWS2_RESPONSE[level_name][1])
    if notes:
        vi.append(L.notes_text(notes, 0))
        en.append(L.notes_text(notes, 1))
    return _scored(
        score, subject, "news2", "NEWS2", model_ref, level, level_name, known, causes, total, partial, missing,
        used, notes, (vi, en),
    )  # fmt: skip


def pews_finding(
    model_ref: str,
    subject: str,
    used: list[tuple[str, float, str]],
    out: dict[str, np.ndarray],
    score: dict[str, Any],
) -> list[Finding]:
    """PEWS model outputs -> the finding and the subject's score fields."""
    subs = [float(x) for x in np.asarray(out["subscores"]).reshape(-1)]
    params = ref_pews.PARAMETERS
    raw_total, raw_level = first(out, "total"), first(out, "escalation")
    if math.isnan(raw_total) or math.isnan(raw_level):
        return []
    known_params = {p for p, x in zip(params, subs, strict=True) if not math.isnan(x)}
    values = {n: v for n, v, _ in used}
    avpu_known = "consciousness" in values
    missing = tuple(p for p in params if p not in known_params) + (() if avpu_known else ("consciousness",))
    partial = bool(missing) or first(out, "partial") != 0.0
    total, esc = int(raw_total), int(raw_level)
    level_name, level = _PEWS_LEVEL[esc]
    known = frozenset(known_params | ({"consciousness"} if avpu_known else set()))
    causes = tuple(p for p, x in zip(params, subs, strict=True) if not math.isnan(x) and x > 0)
    if avpu_known and values["consciousness"] >= 1.0:
        causes = (*causes, "consciousness")
    notes = ["pews_not_validated_prehospital"]
    if first(out, "sepsis") == 1.0:
        notes.append("think_sepsis")
    shown_vi, shown_en = L.bound(total, partial, missing)
    lvl_vi, lvl_en = L.PEWS_LEVELS[level_name]
    text_vi = f"PEWS {shown_vi} ({'tối thiểu ' if partial else ''}mức {lvl_vi})"
    text_en = f"PEWS {shown_en} ({'at least ' if partial else ''}{lvl_en})"
    shown_inputs = [(n, v) for n, v, _ in used if n in L.UNITS or n in L.CODED or n == "consciousness"]
    vi = [text_vi, L.inputs_text(shown_inputs, 0)]
    en = [text_en, L.inputs_text(shown_inputs, 1)]
    if avpu_known and values["consciousness"] >= 1.0:
        letter = "ACVPU"[int(values["consciousness"])]
        vi.append(f"ý thức {letter}: nâng mức báo động")
        en.append(f"AVPU {letter} escalates")
    if level is not None:
        vi.append(L.PEWS_RESPONSE[level_name][0])
        en.append(L.PEWS_RESPONSE[level_name][1])
    vi.append(L.notes_text(notes, 0))
    en.append(L.notes_text(notes, 1))
    return _scored(
        score, subject, "pews", "PEWS", model_ref, level, level_name, known, causes, total, partial, missing,
        used, notes, (vi, en),
    )  # fmt: skip


def _scored(
    score: dict[str, Any],
    subject: str,
    kind: str,
    name: str,
    model_ref: str,
    level: AlertLevel | None,
    level_name: str,
    known: frozenset[str],
    causes: tuple[str, ...],
    total: int,
    partial: bool,
    missing: tuple[str, ...],
    used: list[tuple[str, float, str]],
    notes: list[str],
    parts: tuple[list[str], list[str]],
) -> list[Finding]:
    """What every early-warning score ends with: the subject's generic score fields (the keys of
    ``Scorer.scores()``'s JSON; the headline text is the first of each language's ``parts``) and
    its finding, whose text is the parts joined, Vietnamese / English."""
    vi, en = parts
    score.update(
        score=name,
        total=total,
        level=level_name,
        alert_level=str(level) if level else None,
        partial=partial,
        missing=missing,
        notes=tuple(notes),
        text_vi=vi[0],
        text_en=en[0],
    )
    text = L.bilingual("; ".join(vi), "; ".join(en))
    return [Finding(subject, kind, level, known, causes, text, float(total), partial, missing, tuple(used), model_ref)]


def bp_finding(
    model_ref: str,
    subject: str,
    used: list[tuple[str, float, str]],
    out: dict[str, np.ndarray],
    score: dict[str, Any],
    ctx: PatientContext | None,
    crisis_level: AlertLevel,
) -> list[Finding]:
    """BP category model outputs -> the severe-BP finding (none in pregnancy) and score fields."""
    cat = first(out, "category")
    crisis = first(out, "crisis")
    bp_used = [u for u in used if u[0] in ("bp_systolic", "bp_diastolic")]
    if math.isnan(cat) or not bp_used:
        return []
    known = frozenset(u[0] for u in bp_used)
    values = {u[0]: u[1] for u in bp_used}
    score.update(bp_category=BpCategory(int(cat)).label, bp_partial=len(known) < 2)
    if ctx is not None and ctx.pregnant:
        return []  # pregnancy has its own, lower thresholds (models.pregnancy): no second alert
    level = crisis_level if crisis == 1.0 else None
    causes = tuple(
        n
        for n, severe in (("bp_systolic", severe_systolic), ("bp_diastolic", severe_diastolic))
        if n in values and severe(values[n])
    )
    shown = "/".join(f"{values[n]:g}" if n in values else "?" for n in ("bp_systolic", "bp_diastolic"))
    label = BpCategory(int(cat)).label
    text = (
        f"Huyết áp rất cao (≥ 180/110): HA {shown} mmHg ({label}); cần bác sĩ đánh giá ngay / "
        f"BP {shown} mmHg: severe (≥ 180/110), {label}; immediate medical review"
    )
    missing = tuple(n for n in ("bp_systolic", "bp_diastolic") if n not in known)
    return [
        Finding(
            subject, "bp_crisis", level, known, causes, text, cat, bool(missing), missing, tuple(bp_used), model_ref
        )
    ]


def imci_findings(
    subject: str, age: imci.ImciAge, vals: dict[str, tuple[float, str]], score: dict[str, Any]
) -> list[Finding]:
    """WHO IMCI flags (under-5s) from the latest (value, uid) of resp_rate, spo2, body_temp: one
    referral alert per flag, cleared when re-measured normal."""
    present = {
        f.kind: f
        for f in imci.flags(
            age,
            resp_rate=vals["resp_rate"][0] if "resp_rate" in vals else None,
            spo2=vals["spo2"][0] if "spo2" in vals else None,
            body_temp=vals["body_temp"][0] if "body_temp" in vals else None,
        )
    }
    score["imci_flags"] = tuple(present)
    out = []
    for kind, vital in _IMCI_VITAL.items():
        if vital not in vals or (kind == "young_infant_temperature" and age is not imci.ImciAge.UNDER_2_MONTHS):
            continue
        value, uid = vals[vital]
        flag = present.get(kind)
        title_vi, title_en, resp_vi, resp_en = L.IMCI_TEXT[kind]
        reading_vi, reading_en = L.inputs_text([(vital, value)], 0), L.inputs_text([(vital, value)], 1)
        if flag is None:
            text = L.bilingual(reading_vi, reading_en)
        else:
            text = L.bilingual(
                f"Chuyển tuyến: {title_vi} ({L.threshold_text(flag.threshold, 0)}): {reading_vi}; {resp_vi}",
                f"Referral: {title_en} ({L.threshold_text(flag.threshold, 1)}): {reading_en}; {resp_en}",
            )
        out.append(
            Finding(
                subject,
                f"imci_{kind}",
                _IMCI_LEVEL[kind] if flag else None,
                frozenset({vital}),
                (vital,),
                text,
                value,
                inputs=((vital, value, uid),),
                model=f"rule:imci_{kind}",
            )
        )
    return out


def pregnancy_findings(subject: str, vals: dict[str, tuple[float, str]], score: dict[str, Any]) -> list[Finding]:
    """Pregnancy BP thresholds (clinical.md 6.3) from the latest (value, uid) of the BP
    components: >= 140/90 recheck, >= 160/110 at once."""
    if not vals:
        return []
    res = pregnancy.pregnancy_bp(
        bp_systolic=vals["bp_systolic"][0] if "bp_systolic" in vals else None,
        bp_diastolic=vals["bp_diastolic"][0] if "bp_diastolic" in vals else None,
    )
    if res.level is None:
        return []
    score["pregnancy_bp"] = res.level.label
    shown = "/".join(f"{vals[n][0]:g}" if n in vals else "?" for n in ("bp_systolic", "bp_diastolic"))
    missing = tuple(n for n in ("bp_systolic", "bp_diastolic") if n not in vals)
    level = _PREGNANCY_LEVEL[res.level]
    if level is None:
        text = f"HA {shown} mmHg / BP {shown} mmHg"
    else:
        title_vi, title_en, resp_vi, resp_en = L.PREGNANCY_TEXT[res.level.label]
        miss_vi = f" (chưa đủ: {L.names(missing, 0)})" if missing else ""
        miss_en = f" (missing: {L.names(missing, 1)})" if missing else ""
        # each language's half whole (the dashboard splits the text at its one separator)
        text = L.bilingual(
            f"{L.cap(title_vi)}: HA {shown} mmHg; {resp_vi}{miss_vi}",
            f"{L.cap(title_en)}: BP {shown} mmHg; {resp_en}{miss_en}",
        )
    return [
        Finding(
            subject,
            "pregnancy_bp",
            level,
            frozenset(vals),
            res.causes or tuple(vals),
            text,
            float(int(res.level)),
            res.partial,
            missing,
            tuple((n, v, uid) for n, (v, uid) in vals.items()),
            "rule:pregnancy_bp@isshp",
        )
    ]
