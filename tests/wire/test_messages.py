"""wire.messages: batches, acks and heartbeats round-trip, and every decoder is bounded and
raises only WireError, whatever it is fed."""

from __future__ import annotations

import contextlib
import json
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.records import Quality, Reading, Vital
from tests.wire.keys import KEYS, NOW
from wire.errors import BadSignature, Malformed, UnsupportedVersion, WireError
from wire.messages import (
    MAX_BATCH_ITEMS,
    MAX_COMPRESSED,
    MAX_DECOMPRESSED,
    OFFLINE_WILL,
    Ack,
    AlertBatch,
    AlertRecord,
    ReadingBatch,
    decode_ack,
    decode_alerts,
    decode_heartbeat,
    decode_readings,
    encode_ack,
    encode_alerts,
    encode_heartbeat,
    encode_readings,
)

HUB = KEYS.hub
ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,40}\Z")
zones = st.sampled_from([UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-3, minutes=-30))])
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones)
short = st.text(max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.booleans(), st.integers(-(2**53), 2**53), finite, short)


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    seq = draw(st.integers(0, 2**40))
    return Reading(
        uid=f"gw-0001:{seq}",
        seq=seq,
        vital=draw(st.sampled_from(list(Vital))),
        value=draw(finite),
        unit=draw(short),
        measured_at=draw(times),
        received_at=draw(times),
        device_id=draw(short),
        source_format=draw(short),
        clock_from_device=draw(st.booleans()),
        patient_id=draw(st.none() | short),
        flags=draw(st.frozensets(st.sampled_from(list(Quality)))),
        extra=tuple(draw(st.lists(st.tuples(short, scalars), max_size=5))),
    )


reading_batches = st.builds(
    ReadingBatch,
    batch_id=ids,
    gateway_id=ids,
    sent_at=times,
    readings=st.lists(readings(), max_size=20).map(tuple),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | short,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(short, kids, max_size=4),
    max_leaves=20,
)
alert_batches = st.builds(
    AlertBatch,
    batch_id=ids,
    gateway_id=ids,
    sent_at=times,
    alerts=st.lists(
        st.builds(AlertRecord, alert_id=ids, rev=st.integers(0, 2**31), payload=st.dictionaries(short, json_values)),
        max_size=10,
    ).map(tuple),
)
acks = st.builds(
    Ack,
    batch_id=ids,
    gateway_id=ids,
    lane=st.sampled_from(["readings", "alerts"]),
    status=st.sampled_from(["ok", "rejected"]),
    stored=st.integers(0, 10**6),
    duplicates=st.integers(0, 10**6),
    reason=st.text(max_size=60),
    acked_at=st.none() | times,
)


def reading(seq: int = 1) -> Reading:
    return Reading(
        uid=f"gw-0001:{seq}",
        seq=seq,
        vital=Vital.SPO2,
        value=97.0,
        unit="%",
        measured_at=NOW,
        received_at=NOW,
        device_id="oximeter-1",
        source_format="masimo-ascii",
        clock_from_device=False,
        flags=frozenset({Quality.CLOCK_UNSYNCED}),
        extra=(("pi", 2.5),),
    )


def batch_doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "v": 1,
        "type": "readings",
        "batch_id": "b-1",
        "gateway_id": "gw-0001",
        "sent_at": NOW.isoformat(),
        "readings": [reading().to_json()],
    }
    doc.update(changes)
    return doc


def packed(doc: object) -> bytes:
    return zlib.compress(json.dumps(doc).encode())


# -- round trips ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(reading_batches)
def test_reading_batches_round_trip(batch: ReadingBatch) -> None:
    assert decode_readings(encode_readings(batch)) == batch


@settings(max_examples=100, deadline=None)
@given(alert_batches)
def test_alert_batches_round_trip(batch: AlertBatch) -> None:
    assert decode_alerts(encode_alerts(batch)) == batch


@settings(max_examples=150, deadline=None)
@given(acks)
def test_acks_round_trip_signed_by_the_hub(ack: Ack) -> None:
    data = encode_ack(ack, HUB.signing)
    assert decode_ack(data, HUB.signing.public_key()) == ack
    with pytest.raises(BadSignature):
        decode_ack(data, KEYS.other_hub.signing.public_key())


