"""Encoders for every format the parsers read: the other half of each codec.

Used by the tests (round trips), the simulators (which speak the real formats over
pseudo-terminals) and the scripts that build the BLE capture files, so all three agree with the
parsers on the byte layout (STYLE.md: simulators reuse the test encoders). Layouts and sources
are documented in the parser modules; nothing here is needed on a gateway at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

# --- IEEE 11073 -------------------------------------------------------------------------------


def sfloat_raw(mantissa: int, exponent: int) -> int:
    if not (-2048 <= mantissa <= 2047 and -8 <= exponent <= 7):
        raise ValueError("SFLOAT out of range")
    return ((exponent & 0x0F) << 12) | (mantissa & 0x0FFF)


def sfloat(value: float, decimals: int = 0) -> bytes:
    """SFLOAT bytes (LE) for ``value`` with ``decimals`` digits after the point."""
    return sfloat_raw(round(value * 10**decimals), -decimals).to_bytes(2, "little")


def sfloat_special(raw: int) -> bytes:
    return raw.to_bytes(2, "little")


def float32_raw(mantissa: int, exponent: int) -> int:
    if not (-(1 << 23) <= mantissa < (1 << 23) and -128 <= exponent <= 127):
        raise ValueError("FLOAT out of range")
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


def float32(value: float, decimals: int = 1) -> bytes:
    return float32_raw(round(value * 10**decimals), -decimals).to_bytes(4, "little")


def date_time(dt: datetime | None) -> bytes:
    """7-byte Date Time in UTC; None encodes "unknown" (all zero)."""
    if dt is None:
        return bytes(7)
    dt = dt.astimezone(UTC)
    return dt.year.to_bytes(2, "little") + bytes([dt.month, dt.day, dt.hour, dt.minute, dt.second])


# --- BLE characteristics ----------------------------------------------------------------------


def blood_pressure(
    systolic: bytes | float,
    diastolic: bytes | float,
    mean: bytes | float,
    *,
    kpa: bool = False,
    timestamp: datetime | bool | None = False,
    pulse: bytes | float | None = None,
    user_id: int | None = None,
    status: int | None = None,
    decimals: int = 0,
) -> bytes:
    """0x2A35. Pressures are in the unit the flag says; pass bytes for raw SFLOATs.
    ``timestamp=False`` omits the field; ``None`` sends the "unknown" date."""

    def sf(v: bytes | float) -> bytes:
        return v if isinstance(v, bytes) else sfloat(v, decimals)

    flags = (0x01 if kpa else 0) | (0x02 if timestamp is not False else 0)
    flags |= (0x04 if pulse is not None else 0) | (0x08 if user_id is not None else 0)
    flags |= 0x10 if status is not None else 0
    out = bytes([flags]) + sf(systolic) + sf(diastolic) + sf(mean)
    if timestamp is not False:
        out += date_time(timestamp if isinstance(timestamp, datetime) else None)
    if pulse is not None:
        out += pulse if isinstance(pulse, bytes) else sfloat(pulse)
    if user_id is not None:
        out += bytes([user_id])
    if status is not None:
        out += status.to_bytes(2, "little")
    return out


def temperature(
    value: bytes | float,
    *,
    fahrenheit: bool = False,
    timestamp: datetime | bool | None = False,
    temp_type: int | None = None,
    decimals: int = 1,
) -> bytes:
    flags = (0x01 if fahrenheit else 0) | (0x02 if timestamp is not False else 0)
    flags |= 0x04 if temp_type is not None else 0
    out = bytes([flags]) + (value if isinstance(value, bytes) else float32(value, decimals))
    if timestamp is not False:
        out += date_time(timestamp if isinstance(timestamp, datetime) else None)
    if temp_type is not None:
        out += bytes([temp_type])
    return out


def _sf(v: bytes | float) -> bytes:
    return v if isinstance(v, bytes) else sfloat(v)


def _plx_status_tail(measurement_status: int | None, device_status: int | None, pai: bytes | float | None) -> bytes:
    """The optional fields both PLX characteristics end with, in order (protocols.md §1.5-1.6)."""
    out = b""
    if measurement_status is not None:
        out += measurement_status.to_bytes(2, "little")
    if device_status is not None:
        out += device_status.to_bytes(3, "little")
    if pai is not None:
        out += pai if isinstance(pai, bytes) else sfloat(pai, 1)
    return out


def plx_spot(
    spo2: bytes | float,
    pr: bytes | float,
    *,
    timestamp: datetime | bool | None = False,
    measurement_status: int | None = None,
    device_status: int | None = None,
    pai: bytes | float | None = None,
    clock_not_set: bool = False,
) -> bytes:
    flags = (0x01 if timestamp is not False else 0) | (0x02 if measurement_status is not None else 0)
    flags |= (0x04 if device_status is not None else 0) | (0x08 if pai is not None else 0)
    flags |= 0x10 if clock_not_set else 0
    out = bytes([flags]) + _sf(spo2) + _sf(pr)
    if timestamp is not False:
        out += date_time(timestamp if isinstance(timestamp, datetime) else None)
    return out + _plx_status_tail(measurement_status, device_status, pai)


def plx_continuous(
    spo2: bytes | float,
    pr: bytes | float,
    *,
    fast: tuple[bytes | float, bytes | float] | None = None,
    slow: tuple[bytes | float, bytes | float] | None = None,
    measurement_status: int | None = None,
    device_status: int | None = None,
    pai: bytes | float | None = None,
) -> bytes:
    flags = (0x01 if fast else 0) | (0x02 if slow else 0) | (0x04 if measurement_status is not None else 0)
    flags |= (0x08 if device_status is not None else 0) | (0x10 if pai is not None else 0)
    out = bytes([flags]) + _sf(spo2) + _sf(pr)
    for pair in (fast, slow):
        if pair:
            out += _sf(pair[0]) + _sf(pair[1])
    return out + _plx_status_tail(measurement_status, device_status, pai)


def heart_rate(
    bpm: int,
    *,
    wide: bool = False,
    contact: int = 0,
    energy_kj: int | None = None,
    rr_1024: Sequence[int] = (),
) -> bytes:
    """0x2A37; ``contact`` is the 2-bit sensor-contact field (0-3); RR in 1/1024 s."""
    flags = (0x01 if wide else 0) | ((contact & 0x03) << 1)
    flags |= (0x08 if energy_kj is not None else 0) | (0x10 if rr_1024 else 0)
    out = bytes([flags]) + (bpm.to_bytes(2, "little") if wide else bytes([bpm]))
    if energy_kj is not None:
        out += energy_kj.to_bytes(2, "little")
    for rr in rr_1024:
        out += rr.to_bytes(2, "little")
    return out


def weight(
    raw: int,
    *,
    imperial: bool = False,
    timestamp: datetime | bool | None = False,
    user_id: int | None = None,
    bmi_height: tuple[int, int] | None = None,
) -> bytes:
    """0x2A9D with the weight already in counts (0.005 kg / 0.01 lb by default; 0xFFFF failed)."""
    flags = (0x01 if imperial else 0) | (0x02 if timestamp is not False else 0)
    flags |= (0x04 if user_id is not None else 0) | (0x08 if bmi_height else 0)
    out = bytes([flags]) + raw.to_bytes(2, "little")
    if timestamp is not False:
        out += date_time(timestamp if isinstance(timestamp, datetime) else None)
    if user_id is not None:
        out += bytes([user_id])
    if bmi_height:
        out += bmi_height[0].to_bytes(2, "little") + bmi_height[1].to_bytes(2, "little")
    return out


def glucose(
    sequence: int,
    base_time: datetime | None,
    *,
    concentration: bytes | None = None,
    mol_per_l: bool = False,
    sample_type: int = 1,
    location: int = 1,
    time_offset: int | None = None,
    status: int | None = None,
    context_follows: bool = False,
) -> bytes:
    """0x2A18. ``concentration`` is raw SFLOAT bytes (see :func:`glucose_mg_dl`, :func:`glucose_mmol_l`)."""
    flags = (0x01 if time_offset is not None else 0) | (0x02 if concentration is not None else 0)
    flags |= (0x04 if mol_per_l else 0) | (0x08 if status is not None else 0)
    flags |= 0x10 if context_follows else 0
    out = bytes([flags]) + sequence.to_bytes(2, "little") + date_time(base_time)
    if time_offset is not None:
        out += time_offset.to_bytes(2, "little", signed=True)
    if concentration is not None:
        out += concentration + bytes([(location << 4) | sample_type])
    if status is not None:
        out += status.to_bytes(2, "little")
    return out


def glucose_mg_dl(mg_dl: int) -> bytes:
    """mg/dL as kg/L SFLOAT: 90 mg/dL = 90e-5 kg/L (protocols.md §1.9)."""
    return sfloat_raw(mg_dl, -5).to_bytes(2, "little")


def glucose_mmol_l(mmol_l: float) -> bytes:
    """mmol/L as mol/L SFLOAT: 5.6 mmol/L = 56e-4 mol/L (protocols.md §1.9)."""
    return sfloat_raw(round(mmol_l * 10), -4).to_bytes(2, "little")


# --- Nonin format 2 ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoninStatus:
    sensor_disconnected: bool = False
    artifact: bool = False
    out_of_track: bool = False
    sensor_alarm: bool = False
    perfusion: int = 0b01  # 01 green, 10 red, 11 yellow, 00 none

    def byte(self) -> int:
        b = 0x80 | (self.perfusion & 0x03) << 1
        b |= 0x40 if self.sensor_disconnected else 0
        b |= 0x20 if self.artifact else 0
        b |= 0x10 if self.out_of_track else 0
        b |= 0x08 if self.sensor_alarm else 0
        return b


def nonin_frame(status: int, pleth: int, value: int) -> bytes:
    body = bytes([0x01, status & 0xFF, pleth & 0xFF, value & 0xFF])
    return body + bytes([sum(body) & 0xFF])


def nonin_packet(
    hr: int,
    spo2: int,
    status: NoninStatus = NoninStatus(),
    pleth: Sequence[int] | None = None,
    firmware: int = 0x2A,
) -> bytes:
    """One 25-frame packet (1/3 s). ``hr`` 511 / ``spo2`` 127 are the "missing" codes."""
    data = [0] * 25
    hr_msb, hr_lsb = (hr >> 7) & 0x03, hr & 0x7F
    data[0], data[1], data[2], data[3] = hr_msb, hr_lsb, spo2 & 0x7F, firmware
    data[5], data[6] = 0, 0
    data[8] = data[9] = data[10] = data[15] = data[16] = spo2 & 0x7F
    data[13] = data[19] = data[21] = hr_msb
    data[14] = data[20] = data[22] = hr_lsb
    wave = pleth or [128 + round(60 * ((i % 25) / 25 - 0.5)) for i in range(25)]
    st = status.byte()
    return b"".join(nonin_frame(st | (0x01 if i == 0 else 0), wave[i], data[i]) for i in range(25))


# --- Contec CMS50 legacy ----------------------------------------------------------------------


def contec_packet(
    pr: int,
    spo2: int,
    *,
    signal: int = 4,
    beat: bool = False,
    spo2_dropping: bool = False,
    finger_out: bool = False,
    searching: bool = False,
    probe_error: bool = False,
    pleth: int = 0x3A,
    bar: int = 5,
) -> bytes:
    b1 = 0x80 | (0x40 if beat else 0) | (0x20 if spo2_dropping else 0) | (0x10 if finger_out else 0)
    b1 |= signal & 0x0F
    b3 = ((pr >> 1) & 0x40) | (0x20 if searching else 0) | (0x10 if probe_error else 0) | (bar & 0x0F)
    return bytes([b1, pleth & 0x7F, b3, pr & 0x7F, spo2 & 0x7F])


# --- HL7 v2 ORU^R01 / MLLP ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Obx:
    code: str  # e.g. "8867-4^Heart rate^LN" or "150456^MDC_PULS_OXIM_SAT_O2^MDC"
    value: str
    unit: str  # e.g. "/min^^UCUM"
    value_type: str = "NM"
    sub_id: str = ""
    abnormal: str = ""
    status: str = "F"
    time: str = ""
    equipment: str = ""


def hl7_ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def hl7_oru(
    observations: Sequence[Obx],
    *,
    control_id: str = "MSG000001",
    when: datetime | None = None,
    patient_id: str = "",
    sending_app: str = "MONITOR",
    facility: str = "STATION",
) -> str:
    """ORU^R01 v2.5 message text, segments joined by CR (protocols.md §2.4 example layout)."""
    ts = hl7_ts(when) if when else ""
    segs = [
        f"MSH|^~\\&|{sending_app}|{facility}|EDGE-AGENT|{facility}|{ts}||ORU^R01^ORU_R01|{control_id}|P|2.5",
        f"PID|1||{patient_id}||||||",
        f"OBR|1||{control_id}|85353-1^Vital signs panel^LN|||{ts}",
    ]
    for i, o in enumerate(observations, 1):
        fields = [
            "OBX",
            str(i),
            o.value_type,
            o.code,
            o.sub_id,
            o.value,
            o.unit,
            "",
            o.abnormal,
            "",
            "",
            o.status,
            "",
            "",
            o.time or ts,
            "",
            "",
            "",
            o.equipment,
        ]
        segs.append("|".join(fields))
    return "\r".join(segs) + "\r"


def mllp(message: str) -> bytes:
    return b"\x0b" + message.encode("utf-8") + b"\x1c\x0d"
