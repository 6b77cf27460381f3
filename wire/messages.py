"""The JSON documents of the sync link (docs/protocol.md). Each carries ``"v": 1`` and ``"type"``.

* reading and alert batches: compact JSON, then zlib (level 6). These bytes are the plaintext
  that :mod:`wire.envelope` seals to the hub; they never travel bare.
* acks: compact JSON followed by a detached Ed25519 signature of the hub (64 bytes).
* heartbeats: compact JSON, neither sealed nor signed (no patient data: counts, versions, states).

Every decoder is bounded (input size, decompressed size, item counts, string lengths), checks
every field's type, and raises :class:`~wire.errors.WireError` and nothing else.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from device_drivers.records import Quality, Reading, Vital
from wire.errors import BadSignature, Malformed, UnsupportedVersion, WireError

__all__ = [
    "ACK_LANES",
    "ACK_SIGNATURE_CONTEXT",
    "ACK_STATUSES",
    "FORMAT_VERSION",
    "LANES",
    "MAX_BATCH_ITEMS",
    "MAX_COMPRESSED",
    "MAX_DECOMPRESSED",
    "OFFLINE_WILL",
    "Ack",
    "AlertBatch",
    "AlertRecord",
    "ReadingBatch",
    "decode_ack",
    "decode_alerts",
    "decode_heartbeat",
    "decode_readings",
    "encode_ack",
    "encode_alerts",
    "encode_heartbeat",
    "encode_readings",
]

FORMAT_VERSION: Final = 1
LANES = ("readings", "alerts")
# an ack also answers a command result (lane "results", batch id = cmd_id; edge_agent.remote)
ACK_LANES = (*LANES, "results")
ACK_STATUSES = ("ok", "rejected")

MAX_DECOMPRESSED: Final = 16 * 1024 * 1024  # zip-bomb guard: a batch never inflates beyond this
MAX_COMPRESSED: Final = 4 * 1024 * 1024  # what fits in an envelope
MAX_BATCH_ITEMS: Final = 10_000  # readings or alerts in one batch (the gateway sends <= batch_max, 500)
MAX_ACK: Final = 4096
MAX_HEARTBEAT: Final = 64 * 1024
MAX_STRING: Final = 256  # ids, units, flags, extra keys
MAX_TEXT: Final = 4096  # free text (an ack's reason, an extra value)
MAX_EXTRA: Final = 64  # entries in a reading's extra
ZLIB_LEVEL: Final = 6

# Ed25519 signatures by the hub key are domain-separated: the same key will sign commands and
# models (issue 12), and an ack's signature must never verify as one of those.
ACK_SIGNATURE_CONTEXT: Final = b"station-edge/v1/ack\x00"
_SIG_LEN = 64

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    batch_id: str
    gateway_id: str
    sent_at: datetime
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One version of an alert: ``payload`` is ``Alert.to_json()``, ``rev`` its revision."""

    alert_id: str
    rev: int
    payload: dict[str, object]