def test_encoded_batch_is_compact_json_in_zlib() -> None:
    data = encode_readings(ReadingBatch("b-1", "gw-0001", NOW, (reading(),)))
    text = zlib.decompress(data).decode()
    assert text.startswith('{"v":1,"type":"readings",') and ", " not in text and ": " not in text


def test_heartbeat_round_trip_and_last_will() -> None:
    doc = {"online": True, "pending": 12, "agent": "0.1.0", "disk": "ok"}
    assert decode_heartbeat(encode_heartbeat(doc)) == {"v": 1, "type": "status", **doc}
    assert json.loads(OFFLINE_WILL) == {"v": 1, "type": "status", "online": False}
    with pytest.raises(Malformed):
        encode_heartbeat({"pending": 1})  # online is required
    with pytest.raises(Malformed):
        decode_heartbeat(b'{"v":1,"type":"status","online":"yes"}')


# -- malformed, oversize, zip bombs, versions -------------------------------------------------


def test_zip_bomb_is_refused_without_inflating_it() -> None:
    bomb = zlib.compress(b" " * (MAX_DECOMPRESSED + 1), 9)
    assert len(bomb) < 64 * 1024
    for decode in (decode_readings, decode_alerts):
        with pytest.raises(Malformed) as err:
            decode(bomb)
        assert err.value.reason == "zip_bomb"


def test_exactly_the_limit_inflates() -> None:
    doc = json.dumps(batch_doc(readings=[])).encode()
    padded = doc[:-1] + b" " * (MAX_DECOMPRESSED - len(doc)) + b"}"
    assert len(padded) == MAX_DECOMPRESSED
    assert decode_readings(zlib.compress(padded)).readings == ()


def test_oversize_input_is_refused_before_inflating() -> None:
    with pytest.raises(Malformed) as err:
        decode_readings(b"\0" * (MAX_COMPRESSED + 1))
    assert err.value.reason == "too_large"


def test_too_many_items() -> None:
    with pytest.raises(Malformed) as err:
        decode_readings(packed(batch_doc(readings=[reading().to_json()] * (MAX_BATCH_ITEMS + 1))))
    assert err.value.reason == "too_large"


@pytest.mark.parametrize("v", [0, 2, 99])
def test_unknown_versions(v: int) -> None:
    with pytest.raises(UnsupportedVersion):
        decode_readings(packed(batch_doc(v=v)))
    with pytest.raises(UnsupportedVersion):
        decode_heartbeat(json.dumps({"v": v, "type": "status", "online": True}).encode())
    body = json.dumps({"v": v, "type": "ack"}).encode()
    with pytest.raises(UnsupportedVersion):
        decode_ack(body + HUB.signing.sign(b"station-edge/v1/ack\x00" + body), HUB.signing.public_key())


@pytest.mark.parametrize(
    "change",
    [
        {"type": "alerts"},
        {"batch_id": ""},
        {"batch_id": "has space"},
        {"gateway_id": 7},
        {"sent_at": "2026-03-01T08:30:00"},  # no time zone
        {"sent_at": "yesterday"},
        {"readings": {}},
        {"readings": ["x"]},
        {"readings": [{**reading().to_json(), "vital": "mood"}]},
        {"readings": [{**reading().to_json(), "value": "97"}]},
        {"readings": [{**reading().to_json(), "value": True}]},
        {"readings": [{**reading().to_json(), "seq": -1}]},
        {"readings": [{**reading().to_json(), "flags": ["bogus"]}]},
        {"readings": [{**reading().to_json(), "extra": ["ab"]}]},  # would unpack to ("a", "b")
        {"readings": [{**reading().to_json(), "extra": [["k", {"nested": 1}]]}]},
        {"readings": [{**reading().to_json(), "clock_from_device": 1}]},
        {"readings": [{**reading().to_json(), "measured_at": "2026-03-01T08:30:00"}]},
        {"readings": [{k: v for k, v in reading().to_json().items() if k != "uid"}]},
    ],
)
def test_malformed_reading_batches(change: dict[str, object]) -> None:
    with pytest.raises(Malformed):
        decode_readings(packed(batch_doc(**change)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not zlib",
        zlib.compress(b"[1,2]"),
        zlib.compress(b"{bad json"),
        zlib.compress(b'{"v":NaN}'),
        zlib.compress(b"[" * 100_000 + b"]" * 100_000),
        zlib.compress(b"{}")[:-3],  # truncated
        zlib.compress(b"{}") + b"trailing",
        zlib.compress('{"v":1,"x":"\udcff"}'.encode("utf-8", "surrogatepass")),
    ],
)
def test_garbage_is_malformed(data: bytes) -> None:
    for decode in (decode_readings, decode_alerts):
        with pytest.raises(Malformed):
            decode(data)


