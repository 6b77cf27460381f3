"""Visits as the nurse opens them: the patient identifier and its kind, validated; the age band
and pregnancy that choose the score (edge_agent.scoring.patient); the station devices whose
readings attach to the visit; the values no device measures. Pure logic, no I/O: the dashboard
part applies a visit to the pipeline and the scorer and saves it (sealed) in the store.

Identifier kinds: ``cccd`` (citizen identity card, 12 digits), ``bhyt`` (health-insurance card,
15 characters: 2 letters, the benefit level 1-5, then 12 digits) and ``local`` (a station's own
code). A scanner types what it reads into the field: the QR code on a CCCD card carries
``id|old id|name|birth ddmmyyyy|sex|address|issued``, so only the first field is kept, and the
date of birth when present, to derive the age band; nothing else of the QR is kept.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from edge_agent.scoring.patient import AgeBand, PatientContext, age_band_on

KINDS = ("cccd", "bhyt", "local")
_PATTERNS = {
    "cccd": re.compile(r"\d{12}\Z"),
    "bhyt": re.compile(r"[A-Z]{2}[1-5]\d{12}\Z"),
    "local": re.compile(r"[A-Z0-9][A-Z0-9._/-]{0,31}\Z"),
}
# Age bands in which a pregnancy can be recorded (13-15 and adults; None: age not recorded).
PREGNANCY_BANDS = (AgeBand.YEARS_13_15, AgeBand.ADULT, None)
ACVPU = ("A", "C", "V", "P", "U")


class VisitError(ValueError):
    """A visit request the nurse must correct; ``field`` names the form field, ``code`` is a
    message id the page translates."""

    def __init__(self, field: str, code: str) -> None:
        super().__init__(f"{field}: {code}")
        self.field = field
        self.code = code


@dataclass(frozen=True, slots=True)
class Identifier:
    kind: str
    value: str
    birth: date | None = None  # from a scanned CCCD QR code

    @property
    def patient_id(self) -> str:
        """What readings and the scorer carry: the kind and the value (a local code can never
        collide with a citizen id)."""
        return f"{self.kind}:{self.value}"

    @property
    def masked(self) -> str:
        """For the screen: a national identifier (CCCD, BHYT) as its kind and last four
        characters; a station's own code in full (it means nothing outside the station)."""
        if self.kind == "local":
            return self.value
        return f"{self.kind.upper()} …{self.value[-4:]}"


def parse_identifier(kind: str, text: str) -> Identifier:
    """Validate a typed or scanned identifier of ``kind`` (raises :class:`VisitError`)."""
    if kind not in KINDS:
        raise VisitError("kind", "Choose the kind of identifier")
    birth = None
    raw = text.strip()
    if "|" in raw:  # a scanned QR code: id first
        fields = raw.split("|")
        raw = fields[0]
        if kind == "cccd" and len(fields) > 3:
            birth = _ddmmyyyy(fields[3])
    value = re.sub(r"[\s-]", "", raw).upper() if kind != "local" else raw.upper()
    if not value:
        raise VisitError("identifier", "Enter or scan the patient's identifier")
    if not _PATTERNS[kind].fullmatch(value):
        code = {
            "cccd": "A citizen ID (CCCD) has 12 digits",
            "bhyt": "A health-insurance card number (BHYT) has 15 characters: 2 letters, then 13 digits",
            "local": "A station code has 1-32 letters, digits or . _ / -",
        }[kind]
        raise VisitError("identifier", code)
    return Identifier(kind, value, birth)


def _ddmmyyyy(text: str) -> date | None:
    text = text.strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[4:]), int(text[2:4]), int(text[:2]))
    except ValueError:
        return None


def parse_age_band(band: str | None, birth: date | None, today: date) -> AgeBand | None:
    """The band from a date of birth when one is known, else the chosen band ('' or None: not
    recorded)."""
    if birth is not None:
        try:
            return age_band_on(birth, today)
        except ValueError:
            raise VisitError("birth", "The date of birth is in the future") from None
    if not band:
        return None
    try:
        return AgeBand(band)
    except ValueError:
        raise VisitError("age_band", "Choose an age band") from None


