"""Records that leave the device layer: the vital table, Measurement and Reading (DESIGN §3).

A parser turns bytes into :class:`Measurement` objects: what the device said, already in the
one unit per vital the rest of the system uses. The device session stamps each measurement
with the device id, the receive time and a unique id, which makes it a :class:`Reading`.
Nothing downstream of this module knows which transport a reading came from.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Vital(enum.StrEnum):
    """Vital names (contract, DESIGN §3)."""

    HEART_RATE = "heart_rate"
    SPO2 = "spo2"
    RESP_RATE = "resp_rate"
    BODY_TEMP = "body_temp"
    GLUCOSE = "glucose"
    BP_SYSTOLIC = "bp_systolic"
    BP_DIASTOLIC = "bp_diastolic"
    BP_MEAN = "bp_mean"
    BODY_WEIGHT = "body_weight"
    PERFUSION_INDEX = "perfusion_index"


@dataclass(frozen=True, slots=True)
class VitalSpec:
    """One row of the vital table: unit (UCUM), LOINC code and the physiological range.

    Values outside ``[low, high]`` cannot come from a living patient measured correctly (or from
    a device working correctly); parsers reject them as ``out_of_range`` instead of emitting them.
    The ranges are deliberately wide: they catch garbage, not illness.
    """

    vital: Vital
    unit: str
    loinc: str
    low: float
    high: float
    decimals: int


# LOINC codes: FHIR R4 vital-signs value set (shared/reference/clinical.md §4.2); 8478-0 mean BP is
# from the R5 list; 41653-7 glucose by glucometer; 61006-3 perfusion index is not part of the
# vital-signs value set (it is the LOINC "Perfusion index Tissue by Pulse oximetry", UNVERIFIED);
# SpO2 uses the R4 core fixed code 2708-6 (59408-5 is the pulse-oximetry second coding); glucose
# 15074-8 [Moles/volume] is marked UNVERIFIED in clinical.md §4.2.
VITALS: dict[Vital, VitalSpec] = {
    spec.vital: spec
    for spec in (
        VitalSpec(Vital.HEART_RATE, "/min", "8867-4", 15.0, 350.0, 0),
        VitalSpec(Vital.SPO2, "%", "2708-6", 30.0, 100.0, 0),
        VitalSpec(Vital.RESP_RATE, "/min", "9279-1", 1.0, 120.0, 0),
        VitalSpec(Vital.BODY_TEMP, "Cel", "8310-5", 25.0, 45.0, 1),
        VitalSpec(Vital.GLUCOSE, "mmol/L", "15074-8", 0.5, 50.0, 1),
        VitalSpec(Vital.BP_SYSTOLIC, "mm[Hg]", "8480-6", 40.0, 300.0, 0),
        VitalSpec(Vital.BP_DIASTOLIC, "mm[Hg]", "8462-4", 15.0, 200.0, 0),
        VitalSpec(Vital.BP_MEAN, "mm[Hg]", "8478-0", 20.0, 250.0, 0),
        VitalSpec(Vital.BODY_WEIGHT, "kg", "29463-7", 0.3, 400.0, 2),
        VitalSpec(Vital.PERFUSION_INDEX, "%", "61006-3", 0.0, 25.0, 2),
    )
}

UNITS: dict[Vital, str] = {v: s.unit for v, s in VITALS.items()}

# Unit conversions at the parser (DESIGN §3). Sources: kPa per mmHg from Nordic BloodPressureTypes
# (reference/protocols.md §1.3); glucose 18.016 mg/dL per mmol/L (DESIGN §3); lb from the
# international avoirdupois pound (0.45359237 kg, exact by definition).
KPA_PER_MMHG = 0.133322387415
MG_DL_PER_MMOL_L = 18.016
KG_PER_LB = 0.45359237


def fahrenheit_to_celsius(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def in_physiological_range(vital: Vital, value: float) -> bool:
    spec = VITALS[vital]
    return math.isfinite(value) and spec.low <= value <= spec.high


class Quality(enum.StrEnum):
    """Quality flags carried by a reading (DESIGN §3)."""

    DEVICE_ARTEFACT = "device_artefact"  # device says the signal is unreliable (motion, interference)
    LOW_PERFUSION = "low_perfusion"
    PROBE_OFF = "probe_off"
    SENSOR_FAULT = "sensor_fault"
    DEVICE_ALARM = "device_alarm"  # the device itself is alarming (advisory)
    CLOCK_UNSYNCED = "clock_unsynced"  # measured_at is the gateway's receive time, not the device's
    FROM_STORAGE = "from_storage"  # device replayed a stored measurement (BLE record access)
    IRREGULAR_PULSE = "irregular_pulse"
    QUESTIONABLE = "questionable"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value decoded from device bytes, before the agent stamps it.

    ``measured_at`` is the device's own clock when the format carries one (UTC, tz-aware), else
    ``None`` (the session then uses the receive time and adds ``CLOCK_UNSYNCED``).
    ``extra`` holds whatever else the parser knows (alarm bits, sensor location, sequence number),
    as JSON-serialisable scalars.
    """

    vital: Vital
    value: float
    unit: str
    source_format: str
    measured_at: datetime | None = None
    flags: frozenset[Quality] = frozenset()
    extra: tuple[tuple[str, str | int | float | bool], ...] = ()

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"vital": str(self.vital), "value": self.value, "unit": self.unit}
        out["source_format"] = self.source_format
        if self.measured_at is not None:
            out["measured_at"] = self.measured_at.isoformat()
        if self.flags:
            out["flags"] = sorted(str(f) for f in self.flags)
        out.update(dict(self.extra))
        return out