@dataclass(frozen=True, slots=True)
class AlertBatch:
    batch_id: str
    gateway_id: str
    sent_at: datetime
    alerts: tuple[AlertRecord, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """The hub's answer to one batch. ``status`` "ok": stored (duplicates included), the gateway
    marks the batch synced; "rejected": never stored, the gateway must not mark it synced."""

    batch_id: str
    gateway_id: str
    lane: str  # "readings" | "alerts" | "results" (a command result, batch_id = cmd_id)
    status: str  # "ok" | "rejected"
    stored: int = 0
    duplicates: int = 0
    reason: str = ""
    acked_at: datetime | None = None


# -- JSON helpers -----------------------------------------------------------------------------


def _dumps(doc: Mapping[str, object]) -> bytes:
    try:
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise Malformed("unencodable", type(exc).__name__) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(data: bytes, limit: int) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Malformed("malformed", "not bytes")
    if len(data) > limit:
        raise Malformed("too_large", f"{len(data)} > {limit} bytes")
    try:
        text = bytes(data).decode("utf-8")
        doc = json.loads(text, parse_constant=_reject_constant)
        if "\\u" in text:  # an escaped lone surrogate decodes to a str that no UTF-8 store accepts
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeError is a ValueError
        raise Malformed("bad_json") from None
    if not isinstance(doc, dict):
        raise Malformed("bad_json", "not an object")
    return doc


def _check_type(doc: Mapping[str, Any], expected: str) -> None:
    v = doc.get("v")
    if type(v) is not int:
        raise Malformed("malformed", "v missing")
    if v != FORMAT_VERSION:
        raise UnsupportedVersion("unsupported_version", f"v={v}")
    if doc.get("type") != expected:
        raise Malformed("wrong_type", f"expected type {expected}")


def _str(doc: Mapping[str, Any], key: str, *, limit: int = MAX_STRING, pattern: re.Pattern[str] | None = None) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise Malformed("malformed", f"{key}: not a string of at most {limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise Malformed("malformed", f"{key}: not an id")
    return value


def _int(doc: Mapping[str, Any], key: str, *, low: int = 0, high: int = 2**63 - 1) -> int:
    value = doc.get(key)
    if type(value) is not int or not low <= value <= high:
        raise Malformed("malformed", f"{key}: not an integer in {low}..{high}")
    return value


def _time(value: object, key: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise Malformed("malformed", f"{key}: not a time")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed("malformed", f"{key}: not ISO 8601") from None
    if t.tzinfo is None or t.utcoffset() is None:
        raise Malformed("malformed", f"{key}: no time zone")
    return t


def _iso(t: datetime, key: str) -> str:
    if t.tzinfo is None or t.utcoffset() is None:
        raise Malformed("naive_time", f"{key} must be timezone-aware")
    return t.isoformat()


def _compress(doc: Mapping[str, object]) -> bytes:
    raw = _dumps(doc)
    if len(raw) > MAX_DECOMPRESSED:
        raise Malformed("too_large", f"{len(raw)} bytes of JSON > {MAX_DECOMPRESSED}")
    packed = zlib.compress(raw, ZLIB_LEVEL)
    if len(packed) > MAX_COMPRESSED:
        raise Malformed("too_large", f"{len(packed)} compressed bytes > {MAX_COMPRESSED}")
    return packed


def _decompress(data: bytes) -> bytes:
    """zlib with a hard ceiling on the output: a few KiB that inflate to gigabytes stop here."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Malformed("malformed", "not bytes")
    if len(data) > MAX_COMPRESSED:
        raise Malformed("too_large", f"{len(data)} > {MAX_COMPRESSED} bytes")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(bytes(data), MAX_DECOMPRESSED)
    except zlib.error:
        raise Malformed("bad_zlib") from None
    if not inflater.eof:
        if inflater.unconsumed_tail or len(out) >= MAX_DECOMPRESSED:
            raise Malformed("zip_bomb", f"inflates beyond {MAX_DECOMPRESSED} bytes")
        raise Malformed("bad_zlib", "truncated stream")
    if inflater.unused_data:
        raise Malformed("bad_zlib", "trailing bytes after the stream")
    return out


def _batch_head(doc: Mapping[str, Any], kind: str) -> tuple[str, str, datetime, list[Any]]:
    _check_type(doc, kind)
    batch_id = _str(doc, "batch_id", pattern=_ID)
    gateway_id = _str(doc, "gateway_id", pattern=_ID)
    sent_at = _time(doc.get("sent_at"), "sent_at")
    items = doc.get(kind)
    if not isinstance(items, list):
        raise Malformed("malformed", f"{kind}: not a list")
    if len(items) > MAX_BATCH_ITEMS:
        raise Malformed("too_large", f"{len(items)} {kind} > {MAX_BATCH_ITEMS}")
    return batch_id, gateway_id, sent_at, items


def _check_ids(batch_id: str, gateway_id: str) -> None:
    if not _ID.fullmatch(batch_id) or not _ID.fullmatch(gateway_id):
        raise Malformed("malformed", f"batch_id and gateway_id must match {_ID.pattern}")


# -- readings ---------------------------------------------------------------------------------

_VITALS = frozenset(str(v) for v in Vital)
_QUALITIES = frozenset(str(q) for q in Quality)


def _scalar(value: object) -> bool:
    if isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _reading(item: object) -> Reading:
    """Check every field's type before ``Reading.from_json`` sees it (it trusts its input)."""
    if not isinstance(item, dict):
        raise Malformed("bad_reading", "not an object")
    _str(item, "uid", pattern=_ID)
    _int(item, "seq")
    if item.get("vital") not in _VITALS:
        raise Malformed("bad_reading", "unknown vital")
    value = item.get("value")
    if not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)):
        raise Malformed("bad_reading", "value: not a finite number")
    _str(item, "unit")
    _time(item.get("measured_at"), "measured_at")
    _time(item.get("received_at"), "received_at")
    _str(item, "device_id")
    _str(item, "source_format")
    if type(item.get("clock_from_device")) is not bool:
        raise Malformed("bad_reading", "clock_from_device: not a boolean")
    patient = item.get("patient_id")
    if patient is not None and (not isinstance(patient, str) or len(patient) > MAX_STRING):
        raise Malformed("bad_reading", "patient_id")
    flags = item.get("flags", [])
    if not isinstance(flags, list) or not all(f in _QUALITIES for f in flags):
        raise Malformed("bad_reading", "flags")
    extra = item.get("extra", [])
    if not isinstance(extra, list) or len(extra) > MAX_EXTRA:
        raise Malformed("bad_reading", "extra")
    for kv in extra:
        if not (isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) and len(kv[0]) <= MAX_STRING):
            raise Malformed("bad_reading", "extra: not [key, value] pairs")
        if not _scalar(kv[1]):
            raise Malformed("bad_reading", "extra: value not a scalar")
    try:
        return Reading.from_json(item)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise Malformed("bad_reading") from None