@dataclass(frozen=True, slots=True)
class Visit:
    visit_id: str  # random; the only handle the page and URLs see
    identifier: Identifier
    age_band: AgeBand | None
    pregnant: bool
    device_ids: tuple[str, ...]
    opened_at: datetime
    closed_at: datetime | None = None
    observations: tuple[tuple[str, object], ...] = ()  # the nurse's latest entries, (name, value)
    observed_at: datetime | None = None
    observed_by: str = ""
    # readings measured before the visit was opened, assigned to it afterwards: (device, from, to)
    assigned: tuple[tuple[str, datetime, datetime], ...] = ()

    @property
    def patient_id(self) -> str:
        return self.identifier.patient_id

    @property
    def context(self) -> PatientContext:
        return PatientContext(age_band=self.age_band, pregnant=self.pregnant)

    def to_store(self) -> dict[str, object]:
        """The sealed payload (holds the identifier: only ever written encrypted)."""
        return {
            "kind": self.identifier.kind,
            "value": self.identifier.value,
            "age_band": None if self.age_band is None else str(self.age_band),
            "pregnant": self.pregnant,
            "device_ids": list(self.device_ids),
            "opened_at": self.opened_at.isoformat(),
            "closed_at": None if self.closed_at is None else self.closed_at.isoformat(),
            "observations": [list(o) for o in self.observations],
            "observed_at": None if self.observed_at is None else self.observed_at.isoformat(),
            "observed_by": self.observed_by,
            "assigned": [[d, a.isoformat(), b.isoformat()] for d, a, b in self.assigned],
        }

    @classmethod
    def from_store(cls, visit_id: str, d: dict[str, Any]) -> Visit:
        return cls(
            visit_id=visit_id,
            identifier=Identifier(str(d["kind"]), str(d["value"])),
            age_band=None if d.get("age_band") is None else AgeBand(str(d["age_band"])),
            pregnant=bool(d.get("pregnant", False)),
            device_ids=tuple(str(x) for x in d.get("device_ids") or ()),
            opened_at=datetime.fromisoformat(str(d["opened_at"])),
            closed_at=None if d.get("closed_at") is None else datetime.fromisoformat(str(d["closed_at"])),
            observations=tuple((str(k), v) for k, v in d.get("observations") or ()),
            observed_at=None if d.get("observed_at") is None else datetime.fromisoformat(str(d["observed_at"])),
            observed_by=str(d.get("observed_by", "")),
            assigned=tuple(
                (str(dev), datetime.fromisoformat(str(a)), datetime.fromisoformat(str(b)))
                for dev, a, b in d.get("assigned") or ()
            ),
        )

    def to_page(self) -> dict[str, object]:
        """What the page sees: no full identifier."""
        return {
            "visit_id": self.visit_id,
            "label": self.identifier.masked,
            "kind": self.identifier.kind,
            "age_band": None if self.age_band is None else str(self.age_band),
            "pregnant": self.pregnant,
            "devices": list(self.device_ids),
            "opened_at": self.opened_at.isoformat(),
            "observations": dict(self.observations),
            "observed_at": None if self.observed_at is None else self.observed_at.isoformat(),
            "observed_by": self.observed_by,
            "assigned": [{"device": d, "from": a.isoformat(), "to": b.isoformat()} for d, a, b in self.assigned],
        }


ASSIGN_MINUTES = (15, 30, 60, 120)  # how far back unassigned readings can be assigned to a visit


def parse_assignment(form: dict[str, object], station_devices: tuple[str, ...]) -> tuple[str, int]:
    """The device and the minutes back of an assignment request."""
    device = form.get("device")
    if not isinstance(device, str) or device not in station_devices:
        raise VisitError("device", "Unknown device")
    try:
        minutes = int(str(form.get("minutes", "")))
    except ValueError:
        minutes = 0
    if minutes not in ASSIGN_MINUTES:
        raise VisitError("minutes", "Choose how far back")
    return device, minutes