@dataclass(frozen=True, slots=True)
class Reading:
    """One stored measured value (contract, DESIGN §3).

    ``uid`` is unique for ever: ``{gateway_id}:{sequence}`` where the sequence is monotonic per
    gateway and survives restarts. ``clock_from_device`` says whether ``measured_at`` came from
    the device's clock (True) or from the gateway's receive time (False).
    """

    uid: str
    seq: int
    vital: Vital
    value: float
    unit: str
    measured_at: datetime
    received_at: datetime
    device_id: str
    source_format: str
    clock_from_device: bool
    patient_id: str | None = None
    flags: frozenset[Quality] = frozenset()
    extra: tuple[tuple[str, str | int | float | bool], ...] = field(default=())

    @classmethod
    def from_measurement(
        cls,
        m: Measurement,
        *,
        gateway_id: str,
        seq: int,
        device_id: str,
        received_at: datetime,
        patient_id: str | None = None,
    ) -> Reading:
        flags = m.flags
        measured_at = m.measured_at
        if measured_at is None:
            measured_at = received_at
            flags = flags | {Quality.CLOCK_UNSYNCED}
        return cls(
            uid=f"{gateway_id}:{seq}",
            seq=seq,
            vital=m.vital,
            value=m.value,
            unit=m.unit,
            measured_at=measured_at,
            received_at=received_at,
            device_id=device_id,
            source_format=m.source_format,
            clock_from_device=m.measured_at is not None,
            patient_id=patient_id,
            flags=flags,
            extra=m.extra,
        )

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict; the inverse of :meth:`from_json`."""
        return {
            "uid": self.uid,
            "seq": self.seq,
            "vital": str(self.vital),
            "value": self.value,
            "unit": self.unit,
            "measured_at": self.measured_at.isoformat(),
            "received_at": self.received_at.isoformat(),
            "device_id": self.device_id,
            "source_format": self.source_format,
            "clock_from_device": self.clock_from_device,
            "patient_id": self.patient_id,
            "flags": sorted(str(f) for f in self.flags),
            "extra": [list(kv) for kv in self.extra],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Reading:
        return cls(
            uid=str(d["uid"]),
            seq=int(d["seq"]),
            vital=Vital(str(d["vital"])),
            value=float(d["value"]),
            unit=str(d["unit"]),
            measured_at=datetime.fromisoformat(str(d["measured_at"])),
            received_at=datetime.fromisoformat(str(d["received_at"])),
            device_id=str(d["device_id"]),
            source_format=str(d["source_format"]),
            clock_from_device=bool(d["clock_from_device"]),
            patient_id=None if d.get("patient_id") is None else str(d["patient_id"]),
            flags=frozenset(Quality(str(f)) for f in d.get("flags") or ()),
            extra=tuple((str(k), v) for k, v in d.get("extra") or ()),
        )


def utcnow() -> datetime:
    return datetime.now(UTC)
