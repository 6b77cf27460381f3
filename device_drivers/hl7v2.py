"""HL7 v2 ORU^R01 over MLLP -> any vital (stream parser).

Framing (protocols.md §2.4; python-hl7 `hl7/client.py`): ``0x0B`` message ``0x1C 0x0D``;
segments separated by CR (LF and CRLF accepted too). Bytes outside frames are skipped and
counted (``garbage_outside_frame``, once per run); a new ``0x0B`` before the end of a frame
abandons the truncated frame (``truncated_frame``); a frame longer than ``MAX_FRAME`` bytes is
abandoned (``frame_too_long``). Decisions depend only on byte positions, so any chunking gives
the same result.

Work is linear in the input: each step first looks for the next ``0x0B`` (bounded by
``MAX_FRAME``) and then for ``0x1C 0x0D`` only *before* it, so a run of start bytes costs one
byte each (it cost a 64 KiB scan each before: 400 kB of ``0x0B`` took 27 s), and a partial
frame is never rescanned (``_scanned``).

Privacy: rejections carry the reason and at most the vital name; OBX-3 codes, message types and
unit text are device-supplied and never go into ``stats.last_error``.

OBX fields (protocols.md §2.4, python-hl7 docs example; OBX-14/18 from HL7 v2.5, not
re-verified): OBX-2 value type, OBX-3 ``code^text^system``, OBX-4 sub-id, OBX-5 value, OBX-6
units, OBX-8 abnormal flags, OBX-11 result status, OBX-14 observation time, OBX-18 equipment.
OBX-3 is mapped by LOINC (:data:`LOINC_VITALS`) or by ISO/IEEE 11073-10101 MDC code, numeric or
mnemonic (:data:`MDC_VITALS`); units are converted to the vital's unit (degF -> Cel, kPa ->
mm[Hg], lb -> kg, mg/dL -> mmol/L). The measurement time is OBX-14, else OBR-7, else none.

The parser is sans-I/O: it queues an :class:`AckRequest` per message; a transport that can
write back drains :meth:`Hl7v2Parser.take_acks` and sends :func:`encode_ack` (MSA-1 ``AA``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import ClassVar

from device_drivers.base import Parser
from device_drivers.records import (
    KG_PER_LB,
    KPA_PER_MMHG,
    MG_DL_PER_MMOL_L,
    Measurement,
    Quality,
    Vital,
    fahrenheit_to_celsius,
)

VT, FS, CR = 0x0B, 0x1C, 0x0D
END = b"\x1c\x0d"
MAX_FRAME = 65536

# LOINC -> vital. 8867-4, 9279-1, 59408-5, 8480-6, 8462-4, 8310-5: protocols.md §2.4 example;
# 2708-6, 8478-0, 29463-7, 15074-8, 61006-3: records.py VITALS (clinical.md §4.2). The others
# are common LOINC codes for the same quantities, from general LOINC knowledge (UNVERIFIED
# against a source in this repo): 20564-1 SpO2 in blood, 8889-8 HR by pulse oximetry, 8331-1
# oral, 8328-7 axillary, 8332-9 rectal (UNVERIFIED), 8333-7 tympanic temperature,
# 3141-9 body weight measured, 2339-0 / 41653-7 glucose mass/volume.
LOINC_VITALS: dict[str, Vital] = {
    "8867-4": Vital.HEART_RATE,
    "8889-8": Vital.HEART_RATE,
    "9279-1": Vital.RESP_RATE,
    "59408-5": Vital.SPO2,
    "2708-6": Vital.SPO2,
    "20564-1": Vital.SPO2,
    "8480-6": Vital.BP_SYSTOLIC,
    "8462-4": Vital.BP_DIASTOLIC,
    "8478-0": Vital.BP_MEAN,
    "8310-5": Vital.BODY_TEMP,
    "8331-1": Vital.BODY_TEMP,
    "8328-7": Vital.BODY_TEMP,
    "8332-9": Vital.BODY_TEMP,
    "8333-7": Vital.BODY_TEMP,
    "29463-7": Vital.BODY_WEIGHT,
    "3141-9": Vital.BODY_WEIGHT,
    "15074-8": Vital.GLUCOSE,
    "2339-0": Vital.GLUCOSE,
    "41653-7": Vital.GLUCOSE,
    "61006-3": Vital.PERFUSION_INDEX,
}

# MDC (ISO/IEEE 11073-10101) code = partition * 65536 + term code, partition 2 (SCADA).
# 150456 SpO2: protocols.md §2.4 (US Core example). Term codes checked with the search tool in
# public 11073 nomenclature tables (e.g. Signove/Antidote-derived `Nomenclature.java`):
# MDC_PULS_OXIM_PULS_RATE 18458, MDC_PULS_RATE_NON_INV 18474, MDC_ECG_HEART_RATE 16770,
# MDC_PRESS_BLD_NONINV_SYS/DIA/MEAN 18949/18950/18951, MDC_TEMP_BODY 19292 (150364 also in a
# FHIR example), MDC_TEMP_TYMP 19320, MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD 29112,
# MDC_MASS_BODY_ACTUAL 57664. MDC_RESP_RATE 20490 / MDC_TTHOR_RESP_RATE 20498 and
# MDC_PULS_OXIM_PERF_REL 19376 are from the same tables. Vendors differ: check the monitor's
# conformance statement (protocols.md §2.4).
_MDC_TERMS: dict[str, tuple[int, Vital]] = {
    "MDC_PULS_OXIM_SAT_O2": (19384, Vital.SPO2),
    "MDC_PULS_OXIM_PULS_RATE": (18458, Vital.HEART_RATE),
    "MDC_PULS_RATE_NON_INV": (18474, Vital.HEART_RATE),
    "MDC_ECG_HEART_RATE": (16770, Vital.HEART_RATE),
    "MDC_PRESS_BLD_NONINV_SYS": (18949, Vital.BP_SYSTOLIC),
    "MDC_PRESS_BLD_NONINV_DIA": (18950, Vital.BP_DIASTOLIC),
    "MDC_PRESS_BLD_NONINV_MEAN": (18951, Vital.BP_MEAN),
    "MDC_TEMP_BODY": (19292, Vital.BODY_TEMP),
    "MDC_TEMP_TYMP": (19320, Vital.BODY_TEMP),
    "MDC_RESP_RATE": (20490, Vital.RESP_RATE),
    "MDC_TTHOR_RESP_RATE": (20498, Vital.RESP_RATE),
    "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD": (29112, Vital.GLUCOSE),
    "MDC_MASS_BODY_ACTUAL": (57664, Vital.BODY_WEIGHT),
    "MDC_PULS_OXIM_PERF_REL": (19376, Vital.PERFUSION_INDEX),
}
MDC_VITALS: dict[str, Vital] = {}
for _name, (_term, _vital) in _MDC_TERMS.items():
    MDC_VITALS[_name] = _vital
    MDC_VITALS[str(2 * 65536 + _term)] = _vital

# Units: lower-cased code or text of OBX-6 -> (dimension, converter to the vital's unit).
# MDC unit codes are partition 4: MDC_DIM_PERCENT 544 (262688), MDC_DIM_MMHG 3872 (266016),
# MDC_DIM_MILLI_G_PER_DL 2130 (264274): checked in the same nomenclature table; the others by
# mnemonic only.
Converter = Callable[[float], float]


def _same(v: float) -> float:
    return v


UNITS: dict[str, tuple[str, Converter]] = {}
for _keys, _dim, _conv in (
    (
        (
            "/min",
            "1/min",
            "bpm",
            "{beats}/min",
            "{breaths}/min",
            "{beat}/min",
            "{breath}/min",
            "beats/min",
            "breaths/min",
            "mdc_dim_beat_per_min",
            "mdc_dim_resp_per_min",
            "264864",
        ),
        "rate",
        _same,
    ),
    (("%", "percent", "mdc_dim_percent", "262688"), "percent", _same),
    (("cel", "degc", "°c", "c", "deg c", "mdc_dim_degc", "268192"), "temp", _same),
    (("[degf]", "degf", "°f", "f", "deg f", "mdc_dim_fahr"), "temp", fahrenheit_to_celsius),
    (("mm[hg]", "mmhg", "mm hg", "mdc_dim_mmhg", "266016"), "pressure", _same),
    (("kpa", "mdc_dim_kilo_pa"), "pressure", lambda v: v / KPA_PER_MMHG),
    (("kg", "mdc_dim_kilo_g", "263875"), "mass", _same),
    (("g", "mdc_dim_x_g"), "mass", lambda v: v / 1000.0),
    (("[lb_av]", "lb", "lbs", "mdc_dim_lb"), "mass", lambda v: v * KG_PER_LB),
    (("mmol/l", "mdc_dim_milli_mole_per_l"), "glucose", _same),
    (("mg/dl", "mdc_dim_milli_g_per_dl", "264274"), "glucose", lambda v: v / MG_DL_PER_MMOL_L),
):
    for _k in _keys:
        UNITS[_k] = (_dim, _conv)

DIMENSION: dict[Vital, str] = {
    Vital.HEART_RATE: "rate",
    Vital.RESP_RATE: "rate",
    Vital.SPO2: "percent",
    Vital.PERFUSION_INDEX: "percent",
    Vital.BODY_TEMP: "temp",
    Vital.BP_SYSTOLIC: "pressure",
    Vital.BP_DIASTOLIC: "pressure",
    Vital.BP_MEAN: "pressure",
    Vital.BODY_WEIGHT: "mass",
    Vital.GLUCOSE: "glucose",
}

REJECTED_STATUS = {"X": "result_not_obtained", "D": "result_deleted", "W": "result_wrong"}
_TS = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$", re.ASCII)


def parse_ts(text: str, default_tz: tzinfo = UTC) -> datetime | None:
    """HL7 TS/DTM ``YYYYMMDDHHMM[SS[.S[S[S[S]]]]]][+/-ZZZZ]`` -> UTC; coarser than minutes -> None."""
    m = _TS.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    tz = default_tz
    if zone:
        sign = -1 if zone[0] == "-" else 1
        hours, minutes = int(zone[1:3]), int(zone[3:5])
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        dt = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((frac or "0").ljust(6, "0")[:6]),
            tzinfo=tz,
        )
        return dt.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class AckRequest:
    """What an ACK for one received message needs (MSH-3..6 swapped, MSH-10, MSH-12)."""

    control_id: str
    sending_app: str
    sending_facility: str
    receiving_app: str
    receiving_facility: str
    version: str
    code: str = "AA"


def encode_ack(req: AckRequest, now: datetime) -> bytes:
    """MLLP-framed ACK (protocols.md §2.4: MSA|AA|<MSH-10 of the original>)."""
    ts = now.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    msh = "|".join(
        [
            "MSH",
            "^~\\&",
            req.receiving_app,
            req.receiving_facility,
            req.sending_app,
            req.sending_facility,
            ts,
            "",
            "ACK^R01^ACK",
            f"ACK{req.control_id}",
            "P",
            req.version or "2.5",
        ]
    )
    body = f"{msh}\rMSA|{req.code}|{req.control_id}\r"
    return b"\x0b" + body.encode("utf-8") + END


def _field(fields: list[str], n: int) -> str:
    return fields[n] if n < len(fields) else ""


class Hl7v2Parser(Parser):
    format_name: ClassVar[str] = "hl7v2"
    kind: ClassVar[str] = "serial"

    def __init__(self, default_tz: tzinfo = UTC) -> None:
        super().__init__()
        self.default_tz = default_tz  # for timestamps without an offset
        self._buf = self.buffer_type()
        self._scanned = 1  # no END or VT in buf[1:_scanned] (buf[0] is VT when non-empty)
        self._in_garbage = False
        self._acks: list[AckRequest] = []

    def take_acks(self) -> list[AckRequest]:
        acks, self._acks = self._acks, []
        return acks

    # framing ----------------------------------------------------------------------------------

    def _discard(self, n: int, reason: str) -> None:
        del self._buf[:n]
        self._scanned = 1
        self.stats.bytes_discarded += n
        if reason == "garbage_outside_frame":
            if not self._in_garbage:
                self._in_garbage = True
                self.stats.reject(reason)
        else:
            self.stats.reject(reason)

    def _feed(self, data: bytes) -> list[Measurement]:
        out: list[Measurement] = []
        buf = self._buf
        buf += data
        while buf:
            if buf[0] != VT:
                start = buf.find(VT)
                self._discard(len(buf) if start < 0 else start, "garbage_outside_frame")
                continue
            self._in_garbage = False
            # END must start at index <= MAX_FRAME; a VT before END means a truncated frame.
            # Look for the next VT first and for END only before it: each byte is scanned a
            # bounded number of times, whatever the input (linear, not O(n x MAX_FRAME)).
            scan_from = max(1, self._scanned - 1)
            nxt = buf.find(VT, scan_from, MAX_FRAME + 1)
            end = buf.find(END, scan_from, nxt if nxt >= 0 else MAX_FRAME + 2)
            if end < 0 and nxt >= 0:
                self._discard(nxt, "truncated_frame")
                continue
            if end >= 0:
                frame = bytes(buf[1:end])
                del buf[: end + 2]
                self._scanned = 1
                self.stats.frames_ok += 1
                self._message(frame, out)
                continue
            if len(buf) >= MAX_FRAME + 2:
                self._discard(1, "frame_too_long")
                self._in_garbage = True
                continue
            self._scanned = len(buf)
            break
        return out

    # message ----------------------------------------------------------------------------------

    def _message(self, frame: bytes, out: list[Measurement]) -> None:
        text = frame.decode("utf-8", errors="replace")
        segments = [s for s in re.split(r"\r\n|\r|\n", text) if s]
        if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
            self.stats.reject("not_hl7")
            return
        msh_text = segments[0]
        sep = msh_text[3]
        comp = msh_text[4]
        msh = msh_text.split(sep)  # msh[n - 1] is MSH-n (MSH-1 is the separator itself)
        control_id = _field(msh, 9)
        self._acks.append(
            AckRequest(
                control_id=control_id,
                sending_app=_field(msh, 2),
                sending_facility=_field(msh, 3),
                receiving_app=_field(msh, 4),
                receiving_facility=_field(msh, 5),
                version=_field(msh, 11),
            )
        )
        message_type = _field(msh, 8).split(comp)
        if message_type[0] != "ORU":
            self.stats.reject("unsupported_message")
            return
        obr_time: datetime | None = None
        for seg in segments[1:]:
            fields = seg.split(sep)
            if fields[0] == "OBR":
                obr_time = parse_ts(_field(fields, 7).split(comp)[0], self.default_tz)
            elif fields[0] == "OBX":
                self._obx(fields, comp, obr_time, control_id, out)

    def _lookup(self, identifier: str, comp: str) -> tuple[Vital, str] | None:
        parts = identifier.split(comp)
        # primary triplet (code, text, system) and the alternate one (4-6)
        for base in (0, 3):
            code = parts[base].strip() if len(parts) > base else ""
            name = parts[base + 1].strip() if len(parts) > base + 1 else ""
            system = parts[base + 2].strip().upper() if len(parts) > base + 2 else ""
            if system in ("LN", "LOINC", "") and code in LOINC_VITALS:
                return LOINC_VITALS[code], f"LN:{code}"
            if system.startswith("MDC") or system in ("", "99MDC"):
                for key in (code, name):
                    if key in MDC_VITALS:
                        return MDC_VITALS[key], f"MDC:{code or name}"
        return None

    def _obx(self, f: list[str], comp: str, obr_time: datetime | None, control_id: str, out: list[Measurement]) -> None:
        found = self._lookup(_field(f, 3), comp)
        if found is None:
            self.stats.reject("unmapped_observation")  # never the code: it is device text
            return
        vital, code = found
        status = _field(f, 11).strip().upper()
        if status in REJECTED_STATUS:
            self.stats.reject(REJECTED_STATUS[status], str(vital))
            return
        value = self._number(_field(f, 2).strip().upper(), _field(f, 5), comp)
        if value is None:
            self.stats.reject("non_numeric", str(vital))
            return
        unit_parts = [p.strip() for p in _field(f, 6).split(comp)]
        extra: list[tuple[str, str | int | float | bool]] = [("hl7_control_id", control_id[:64]), ("code", code[:64])]
        converter: Converter | None = None
        if not any(unit_parts):
            converter = _same
            extra.append(("unit_assumed", True))
        else:
            for key in unit_parts[:2]:
                entry = UNITS.get(key.lower())
                if entry is not None:
                    if entry[0] != DIMENSION[vital]:
                        self.stats.reject("unit_mismatch", str(vital))
                        return
                    converter = entry[1]
                    extra.append(("device_unit", unit_parts[0]))
                    break
        if converter is None:
            self.stats.reject("unknown_unit", str(vital))
            return
        flags: set[Quality] = set()
        abnormal = _field(f, 8).strip()
        if abnormal and abnormal.upper() != "N":
            flags.add(Quality.DEVICE_ALARM)
            extra.append(("abnormal_flag", abnormal[:8]))
        if status and status not in ("F", "C", "R"):
            extra.append(("result_status", status[:4]))
            if status == "P":
                flags.add(Quality.QUESTIONABLE)
        sub_id = _field(f, 4).strip()
        if sub_id:
            extra.append(("obx_sub_id", sub_id[:16]))
        equipment = _field(f, 18).split(comp)[0].strip()
        if equipment:
            extra.append(("equipment", equipment[:64]))
        when = parse_ts(_field(f, 14).split(comp)[0], self.default_tz) or obr_time
        self.emit(out, vital, converter(value), measured_at=when, flags=flags, extra=extra)

    @staticmethod
    def _number(value_type: str, raw: str, comp: str) -> float | None:
        text = raw.strip()
        if value_type == "SN":  # structured numeric: comparator^num1[^sep^num2]
            parts = text.split(comp)
            if len(parts) < 2 or parts[0].strip() not in ("", "="):
                return None
            if len(parts) > 2 and any(p.strip() for p in parts[2:]):
                return None  # a range or ratio is not one value
            text = parts[1].strip()
        if not re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", text):
            return None
        return float(text)