def parse_observations(form: dict[str, object]) -> dict[str, object]:
    """The nurse's values from the form: ``resp_rate`` (/min, 1-80), ``consciousness`` (an ACVPU
    letter), ``on_oxygen`` (bool), ``spo2_scale`` (1 or 2); for children's PEWS ``resp_distress``
    (0 none - 3 severe), ``cap_refill`` (s, 0-30), ``o2_flow`` (L/min, 0-60, 0 = room air) and
    ``o2_high_flow`` (bool: high flow, CPAP or BiPAP). Absent or empty: not changed."""
    out: dict[str, object] = {}
    rr = form.get("resp_rate")
    if rr not in (None, ""):
        try:
            value = float(str(rr).replace(",", "."))
        except ValueError:
            raise VisitError("resp_rate", "Respiration rate must be a number of breaths per minute") from None
        if not 1 <= value <= 80:
            raise VisitError("resp_rate", "Respiration rate must be between 1 and 80 /min")
        out["resp_rate"] = int(value) if value.is_integer() else value
    acvpu = form.get("consciousness")
    if acvpu not in (None, ""):
        if str(acvpu).upper() not in ACVPU:
            raise VisitError("consciousness", "Choose A, C, V, P or U")
        out["consciousness"] = str(acvpu).upper()
    if form.get("on_oxygen") not in (None, ""):
        out["on_oxygen"] = form.get("on_oxygen") in (True, "true", "1", "on", 1)
    scale = form.get("spo2_scale")
    if scale not in (None, ""):
        if str(scale) not in ("1", "2"):
            raise VisitError("spo2_scale", "The SpO2 scale is 1 or 2")
        out["spo2_scale"] = int(str(scale))
    distress = form.get("resp_distress")
    if distress not in (None, ""):
        if str(distress) not in ("0", "1", "2", "3"):
            raise VisitError("resp_distress", "Choose 0, 1, 2 or 3")
        out["resp_distress"] = int(str(distress))
    refill = form.get("cap_refill")
    if refill not in (None, ""):
        try:
            seconds = float(str(refill).replace(",", "."))
        except ValueError:
            raise VisitError("cap_refill", "Capillary refill must be between 0 and 30 seconds") from None
        if not 0 <= seconds <= 30:
            raise VisitError("cap_refill", "Capillary refill must be between 0 and 30 seconds")
        out["cap_refill"] = int(seconds) if seconds.is_integer() else seconds
    flow = form.get("o2_flow")
    if flow not in (None, ""):
        try:
            litres = float(str(flow).replace(",", "."))
        except ValueError:
            raise VisitError("o2_flow", "Oxygen flow must be between 0 and 60 L/min") from None
        if not 0 <= litres <= 60:
            raise VisitError("o2_flow", "Oxygen flow must be between 0 and 60 L/min")
        out["o2_flow"] = int(litres) if litres.is_integer() else litres
    if form.get("o2_high_flow") not in (None, ""):
        out["o2_high_flow"] = form.get("o2_high_flow") in (True, "true", "1", "on", 1)
    if not out:
        raise VisitError("resp_rate", "Enter at least one value")
    return out


class VisitBook:
    """The open visits. Each station device belongs to at most one open visit."""

    def __init__(self, station_devices: tuple[str, ...]) -> None:
        self.station_devices = station_devices
        self._open: dict[str, Visit] = {}

    def open_visits(self) -> list[Visit]:
        return sorted(self._open.values(), key=lambda v: v.opened_at)

    def get(self, visit_id: str) -> Visit:
        try:
            return self._open[visit_id]
        except KeyError:
            raise VisitError("visit", "This visit is closed or unknown") from None

    def by_patient(self, patient_id: str) -> Visit | None:
        return next((v for v in self._open.values() if v.patient_id == patient_id), None)

    def visit_of_device(self, device_id: str) -> Visit | None:
        return next((v for v in self._open.values() if device_id in v.device_ids), None)

    def restore(self, visit: Visit) -> None:
        """A visit loaded from the store at start."""
        self._open[visit.visit_id] = visit

    def open(
        self,
        identifier: Identifier,
        *,
        age_band: AgeBand | None,
        pregnant: bool,
        device_ids: tuple[str, ...],
        now: datetime,
    ) -> Visit:
        if pregnant and age_band not in PREGNANCY_BANDS:
            raise VisitError("pregnant", "Pregnancy can only be recorded from 13 years of age")
        unknown = [d for d in device_ids if d not in self.station_devices]
        if unknown:
            raise VisitError("devices", "Unknown device")
        if self.by_patient(identifier.patient_id) is not None:
            raise VisitError("identifier", "This patient already has an open visit")
        busy = [d for d in device_ids if self.visit_of_device(d) is not None]
        if busy:
            raise VisitError("devices", "A chosen device is attached to another open visit")
        visit = Visit(
            visit_id=secrets.token_urlsafe(12),
            identifier=identifier,
            age_band=age_band,
            pregnant=pregnant,
            device_ids=tuple(dict.fromkeys(device_ids)),
            opened_at=now,
        )
        self._open[visit.visit_id] = visit
        return visit

    def observe(self, visit_id: str, values: dict[str, object], *, who: str, now: datetime) -> Visit:
        visit = self.get(visit_id)
        merged = dict(visit.observations) | values
        updated = dataclasses.replace(
            visit, observations=tuple(sorted(merged.items())), observed_at=now, observed_by=who
        )
        self._open[visit_id] = updated
        return updated

    def assign(self, visit_id: str, device_id: str, since: datetime, until: datetime) -> Visit:
        visit = self.get(visit_id)
        updated = dataclasses.replace(visit, assigned=(*visit.assigned, (device_id, since, until)))
        self._open[visit_id] = updated
        return updated

    def close(self, visit_id: str, now: datetime) -> Visit:
        visit = self.get(visit_id)
        del self._open[visit_id]
        return dataclasses.replace(visit, closed_at=now)
