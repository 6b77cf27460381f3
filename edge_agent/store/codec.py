"""Records <-> rows, pure logic: which fields stay in clear, which go into the sealed payload.

A reading row keeps in clear only what queries and the buffer's own policies need: ``seq`` (the
row id), ``measured_us``/``received_us`` (microseconds since the epoch, UTC), ``vital`` (a
small integer code), ``device_id``, ``pidx`` (a keyed hash of the patient id, or NULL), the sync
state and the key id/cipher. Everything else (value, unit, patient id, source format, flags,
extra) is in the sealed payload. See docs/storage.md for the reasons.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from device_drivers.records import UNITS, Quality, Reading, Vital

# On-disk codes for vitals: part of the file format, never renumber.
VITAL_CODES: dict[Vital, int] = {
    Vital.HEART_RATE: 1,
    Vital.SPO2: 2,
    Vital.RESP_RATE: 3,
    Vital.BODY_TEMP: 4,
    Vital.GLUCOSE: 5,
    Vital.BP_SYSTOLIC: 6,
    Vital.BP_DIASTOLIC: 7,
    Vital.BP_MEAN: 8,
    Vital.BODY_WEIGHT: 9,
    Vital.PERFUSION_INDEX: 10,
}
VITALS_BY_CODE: dict[int, Vital] = {c: v for v, c in VITAL_CODES.items()}

# One-letter codes for quality flags inside the payload (file format; a flag without a code is
# written by name under "F").
FLAG_CODES: dict[Quality, str] = {
    Quality.DEVICE_ARTEFACT: "a",
    Quality.LOW_PERFUSION: "l",
    Quality.PROBE_OFF: "p",
    Quality.SENSOR_FAULT: "s",
    Quality.DEVICE_ALARM: "d",
    Quality.CLOCK_UNSYNCED: "c",
    Quality.FROM_STORAGE: "r",
    Quality.IRREGULAR_PULSE: "i",
    Quality.QUESTIONABLE: "q",
}
FLAGS_BY_CODE: dict[str, Quality] = {c: q for q, c in FLAG_CODES.items()}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_US = timedelta(microseconds=1)


def to_us(t: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class ReadingClear:
    """The clear columns of one reading row (all of them go into the additional data)."""

    seq: int
    measured_us: int
    received_us: int
    vital: int
    device_id: str

    def aad_fields(self, pidx: bytes | None, key_id: int, cipher: int) -> tuple[object, ...]:
        return (self.vital, self.measured_us, self.received_us, self.device_id, pidx, key_id, cipher)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode
_esc = json.encoder.encode_basestring  # C-accelerated JSON string literal
_isfinite = math.isfinite


# Hot-path caches (issue 14: sealing was most of the store's per-reading cost): the JSON text of
# a source format, and of a set of quality flags. Both come from small closed sets; bounded anyway.
_FORMAT_TEXT: dict[str, str] = {}
_FLAGS_TEXT: dict[frozenset[Quality], str] = {}
_CACHE_MAX = 256


def _format_text(fmt: str) -> str:
    text = _FORMAT_TEXT.get(fmt)
    if text is None:
        if len(_FORMAT_TEXT) >= _CACHE_MAX:
            _FORMAT_TEXT.clear()
        text = _FORMAT_TEXT[fmt] = ',"s":' + _esc(fmt)
    return text


def _flags_text(flags: frozenset[Quality]) -> str:
    text = _FLAGS_TEXT.get(flags)
    if text is None:
        codes = [FLAG_CODES.get(f) for f in flags]
        if None in codes:
            text = ',"F":' + _dumps(sorted(str(f) for f in flags))
        else:
            text = ',"f":"' + "".join(sorted(codes)) + '"'  # type: ignore[arg-type]
        if len(_FLAGS_TEXT) >= _CACHE_MAX:
            _FLAGS_TEXT.clear()
        _FLAGS_TEXT[flags] = text
    return text


def reading_plaintext(r: Reading, gateway_id: str) -> bytes:
    """The sealed part of a reading, as compact JSON (the hot path; the inverse is in reading_from_row)."""
    v = r.value
    if type(v) is not float or not _isfinite(v):
        return _dumps(_body(r, gateway_id)).encode("utf-8")
    text = '{"v":' + repr(v) + _format_text(r.source_format)
    if r.unit != UNITS[r.vital]:
        text += ',"u":' + _esc(r.unit)
    if r.clock_from_device:
        text += ',"c":1'
    if r.patient_id is not None:
        text += ',"p":' + _esc(r.patient_id)
    if r.flags:
        text += _flags_text(r.flags)
    if r.extra:
        text += ',"x":' + _dumps([list(kv) for kv in r.extra])
    uid = r.uid
    if not (uid.startswith(gateway_id) and uid[len(gateway_id) :] == f":{r.seq}"):
        text += ',"id":' + _esc(uid)
    return (text + "}").encode("utf-8")


def _body(r: Reading, gateway_id: str) -> dict[str, object]:
    body: dict[str, object] = {"v": r.value, "s": r.source_format}
    if r.unit != UNITS[r.vital]:
        body["u"] = r.unit
    if r.clock_from_device:
        body["c"] = 1
    if r.patient_id is not None:
        body["p"] = r.patient_id
    if r.flags:
        body["F"] = sorted(str(f) for f in r.flags)
    if r.extra:
        body["x"] = [list(kv) for kv in r.extra]
    if r.uid != f"{gateway_id}:{r.seq}":
        body["id"] = r.uid  # normally derivable from gateway id + seq; kept only when it is not
    return body


def reading_to_parts(r: Reading, gateway_id: str) -> tuple[ReadingClear, bytes]:
    """Split a reading into its clear columns and the plaintext of its sealed payload."""
    clear = ReadingClear(r.seq, to_us(r.measured_at), to_us(r.received_at), VITAL_CODES[r.vital], r.device_id)
    return clear, reading_plaintext(r, gateway_id)


_loads = json.JSONDecoder().decode
_NO_FLAGS: frozenset[Quality] = frozenset()


def reading_from_row(
    seq: int, measured_us: int, received_us: int, vital: int, device_id: str, plaintext: bytes, gateway_id: str
) -> Reading:
    body = _loads(plaintext.decode("utf-8"))
    flags = body.get("f")
    if flags:
        qflags = frozenset([FLAGS_BY_CODE[f] for f in flags])
    elif "F" in body:
        qflags = frozenset([Quality(f) for f in body["F"]])
    else:
        qflags = _NO_FLAGS
    extra = body.get("x")
    v = VITALS_BY_CODE[vital]
    return Reading(
        uid=body.get("id") or f"{gateway_id}:{seq}",
        seq=seq,
        vital=v,
        value=float(body["v"]),
        unit=body["u"] if "u" in body else UNITS[v],
        measured_at=_EPOCH + timedelta(microseconds=measured_us),
        received_at=_EPOCH + timedelta(microseconds=received_us),
        device_id=device_id,
        source_format=body["s"],
        clock_from_device="c" in body,
        patient_id=body.get("p"),
        flags=qflags,
        extra=tuple((str(k), v) for k, v in extra) if extra else (),
    )


def reading_from_parts(clear: ReadingClear, plaintext: bytes, gateway_id: str) -> Reading:
    return reading_from_row(
        clear.seq, clear.measured_us, clear.received_us, clear.vital, clear.device_id, plaintext, gateway_id
    )


def alert_plaintext(payload: dict[str, object]) -> bytes:
    return _dumps(payload).encode("utf-8")


def alert_from_plaintext(plaintext: bytes) -> dict[str, object]:
    out = json.loads(plaintext)
    if not isinstance(out, dict):
        raise ValueError("alert payload is not an object")
    return out
