"""Stored readings as HL7 FHIR R4 Observations (DESIGN §3; shared/reference/clinical.md §4).

- Vital signs: category ``vital-signs``, the LOINC code and UCUM unit of the vital table
  (``device_drivers.records.VITALS``), ``meta.profile`` the R4 vital-signs profile of the vital
  (``heartrate``, ``oxygensat``, ``bp``, …). SpO2 carries 2708-6 and 59408-5 ("by pulse
  oximetry"). Glucose is not a vital sign: category ``laboratory``. Perfusion index (61006-3) is
  not in the vital-signs value set either: category ``exam``.
- Blood pressure: the systolic, diastolic and mean readings of one device at one ``measured_at``
  (and one patient) become one 85354-9 panel with components 8480-6, 8462-4 (and 8478-0); a
  missing systolic or diastolic component carries ``dataAbsentReason`` ``unknown``. A mean with no
  systolic or diastolic is an Observation of its own.
- A value that is not a finite number has no ``valueQuantity`` but ``dataAbsentReason``
  (``not-a-number``, ``positive-infinity``, ``negative-infinity``; HL7 PHD's mapping).
- ``identifier``: the reading's uid (every uid of a panel), so a FHIR server can dedupe (the
  transaction bundle creates with ``ifNoneExist`` on it, as the HL7 PHD IG does).
- ``device``: the device by identifier ``<gateway>/<device id>``; ``performer``: the station
  (an Organization identified by the gateway id); ``subject``: the patient by identifier, whose
  system follows the Vietnamese draft core IG (VN Core, fhir.hl7.org.vn): a 12-digit number is a
  CCCD (citizen identity number), two letters and 13 digits a legacy BHYT (health insurance)
  card number, anything else the station's local patient id. All systems are settings.
- Readings with no patient (never assigned to a visit) have no subject for the vital-signs
  profile and are skipped, and counted.

``Observation.id`` is derived from the uid (stable across exports). Quality flags of the reading
(artefact, clock not synchronised, …) become a ``note``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from device_drivers.records import VITALS, Vital
from hub.store import StoredAlert, StoredReading

__all__ = [
    "BHYT_SYSTEM",
    "CCCD_SYSTEM",
    "DEFAULT_SYSTEM_BASE",
    "SCORE_KINDS",
    "ExportStats",
    "FhirSettings",
    "observations",
    "patient_identifier",
    "score_observation",
    "score_observations",
    "write_bundle",
    "write_ndjson",
]

# VN Core (HL7 Vietnam draft core IG, fhir.hl7.org.vn/core): NamingSystem vn-cccd-ns and the BHYT
# card system its Coverage search parameter uses. Drafts: configurable, check before production.
CCCD_SYSTEM = "http://fhir.hl7.org.vn/core/sid/cccd"
BHYT_SYSTEM = "http://fhir.hl7.org.vn/core/sid/bhyt"
# Placeholders for this deployment's own identifier systems (example.org: reserved for
# documentation). A province sets its own base with --system-base.
DEFAULT_SYSTEM_BASE = "https://station-edge.example.org/fhir/sid/"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
PROFILE = "http://hl7.org/fhir/StructureDefinition/"

BP_PANEL = "85354-9"
BP_VITALS = (Vital.BP_SYSTOLIC, Vital.BP_DIASTOLIC, Vital.BP_MEAN)

DISPLAY: dict[str, str] = {
    "8867-4": "Heart rate",
    "2708-6": "Oxygen saturation in Arterial blood",
    "59408-5": "Oxygen saturation in Arterial blood by Pulse oximetry",
    "9279-1": "Respiratory rate",
    "8310-5": "Body temperature",
    "15074-8": "Glucose [Moles/volume] in Blood",
    "8480-6": "Systolic blood pressure",
    "8462-4": "Diastolic blood pressure",
    "8478-0": "Mean blood pressure",
    "29463-7": "Body weight",
    "61006-3": "Perfusion index Tissue by Pulse oximetry",
    BP_PANEL: "Blood pressure panel with all children optional",
}
UNIT_DISPLAY = {"/min": "/min", "%": "%", "Cel": "Cel", "mm[Hg]": "mmHg", "kg": "kg", "mmol/L": "mmol/L"}
CATEGORY: dict[Vital, str] = {v: "vital-signs" for v in Vital} | {
    Vital.GLUCOSE: "laboratory",
    Vital.PERFUSION_INDEX: "exam",
}
VS_PROFILE: dict[Vital, str] = {
    Vital.HEART_RATE: "heartrate",
    Vital.SPO2: "oxygensat",
    Vital.RESP_RATE: "resprate",
    Vital.BODY_TEMP: "bodytemp",
    Vital.BODY_WEIGHT: "bodyweight",
    Vital.BP_MEAN: "vitalsigns",
    Vital.BP_SYSTOLIC: "vitalsigns",
    Vital.BP_DIASTOLIC: "vitalsigns",
}
CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "laboratory": "Laboratory", "exam": "Exam"}

_CCCD = re.compile(r"\d{12}")
_BHYT = re.compile(r"[A-Z]{2}\d{13}")


@dataclass(frozen=True, slots=True)
class FhirSettings:
    """Identifier systems of the export (all URIs), and how far apart (in a gateway's sequence)
    the readings of one blood-pressure measurement may be and still form one panel."""

    cccd_system: str = CCCD_SYSTEM
    bhyt_system: str = BHYT_SYSTEM
    system_base: str = DEFAULT_SYSTEM_BASE
    bp_window: int = 64

    @property
    def reading_uid_system(self) -> str:
        return self.system_base + "reading-uid"

    @property
    def device_system(self) -> str:
        return self.system_base + "device"

    @property
    def station_system(self) -> str:
        return self.system_base + "station"

    @property
    def patient_system(self) -> str:
        return self.system_base + "patient-id"


@dataclass(slots=True)
class ExportStats:
    readings: int = 0
    observations: int = 0
    panels: int = 0
    skipped_unassigned: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    score_alerts: int = 0  # NEWS2 / PEWS alerts read from the store
    scores: int = 0  # of them exported as score Observations
    partial_scores: int = 0  # of those, partial (exported as a lower bound)
    scores_skipped_unassigned: int = 0  # alerts of a device with no visit: no patient

    def to_json(self) -> dict[str, object]:
        return {
            "readings": self.readings,
            "observations": self.observations,
            "bp_panels": self.panels,
            "skipped_unassigned": self.skipped_unassigned,
            "score_alerts": self.score_alerts,
            "scores": self.scores,
            "partial_scores": self.partial_scores,
            "scores_skipped_unassigned": self.scores_skipped_unassigned,
            "by_category": dict(sorted(self.by_category.items())),
        }


def patient_identifier(patient_id: str, settings: FhirSettings) -> dict[str, object]:
    """The FHIR Identifier of a patient id as typed or scanned at the station."""
    pid = patient_id.strip()
    if _CCCD.fullmatch(pid):
        return {
            "type": {
                "coding": [
                    {"system": IDENTIFIER_TYPE, "code": "NI", "display": "National unique individual identifier"}
                ]
            },
            "system": settings.cccd_system,
            "value": pid,
        }
    if _BHYT.fullmatch(pid):
        return {
            "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "MB", "display": "Member Number"}]},
            "system": settings.bhyt_system,
            "value": pid,
        }
    return {"system": settings.patient_system, "value": pid}


def _resource_id(uids: Iterable[str]) -> str:
    return "se-" + hashlib.sha256("\n".join(sorted(uids)).encode()).hexdigest()[:40]


def _coding(code: str) -> dict[str, object]:
    return {"system": LOINC, "code": code, "display": DISPLAY.get(code, code)}


def _code(vital: Vital) -> dict[str, object]:
    codings = [_coding(VITALS[vital].loinc)]
    if vital is Vital.SPO2:
        codings.append(_coding("59408-5"))
    return {"coding": codings, "text": DISPLAY.get(VITALS[vital].loinc, str(vital))}


def _value(value: float, unit: str) -> dict[str, object]:
    if math.isnan(value):
        return {"dataAbsentReason": _absent("not-a-number", "Not a Number (NaN)")}
    if math.isinf(value):
        code = "positive-infinity" if value > 0 else "negative-infinity"
        return {"dataAbsentReason": _absent(code, code.replace("-", " ").capitalize())}
    return {"valueQuantity": {"value": value, "unit": UNIT_DISPLAY.get(unit, unit), "system": UCUM, "code": unit}}


def _absent(code: str, display: str) -> dict[str, object]:
    return {"coding": [{"system": DATA_ABSENT, "code": code, "display": display}]}


def _instant(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def _common(uids: list[str], category: str, settings: FhirSettings) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": _resource_id(uids),
        "identifier": [{"system": settings.reading_uid_system, "value": u} for u in uids],
        "status": "final",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": category, "display": CATEGORY_DISPLAY[category]}]}
        ],
    }


def _context(first: StoredReading, settings: FhirSettings, flags: set[str]) -> dict[str, object]:
    r = first.reading
    assert r.patient_id is not None
    out: dict[str, object] = {
        "subject": {"type": "Patient", "identifier": patient_identifier(r.patient_id, settings)},
        "effectiveDateTime": _instant(r.measured_at),
        "issued": _instant(first.ingested_at),
        "performer": [
            {
                "type": "Organization",
                "identifier": {"system": settings.station_system, "value": first.gateway_id},
                "display": f"station {first.gateway_id}",
            }
        ],
        "device": {
            "type": "Device",
            "identifier": {"system": settings.device_system, "value": f"{first.gateway_id}/{r.device_id}"},
            "display": r.device_id,
        },
    }
    if flags:
        out["note"] = [{"text": "quality flags: " + ", ".join(sorted(flags))}]
    return out


def observation(stored: StoredReading, settings: FhirSettings) -> dict[str, object]:
    """One reading as one Observation (the reading must have a patient)."""
    r = stored.reading
    category = CATEGORY[r.vital]
    obs = _common([r.uid], category, settings)
    if category == "vital-signs":
        obs["meta"] = {"profile": [PROFILE + VS_PROFILE[r.vital]]}
    obs["code"] = _code(r.vital)
    obs |= _context(stored, settings, {str(f) for f in r.flags})
    obs |= _value(r.value, r.unit)
    return _ordered(obs)


def bp_panel(parts: dict[Vital, StoredReading], settings: FhirSettings) -> dict[str, object]:
    """Systolic, diastolic (and mean) of one measurement as one 85354-9 panel."""
    ordered = [parts[v] for v in BP_VITALS if v in parts]
    first = ordered[0]
    obs = _common([p.reading.uid for p in ordered], "vital-signs", settings)
    obs["meta"] = {"profile": [PROFILE + "bp"]}
    obs["code"] = {"coding": [_coding(BP_PANEL)], "text": "Blood pressure"}
    obs |= _context(first, settings, {str(f) for p in ordered for f in p.reading.flags})
    components: list[dict[str, object]] = []
    for vital in BP_VITALS:
        part = parts.get(vital)
        if part is None:
            if vital is Vital.BP_MEAN:
                continue
            components.append({"code": _code(vital), "dataAbsentReason": _absent("unknown", "Unknown")})
            continue
        components.append({"code": _code(vital)} | _value(part.reading.value, part.reading.unit))
    obs["component"] = components
    return _ordered(obs)


_ORDER = [
    "resourceType",
    "id",
    "meta",
    "identifier",
    "status",
    "category",
    "code",
    "subject",
    "effectiveDateTime",
    "issued",
    "performer",
    "valueQuantity",
    "dataAbsentReason",
    "note",
    "device",
    "component",
]


def _ordered(obs: dict[str, object]) -> dict[str, object]:
    """The elements in the specification's order (readable diffs; JSON order is not significant)."""
    return {k: obs[k] for k in _ORDER if k in obs}


def observations(
    readings: Iterable[StoredReading], settings: FhirSettings | None = None, stats: ExportStats | None = None
) -> Iterator[dict[str, object]]:
    """Observations (JSON-ready dicts) for stored readings in (gateway, seq) order, as
    :meth:`hub.store.HubStore.iter_readings` yields them; memory stays bounded.

    Blood-pressure readings wait (at most ``bp_window`` sequence numbers) for the rest of their
    measurement, then leave as one panel."""
    settings = settings or FhirSettings()
    stats = stats if stats is not None else ExportStats()
    pending: dict[tuple[str, str, datetime, str], tuple[int, dict[Vital, StoredReading]]] = {}

    def emit(obs: dict[str, object]) -> dict[str, object]:
        stats.observations += 1
        cats = obs["category"]
        assert isinstance(cats, list)
        code = cats[0]["coding"][0]["code"]
        stats.by_category[code] = stats.by_category.get(code, 0) + 1
        return obs

    def flush(key: tuple[str, str, datetime, str]) -> dict[str, object]:
        _, parts = pending.pop(key)
        if Vital.BP_SYSTOLIC in parts or Vital.BP_DIASTOLIC in parts:
            stats.panels += 1
            return emit(bp_panel(parts, settings))
        return emit(observation(parts[Vital.BP_MEAN], settings))

    for stored in readings:
        r = stored.reading
        stats.readings += 1
        for key in [
            k for k, (seq0, _) in pending.items() if k[0] != stored.gateway_id or r.seq - seq0 > settings.bp_window
        ]:
            yield flush(key)
        if r.patient_id is None:
            stats.skipped_unassigned += 1
            continue
        if r.vital not in BP_VITALS:
            yield emit(observation(stored, settings))
            continue
        key = (stored.gateway_id, r.device_id, r.measured_at, r.patient_id)
        if key in pending and r.vital in pending[key][1]:
            yield flush(key)  # a second systolic at the same instant: a new measurement
        parts = pending.setdefault(key, (r.seq, {}))[1]
        parts[r.vital] = stored
        if len(parts) == len(BP_VITALS):
            yield flush(key)
    for key in list(pending):
        yield flush(key)


def _dump(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def write_ndjson(resources: Iterable[dict[str, object]], out: TextIO) -> int:
    """One resource per line (FHIR bulk data's NDJSON); returns how many."""
    n = 0
    for resource in resources:
        out.write(_dump(resource))
        out.write("\n")
        n += 1
    return n


def write_bundle(
    resources: Iterable[dict[str, object]], out: TextIO, *, settings: FhirSettings | None = None, now: datetime
) -> int:
    """A transaction Bundle that creates each Observation unless one with its first identifier
    already exists (``ifNoneExist``), written as it streams; returns how many entries."""
    settings = settings or FhirSettings()
    head = {"resourceType": "Bundle", "type": "transaction", "timestamp": _instant(now)}
    out.write(_dump(head)[:-1])  # the closing brace comes after the entries
    n = 0
    for resource in resources:
        body = {k: v for k, v in resource.items() if k != "id"}
        idents = resource["identifier"]
        assert isinstance(idents, list)
        first = idents[0]
        entry = {
            "fullUrl": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{first['system']}|{first['value']}")),
            "resource": body,
            "request": {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": f"identifier={first['system']}|{first['value']}",
            },
        }
        out.write((',"entry":[' if n == 0 else ",") + _dump(entry))
        n += 1
    out.write("]}\n" if n else "}\n")  # FHIR JSON has no empty arrays: no entries, no "entry"
    return n


# -- early-warning scores (issue 13) ---------------------------------------------------------------
# NEWS2 total: SNOMED CT 1104051000000101 "Royal College of Physicians National Early Warning Score
# 2 (NEWS2) total score", as public UK examples use it (shared/reference/clinical.md section 4.2).
# PEWS: no code was verified, so it carries text only.
SNOMED = "http://snomed.info/sct"
_SCORE_CODES: dict[str, dict[str, object]] = {
    "news2": {
        "coding": [{"system": SNOMED, "code": "1104051000000101", "display": "RCP NEWS2 total score"}],
        "text": "NEWS2 total score",
    },
    "pews": {"text": "National PEWS (NHS England SPOT) total score"},
}
SCORE_KINDS: tuple[str, ...] = tuple(_SCORE_CODES)  # alert kinds that carry an early-warning score


def score_observation(
    alert: dict[str, object], gateway_id: str, settings: FhirSettings | None = None
) -> dict[str, object]:
    """The score of a NEWS2 or PEWS alert (its payload, ``edge_agent.alerts.Alert.to_json``) as a
    ``survey`` Observation. A partial score (some parameter missing) is exported as what it is, a
    lower bound: ``valueQuantity.comparator`` ``>=`` and a note naming the missing parameters, so
    no receiver can read it as a complete (possibly normal) score. ``derivedFrom`` names the
    readings it used (by uid); values the nurse entered are in the note."""
    settings = settings or FhirSettings()
    kind = str(alert["kind"])
    if kind not in _SCORE_CODES:
        raise ValueError(f"not a score alert: {kind!r}")
    score = alert.get("score")
    partial = bool(alert.get("partial"))
    missing = [str(m) for m in alert.get("missing") or []]  # type: ignore[attr-defined]
    inputs = [(str(n), float(v), str(u)) for n, v, u in alert.get("inputs") or []]  # type: ignore[attr-defined]
    when = str(alert.get("updated_at") or alert["raised_at"])
    obs: dict[str, object] = {
        "resourceType": "Observation",
        "id": "se-" + hashlib.sha256(f"{alert['alert_id']}|{when}".encode()).hexdigest()[:40],
        "identifier": [{"system": settings.reading_uid_system, "value": f"alert:{alert['alert_id']}@{when}"}],
        "status": "preliminary" if partial else "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
        "code": _SCORE_CODES[kind],
        "subject": {"type": "Patient", "identifier": patient_identifier(str(alert["subject"]), settings)},
        "effectiveDateTime": _instant(datetime.fromisoformat(when)),
        "performer": [
            {
                "type": "Organization",
                "identifier": {"system": settings.station_system, "value": gateway_id},
                "display": f"station {gateway_id}",
            }
        ],
    }
    if not isinstance(score, int | float) or isinstance(score, bool) or not math.isfinite(float(score)):
        obs["dataAbsentReason"] = _absent("unknown", "Unknown")
    else:
        quantity: dict[str, object] = {"value": float(score), "unit": "score", "system": UCUM, "code": "{ScoreOf}"}
        if partial:
            quantity = {
                "value": float(score),
                "comparator": ">=",
                **{k: quantity[k] for k in ("unit", "system", "code")},
            }
        obs["valueQuantity"] = quantity
    notes = []
    if partial:
        notes.append("partial score, a lower bound; missing: " + (", ".join(missing) if missing else "unknown"))
    manual = [f"{n} {v:g}" for n, v, u in inputs if u == "manual"]
    if manual:
        notes.append("entered by the nurse: " + ", ".join(manual))
    notes.append(f"level {alert.get('level')} ({alert.get('state')}); model {alert.get('model')}")
    obs["note"] = [{"text": t} for t in notes]
    derived = [
        {"identifier": {"system": settings.reading_uid_system, "value": u}} for _, _, u in inputs if u != "manual"
    ]
    if derived:
        obs["derivedFrom"] = derived
    return obs


def score_observations(
    alerts: Iterable[StoredAlert], settings: FhirSettings | None = None, stats: ExportStats | None = None
) -> Iterator[dict[str, object]]:
    """Score Observations (:func:`score_observation`) of the NEWS2 / PEWS alerts the hub stored
    (each at its highest revision, as :meth:`hub.store.HubStore.iter_alerts` yields them), with
    ``issued`` the time the hub ingested that revision. Other kinds are ignored; an alert of a
    device with no visit (subject ``device:…``) has no patient and is skipped, and counted."""
    settings = settings or FhirSettings()
    stats = stats if stats is not None else ExportStats()
    for stored in alerts:
        payload = stored.payload
        if str(payload.get("kind")) not in _SCORE_CODES:
            continue
        stats.score_alerts += 1
        subject = str(payload.get("subject") or "")
        if not subject or subject.startswith("device:"):
            stats.scores_skipped_unassigned += 1
            continue
        obs = score_observation(payload, stored.gateway_id, settings)
        obs["issued"] = _instant(stored.ingested_at)
        stats.scores += 1
        stats.partial_scores += obs["status"] == "preliminary"
        stats.observations += 1
        stats.by_category["survey"] = stats.by_category.get("survey", 0) + 1
        yield obs
