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
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from device_drivers.records import UNITS, Quality, Reading, Vital
from edge_agent.store.alert_zdict import ALERT_ZDICT_1, ALERT_ZDICT_1_ID

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

# The sealed payload is compact JSON with its most frequent pieces written as one control
# character each (issue 14: a reading row of 185 B held two to a 512 B page; the same readings
# tokenised are 100-120 B, four to a page, so a commit writes fewer WAL frames, and fewer pages
# reach the database at each checkpoint). Compact JSON never writes U+0001-U+001F raw (the
# encoder escapes them inside strings), so the substitution is exactly undone by ``str.translate``.
# A tokenised payload starts with \x01; a payload starting with "{" is an older row, plain JSON.
# File format: never change or renumber a token; new ones go at the end (at most 31).
PAYLOAD_TOKENS: tuple[str, ...] = (
    '{"v":',  # \x01, always first
    ',"s":"masimo-ascii"',
    ',"s":"nonin-format2"',
    ',"s":"hl7v2"',
    ',"s":"contec-cms50"',
    ',"s":"ble-',
    ',"p":"local:',
    ',"p":"',
    ',"f":"',
    ',"c":1',
    ',"x":[["',
    '"],["',
    '],["',
    "]]}",
    '"]]}',
    'device_time",',
    'exc",',
    'alarm",',
    'sn",',
    'perfusion",',
    'firmware_revision",',
    'spo2_display",',
    'hr_display",',
    'hl7_control_id",',
    'code","LN:',
    'device_unit",',
    'obx_sub_id",',
    'user_id",',
    'measurement_status",',
    'temperature_type",',
    'pi_source",',
)
assert len(PAYLOAD_TOKENS) <= 31 and len(set(PAYLOAD_TOKENS)) == len(PAYLOAD_TOKENS)
_TOKEN_OF = {t: chr(i + 1) for i, t in enumerate(PAYLOAD_TOKENS)}
_ENCODE_ORDER = tuple(sorted(_TOKEN_OF.items(), key=lambda kv: -len(kv[0])))  # longest first
_DETOKEN = {i + 1: t for i, t in enumerate(PAYLOAD_TOKENS)}
_T_START = _TOKEN_OF['{"v":']
_T_LOCAL = _TOKEN_OF[',"p":"local:']
_T_PATIENT = _TOKEN_OF[',"p":"']
_T_CLOCK = _TOKEN_OF[',"c":1']


# the tokens that can occur in the extras and what follows them (the rest are written directly)
_TAIL_ORDER = tuple((t, c) for t, c in _ENCODE_ORDER if not t.startswith(('{"v":', ',"s":', ',"p":', ',"f":', ',"c":')))


def tokenize(text: str, order: tuple[tuple[str, str], ...] = _ENCODE_ORDER) -> str:
    """``text`` (compact JSON) with every token written as its control character."""
    for tok, ch in order:
        if tok in text:
            text = text.replace(tok, ch)
    return text


def payload_json(plaintext: bytes) -> str:
    """The JSON text of a sealed payload, tokenised or not (older rows)."""
    text = plaintext.decode("utf-8")
    return text.translate(_DETOKEN) if text[:1] == _T_START else text


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
        text = _FORMAT_TEXT[fmt] = tokenize(',"s":' + _esc(fmt))
    return text


def _flags_text(flags: frozenset[Quality]) -> str:
    text = _FLAGS_TEXT.get(flags)
    if text is None:
        codes = [FLAG_CODES.get(f) for f in flags]
        if None in codes:
            text = ',"F":' + _dumps(sorted(str(f) for f in flags))
        else:
            text = tokenize(',"f":"' + "".join(sorted(codes)) + '"')  # type: ignore[arg-type]
        if len(_FLAGS_TEXT) >= _CACHE_MAX:
            _FLAGS_TEXT.clear()
        _FLAGS_TEXT[flags] = text
    return text


def reading_plaintext(r: Reading, gateway_id: str) -> bytes:
    """The sealed part of a reading, as tokenised compact JSON (the hot path; the inverse is in
    reading_from_row). Each piece is tokenised as it is written: cached texts once, the patient
    id by its prefix, the extras as one short text; what follows the extras has no token."""
    v = r.value
    if type(v) is not float or not _isfinite(v):
        return tokenize(_dumps(_body(r, gateway_id))).encode("utf-8")
    text = _T_START + repr(v) + _format_text(r.source_format)
    if r.unit != UNITS[r.vital]:
        text += ',"u":' + _esc(r.unit)
    if r.clock_from_device:
        text += _T_CLOCK
    pid = r.patient_id
    if pid is not None:
        quoted = _esc(pid)
        text += _T_LOCAL + quoted[7:] if quoted.startswith('"local:') else _T_PATIENT + quoted[1:]
    if r.flags:
        text += _flags_text(r.flags)
    uid = r.uid
    own_uid = uid.startswith(gateway_id) and uid[len(gateway_id) :] == f":{r.seq}"
    if r.extra:
        tail = ',"x":' + _dumps([list(kv) for kv in r.extra]) + ("}" if own_uid else ',"id":' + _esc(uid) + "}")
        return (text + tokenize(tail, _TAIL_ORDER)).encode("utf-8")
    if not own_uid:
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
    body = _loads(payload_json(plaintext))
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


# Alert payloads are compressed (issue 14): an alert is about 1.2 KB of JSON (bilingual message,
# inputs, causes), three 512 B pages with its overflow; every revision and every acknowledgement
# rewrites the whole record. zlib level 9 against the preset dictionary ALERT_ZDICT_1
# (edge_agent.store.alert_zdict) makes it 200-370 B, one page. A zlib stream starts with 0x78
# ("x"), a JSON object with "{": older rows are read as they are. A stream with a preset
# dictionary names it by Adler-32 (RFC 1950: FDICT, bit 5 of the second byte, then DICTID);
# streams without one (written before the dictionary) still inflate.
_ALERT_MAX_BYTES = 1 << 20  # an alert's JSON is a few KB; bounded even for a sealed (trusted) row
_ALERT_ZDICTS = {ALERT_ZDICT_1_ID: ALERT_ZDICT_1}  # every dictionary ever written, by id


def alert_plaintext(payload: dict[str, object]) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, ALERT_ZDICT_1)
    return deflate.compress(_dumps(payload).encode("utf-8")) + deflate.flush()


def alert_from_plaintext(plaintext: bytes) -> dict[str, object]:
    if plaintext[:1] == b"x":
        zdict = b""
        if len(plaintext) >= 6 and plaintext[1] & 0x20:
            zdict = _ALERT_ZDICTS.get(int.from_bytes(plaintext[2:6], "big"), b"")
            if not zdict:
                raise ValueError("alert payload names an unknown preset dictionary")
        inflate = zlib.decompressobj(zdict=zdict)  # b"": a stream without one (FDICT clear)
        try:
            plaintext = inflate.decompress(plaintext, _ALERT_MAX_BYTES)
        except zlib.error as exc:
            raise ValueError(f"alert payload does not inflate: {exc}") from exc
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("alert payload is not a whole zlib stream, or too large")
    out = json.loads(plaintext)
    if not isinstance(out, dict):
        raise ValueError("alert payload is not an object")
    return out