def test_ack_tampering_and_forgery() -> None:
    data = encode_ack(Ack("b-1", "gw-0001", "readings", "ok", stored=3, acked_at=NOW), HUB.signing)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(BadSignature):
            decode_ack(bytes(bad), HUB.signing.public_key())
    forged = encode_ack(Ack("b-1", "gw-0001", "readings", "ok"), KEYS.other_hub.signing)
    with pytest.raises(BadSignature):
        decode_ack(forged, HUB.signing.public_key())
    with pytest.raises(Malformed):
        decode_ack(data[:10], HUB.signing.public_key())
    with pytest.raises(Malformed):
        decode_ack(b"x" * 5000, HUB.signing.public_key())


def test_ack_signature_is_domain_separated() -> None:
    """A hub signature over the same JSON without the ack context (say, a future command) is not an ack."""
    body = json.dumps({"v": 1, "type": "ack"}).encode()
    with pytest.raises(BadSignature):
        decode_ack(body + HUB.signing.sign(body), HUB.signing.public_key())


def test_encoders_refuse_what_decoders_would() -> None:
    with pytest.raises(Malformed):
        encode_readings(ReadingBatch("b 1", "gw-0001", NOW, ()))
    with pytest.raises(Malformed):
        encode_readings(ReadingBatch("b-1", "gw-0001", NOW.replace(tzinfo=None), ()))
    with pytest.raises(Malformed):
        encode_ack(Ack("b-1", "gw-0001", "bogus", "ok"), HUB.signing)
    with pytest.raises(Malformed):
        encode_alerts(AlertBatch("b-1", "gw-0001", NOW, (AlertRecord("a-1", 1, {"x": float("nan")}),)))


# -- decoders never raise anything but WireError ----------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_decoders_raise_only_wire_error_on_bytes(data: bytes) -> None:
    for decode in (decode_readings, decode_alerts, decode_heartbeat):
        with contextlib.suppress(WireError):
            decode(data)
    with contextlib.suppress(WireError):
        decode_ack(data, HUB.signing.public_key())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*list(batch_doc()), "alerts", "x"]), json_values, max_size=8), st.booleans())
def test_decoders_raise_only_wire_error_on_json(doc: dict[str, object], merge: bool) -> None:
    if merge:
        doc = {**batch_doc(), **doc}
    data = packed(doc)
    for decode in (decode_readings, decode_alerts):
        with contextlib.suppress(WireError):
            decode(data)
    body = json.dumps({"v": 1, "type": "ack", **doc}).encode()
    with contextlib.suppress(WireError):
        decode_ack(body + HUB.signing.sign(b"station-edge/v1/ack\x00" + body), HUB.signing.public_key())
    with contextlib.suppress(WireError):
        decode_heartbeat(json.dumps({"v": 1, "type": "status", **doc}).encode())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(list(reading().to_json())), json_values), max_size=3))
def test_reading_fields_of_any_type_raise_only_wire_error(items: list[dict[str, object]]) -> None:
    docs = [{**reading().to_json(), **item} for item in items]
    with contextlib.suppress(WireError):
        decode_readings(packed(batch_doc(readings=docs)))


def test_escaped_lone_surrogates_are_malformed() -> None:
    raw = json.dumps(batch_doc(readings=[{**reading().to_json(), "device_id": "\ud800"}])).encode()
    assert b"\\ud800" in raw
    with pytest.raises(Malformed):
        decode_readings(zlib.compress(raw))
    pair = json.dumps(batch_doc(readings=[{**reading().to_json(), "device_id": "\U0001f600"}])).encode()
    assert decode_readings(zlib.compress(pair)).readings[0].device_id == "\U0001f600"