def encode_readings(b: ReadingBatch) -> bytes:
    """Compact JSON, then zlib level 6: the plaintext :func:`wire.envelope.seal` takes."""
    _check_ids(b.batch_id, b.gateway_id)
    if len(b.readings) > MAX_BATCH_ITEMS:
        raise Malformed("too_large", f"{len(b.readings)} readings > {MAX_BATCH_ITEMS}")
    doc = {
        "v": FORMAT_VERSION,
        "type": "readings",
        "batch_id": b.batch_id,
        "gateway_id": b.gateway_id,
        "sent_at": _iso(b.sent_at, "sent_at"),
        "readings": [r.to_json() for r in b.readings],
    }
    return _compress(doc)


def decode_readings(data: bytes) -> ReadingBatch:
    try:
        doc = _loads(_decompress(data), MAX_DECOMPRESSED)
        batch_id, gateway_id, sent_at, items = _batch_head(doc, "readings")
        readings = tuple(_reading(item) for item in items)
    except WireError:
        raise
    except Exception as exc:  # a decoder raises WireError and nothing else, whatever it is fed
        raise Malformed("malformed", type(exc).__name__) from None
    return ReadingBatch(batch_id=batch_id, gateway_id=gateway_id, sent_at=sent_at, readings=readings)


# -- alerts -----------------------------------------------------------------------------------


def encode_alerts(b: AlertBatch) -> bytes:
    _check_ids(b.batch_id, b.gateway_id)
    if len(b.alerts) > MAX_BATCH_ITEMS:
        raise Malformed("too_large", f"{len(b.alerts)} alerts > {MAX_BATCH_ITEMS}")
    for a in b.alerts:
        if not _ID.fullmatch(a.alert_id) or type(a.rev) is not int or a.rev < 0:
            raise Malformed("bad_alert", "alert_id must be an id, rev an integer >= 0")
    doc = {
        "v": FORMAT_VERSION,
        "type": "alerts",
        "batch_id": b.batch_id,
        "gateway_id": b.gateway_id,
        "sent_at": _iso(b.sent_at, "sent_at"),
        "alerts": [{"alert_id": a.alert_id, "rev": a.rev, "payload": a.payload} for a in b.alerts],
    }
    return _compress(doc)


def _alert(item: object) -> AlertRecord:
    if not isinstance(item, dict):
        raise Malformed("bad_alert", "not an object")
    alert_id = _str(item, "alert_id", pattern=_ID)
    rev = _int(item, "rev")
    payload = item.get("payload")
    if not isinstance(payload, dict):
        raise Malformed("bad_alert", "payload: not an object")
    return AlertRecord(alert_id=alert_id, rev=rev, payload=payload)


def decode_alerts(data: bytes) -> AlertBatch:
    try:
        doc = _loads(_decompress(data), MAX_DECOMPRESSED)
        batch_id, gateway_id, sent_at, items = _batch_head(doc, "alerts")
        alerts = tuple(_alert(item) for item in items)
    except WireError:
        raise
    except Exception as exc:
        raise Malformed("malformed", type(exc).__name__) from None
    return AlertBatch(batch_id=batch_id, gateway_id=gateway_id, sent_at=sent_at, alerts=alerts)


# -- acks -------------------------------------------------------------------------------------


def encode_ack(ack: Ack, signing_key: ed25519.Ed25519PrivateKey) -> bytes:
    """Compact JSON, then the hub's Ed25519 signature (64 bytes) over
    ``ACK_SIGNATURE_CONTEXT + json``."""
    _check_ids(ack.batch_id, ack.gateway_id)
    if ack.lane not in ACK_LANES or ack.status not in ACK_STATUSES:
        raise Malformed("malformed", "lane or status")
    if min(ack.stored, ack.duplicates) < 0 or len(ack.reason) > MAX_STRING:
        raise Malformed("malformed", "counts >= 0, reason at most 256 characters")
    doc = {
        "v": FORMAT_VERSION,
        "type": "ack",
        "batch_id": ack.batch_id,
        "gateway_id": ack.gateway_id,
        "lane": ack.lane,
        "status": ack.status,
        "stored": ack.stored,
        "duplicates": ack.duplicates,
        "reason": ack.reason,
        "acked_at": None if ack.acked_at is None else _iso(ack.acked_at, "acked_at"),
    }
    body = _dumps(doc)
    if len(body) + _SIG_LEN > MAX_ACK:
        raise Malformed("too_large", "ack")
    return body + signing_key.sign(ACK_SIGNATURE_CONTEXT + body)


def decode_ack(data: bytes, hub_signing_public: ed25519.Ed25519PublicKey) -> Ack:
    """Verify the hub's signature first (:class:`~wire.errors.BadSignature`), then parse."""
    try:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise Malformed("malformed", "not bytes")
        data = bytes(data)
        if len(data) > MAX_ACK:
            raise Malformed("too_large", f"{len(data)} > {MAX_ACK} bytes")
        if len(data) <= _SIG_LEN:
            raise Malformed("malformed", "shorter than a signature")
        body, signature = data[:-_SIG_LEN], data[-_SIG_LEN:]
        try:
            hub_signing_public.verify(signature, ACK_SIGNATURE_CONTEXT + body)
        except InvalidSignature:
            raise BadSignature("bad_signature", "ack not signed by the hub") from None
        doc = _loads(body, MAX_ACK)
        _check_type(doc, "ack")
        lane, status = doc.get("lane"), doc.get("status")
        if lane not in ACK_LANES or status not in ACK_STATUSES:
            raise Malformed("malformed", "lane or status")
        acked_raw = doc.get("acked_at")
        reason = doc.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_STRING:
            raise Malformed("malformed", "reason")
        return Ack(
            batch_id=_str(doc, "batch_id", pattern=_ID),
            gateway_id=_str(doc, "gateway_id", pattern=_ID),
            lane=str(lane),
            status=str(status),
            stored=_int(doc, "stored"),
            duplicates=_int(doc, "duplicates"),
            reason=reason,
            acked_at=None if acked_raw is None else _time(acked_raw, "acked_at"),
        )
    except WireError:
        raise
    except Exception as exc:
        raise Malformed("malformed", type(exc).__name__) from None


# -- heartbeats -------------------------------------------------------------------------------


def encode_heartbeat(doc: Mapping[str, object]) -> bytes:
    """``{"v": 1, "type": "status", "online": ..., ...}`` as compact JSON (not sealed: no patient
    data goes in a heartbeat). ``v`` and ``type`` are added when missing."""
    out: dict[str, object] = {"v": FORMAT_VERSION, "type": "status", **doc}
    if out["v"] != FORMAT_VERSION or out["type"] != "status":
        raise Malformed("malformed", "heartbeat v must be 1 and type status")
    if type(out.get("online")) is not bool:
        raise Malformed("malformed", "heartbeat online must be a boolean")
    data = _dumps(out)
    if len(data) > MAX_HEARTBEAT:
        raise Malformed("too_large", f"heartbeat {len(data)} > {MAX_HEARTBEAT} bytes")
    return data


def decode_heartbeat(data: bytes) -> dict[str, object]:
    try:
        doc = _loads(data, MAX_HEARTBEAT)
        _check_type(doc, "status")
        if type(doc.get("online")) is not bool:
            raise Malformed("malformed", "online: not a boolean")
        return dict(doc)
    except WireError:
        raise
    except Exception as exc:
        raise Malformed("malformed", type(exc).__name__) from None


# The gateway's last will, retained on its status topic: the broker publishes it when the
# gateway vanishes without a DISCONNECT.
OFFLINE_WILL: Final = encode_heartbeat({"online": False})
