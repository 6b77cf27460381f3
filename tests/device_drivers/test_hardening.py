"""Hardening of the pure parsers: Date Time outside the calendar, linear resynchronisation
(a deterministic work budget, not a stopwatch), BLE value length and extras ranges, Contec
lock-on, and no device-supplied text or value in ``stats.last_error``."""

from __future__ import annotations

import itertools
import random
import re
from datetime import UTC, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers import encoders as enc
from device_drivers.base import DETAIL_NAMES, EXTRA_RANGES, Parser
from device_drivers.contec_cms50 import LOCK_FRAMES, ContecCms50Parser
from device_drivers.encoders import NoninStatus, Obx
from device_drivers.gatt import MAX_VALUE_LEN, GattParser
from device_drivers.ieee11073 import decode_date_time
from device_drivers.masimo_ascii import MasimoAsciiParser, encode_line
from device_drivers.records import Measurement, Quality, Vital
from device_drivers.registry import FORMATS, create_parser
from device_drivers.simulators import frame_source, patient_timeline

HO_CHI_MINH = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7 (and +7:06:30 local mean time in year 1)
NEW_YORK = ZoneInfo("America/New_York")  # behind UTC
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- 1. Date Time that leaves the calendar after the zone shift ---------------------------------


def raw_date(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> bytes:
    return year.to_bytes(2, "little") + bytes([month, day, hour, minute, second])


def with_timestamp(fmt: str, ts: bytes) -> bytes:
    """One value of ``fmt`` carrying the raw 7-byte Date Time ``ts`` (layouts: protocols.md §1)."""
    if fmt == "ble-blood-pressure":
        return b"\x02" + enc.sfloat(120) + enc.sfloat(80) + enc.sfloat(93) + ts
    if fmt == "ble-temperature":
        return b"\x02" + enc.float32(37.2) + ts
    if fmt == "ble-plx-spot":
        return b"\x01" + enc.sfloat(97) + enc.sfloat(72) + ts
    if fmt == "ble-weight":
        return b"\x02" + (14000).to_bytes(2, "little") + ts
    assert fmt == "ble-glucose"
    return b"\x02" + (7).to_bytes(2, "little") + ts + enc.glucose_mg_dl(90) + b"\x11"


TIMESTAMPED = ["ble-blood-pressure", "ble-temperature", "ble-plx-spot", "ble-weight", "ble-glucose"]


def ble_parser(fmt: str, tz: tzinfo) -> Parser:
    parser = create_parser(fmt)
    assert isinstance(parser, GattParser)
    parser.device_tz = tz  # as BleDeviceLink.create_parser does
    return parser


@pytest.mark.parametrize("fmt", TIMESTAMPED)
@pytest.mark.parametrize(
    ("ts", "tz"),
    [
        (raw_date(1, 1, 1), HO_CHI_MINH),  # year 0 in UTC
        (raw_date(9999, 12, 31, 23, 59, 59), NEW_YORK),  # year 10000 in UTC
        (raw_date(9999, 12, 31, 22), timezone(timedelta(hours=-14))),
        (raw_date(1, 1, 1, 5), timezone(timedelta(hours=14))),
    ],
    ids=["0001-01-01-Ho_Chi_Minh", "9999-12-31-New_York", "9999-12-31-UTC-14", "0001-01-01-UTC+14"],
)
def test_date_time_leaving_the_calendar_is_a_counted_clock_fault(fmt: str, ts: bytes, tz: tzinfo) -> None:
    parser = ble_parser(fmt, tz)
    out = parser.feed(with_timestamp(fmt, ts))  # raised OverflowError before
    assert out, "the measured value is kept"
    assert all(m.measured_at is None for m in out)  # the session stamps receive time + clock_unsynced
    assert parser.stats.rejected["bad_timestamp"] == 1 and parser.stats.last_error == "bad_timestamp"


def test_decode_date_time_never_raises_at_the_calendar_edges() -> None:
    assert decode_date_time(raw_date(1, 1, 1), HO_CHI_MINH).valid is False
    assert decode_date_time(raw_date(9999, 12, 31, 23, 59, 59), NEW_YORK).valid is False
    ok = decode_date_time(raw_date(9999, 12, 31, 23, 59, 59), HO_CHI_MINH)
    assert ok.valid and ok.value is not None and ok.value.tzinfo is UTC


ZONES = st.sampled_from(
    [UTC, HO_CHI_MINH, NEW_YORK, ZoneInfo("Pacific/Kiritimati"), timezone(timedelta(hours=-12))]
    + [timezone(timedelta(minutes=m)) for m in (-14 * 60, -1, 1, 14 * 60 - 1)]
)


def _date(
    year: st.SearchStrategy[int], month: st.SearchStrategy[int], day: st.SearchStrategy[int]
) -> st.SearchStrategy[bytes]:
    clock = (st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
    return st.tuples(year, month, day, *clock).map(lambda d: raw_date(*d))


# Dates at the calendar's two edges (where the zone shift leaves it), any calendar date, and any
# 7 bytes at all.
DATE_TIMES = st.one_of(
    _date(st.just(1), st.just(1), st.integers(1, 2)),
    _date(st.just(9999), st.just(12), st.integers(30, 31)),
    _date(st.integers(0, 65535), st.integers(0, 13), st.integers(0, 32)),
    st.binary(min_size=7, max_size=7),
)


@FAST
@given(fmt=st.sampled_from(TIMESTAMPED), ts=DATE_TIMES, tz=ZONES)
def test_any_date_time_in_any_zone_never_raises(fmt: str, ts: bytes, tz: tzinfo) -> None:
    field = decode_date_time(ts, tz)
    assert field.value is None or field.value.tzinfo is UTC
    parser = ble_parser(fmt, tz)
    for m in parser.feed(with_timestamp(fmt, ts)):
        assert m.measured_at is None or m.measured_at.tzinfo is not None


@FAST
@given(flags=st.integers(0, 255), rest=st.binary(max_size=40), tz=ZONES, fmt=st.sampled_from(TIMESTAMPED))
def test_random_values_in_any_zone_never_raise(flags: int, rest: bytes, tz: tzinfo, fmt: str) -> None:
    ble_parser(fmt, tz).feed(bytes([flags]) + rest)


# --- 3. linear resynchronisation: a deterministic work budget ----------------------------------


class WorkBudgetExceeded(AssertionError):
    pass


def counting_buffer(budget: int) -> type[bytearray]:
    """A bytearray that counts the bytes its ``find`` calls scan and its reads touch, and fails
    as soon as the count passes ``budget`` (so a quadratic parser fails fast, not slowly)."""

    class Counting(bytearray):
        work = 0

        def _spend(self, n: int) -> None:
            Counting.work += n
            if Counting.work > budget:
                raise WorkBudgetExceeded(f"more than {budget} bytes of work")

        def find(self, sub: Any, start: Any = None, end: Any = None) -> int:
            size = len(self)
            s = 0 if start is None else min(int(start), size)
            e = size if end is None else min(int(end), size)
            found = bytearray.find(self, sub, s, e)
            self._spend(max(1, (found + 1 if found >= 0 else e) - s))
            return found

        def __getitem__(self, key: Any) -> Any:
            if isinstance(key, slice):
                self._spend(max(1, len(range(*key.indices(len(self))))))
            else:
                self._spend(1)
            return bytearray.__getitem__(self, key)

    return Counting


def work_for(fmt: str, data: bytes, chunk: int, per_byte: int) -> int:
    buffer = counting_buffer(per_byte * len(data) + 4096)
    cls = type(f"Counting{type(create_parser(fmt)).__name__}", (type(create_parser(fmt)),), {"buffer_type": buffer})
    parser = cls()
    for i in range(0, len(data), chunk):
        parser.feed(data[i : i + chunk])
    work: int = buffer.work  # type: ignore[attr-defined]
    assert work > 0, "the parser keeps its input in buffer_type()"
    return work


_rng = random.Random(2024)
WORST_CASES: list[tuple[str, str, bytes]] = [
    # hl7v2: a run of MLLP start bytes cost a 64 KiB scan per byte (400 kB took 27 s).
    ("hl7v2", "start-byte run", b"\x0b" * 400_000),
    ("hl7v2", "start + overlong frames", (b"\x0b" + b"A" * 70_000) * 12),
    ("hl7v2", "start/end-block alternation", b"\x0b\x1c" * 300_000),
    ("hl7v2", "random", _rng.randbytes(500_000)),
    ("masimo-ascii", "no line end", b"A" * 1_000_000),
    ("masimo-ascii", "LF-only near-lines", (b"01/01/25 00:00:00 A=1 " * 23 + b"\n") * 1000),
    ("masimo-ascii", "date prefixes", b"01/01/25 " * 100_000),
    ("masimo-ascii", "random", _rng.randbytes(500_000)),
    ("nonin-format2", "start bytes", b"\x01" * 200_000),
    ("nonin-format2", "start + status, bad sums", b"\x01\x81" * 100_000),
    ("contec-cms50", "sync bytes", b"\x80" * 200_000),
    ("contec-cms50", "near lock-on", (b"\x80\x01\x01\x01\x01" * (LOCK_FRAMES - 1) + b"\x80\x80") * 8_000),
    ("contec-cms50", "random", _rng.randbytes(200_000)),
]


@pytest.mark.parametrize(("fmt", "name", "data"), WORST_CASES, ids=[f"{f}-{n}" for f, n, _ in WORST_CASES])
def test_resync_work_is_linear_in_one_feed_and_in_chunks(fmt: str, name: str, data: bytes) -> None:
    for chunk in (len(data), 4096):
        assert work_for(fmt, data, chunk, per_byte=8) <= 8 * len(data) + 4096


@pytest.mark.parametrize("fmt", ["hl7v2", "masimo-ascii", "nonin-format2", "contec-cms50"])
def test_resync_work_is_linear_byte_by_byte(fmt: str) -> None:
    data = {"hl7v2": b"\x0b" * 30_000, "masimo-ascii": b"A" * 30_000}.get(fmt, _rng.randbytes(30_000))
    # Byte by byte a stream parser re-examines its few undecided bytes once per feed (Contec:
    # up to LOCK_FRAMES packets), so the budget is per byte fed, still linear.
    assert work_for(fmt, data, 1, per_byte=32) <= 32 * len(data) + 4096


# --- 4. BLE value length cap, extras range checks ----------------------------------------------


def test_heart_rate_value_longer_than_an_att_value_is_rejected() -> None:
    parser = create_parser("ble-heart-rate")
    too_long = enc.heart_rate(72, rr_1024=[800] * 400)  # 803 bytes: no notification is that long
    assert len(too_long) > MAX_VALUE_LEN
    assert parser.feed(too_long) == []
    assert parser.stats.rejected["value_too_long"] == 1
    longest = enc.heart_rate(72, rr_1024=[800] * ((MAX_VALUE_LEN - 2) // 2))
    (m,) = parser.feed(longest)
    assert len(str(dict(m.extra)["rr_ms"]).split(",")) == (MAX_VALUE_LEN - 2) // 2


@pytest.mark.parametrize("fmt", [n for n, f in FORMATS.items() if f.kind == "ble"])
def test_every_ble_format_caps_the_value_length(fmt: str) -> None:
    parser = create_parser(fmt)
    assert parser.feed(b"\x00" * (MAX_VALUE_LEN + 1)) == []
    assert parser.stats.rejected["value_too_long"] == 1


def test_heart_rate_rr_intervals_outside_the_physiological_range_are_dropped() -> None:
    parser = create_parser("ble-heart-rate")
    (m,) = parser.feed(enc.heart_rate(72, rr_1024=[820, 10, 65000, 1024]))
    assert dict(m.extra)["rr_ms"] == "800.8,1000.0"
    assert parser.stats.rejected["extra_out_of_range"] == 1
    assert parser.stats.last_error == "extra_out_of_range: rr_ms"


@pytest.mark.parametrize(
    ("bmi", "height", "kept"),
    [(0, 0, set()), (243, 1680, {"bmi", "height_m"}), (9000, 1680, {"height_m"}), (243, 40000, {"bmi"})],
)
def test_weight_bmi_and_height_are_range_checked(bmi: int, height: int, kept: set[str]) -> None:
    parser = create_parser("ble-weight")
    (m,) = parser.feed(enc.weight(13690, bmi_height=(bmi, height)))
    assert m.value == pytest.approx(68.45)
    assert {k for k, _ in m.extra} & {"bmi", "height_m"} == kept
    assert parser.stats.rejected["extra_out_of_range"] == 2 - len(kept)


def test_plx_continuous_fast_and_slow_sets_are_range_checked() -> None:
    parser = create_parser("ble-plx-continuous")
    out = parser.feed(enc.plx_continuous(96, 78, fast=(200, 78), slow=(95, 1000)))
    assert {m.vital for m in out} == {Vital.SPO2, Vital.HEART_RATE}
    for m in out:
        assert dict(m.extra) == {"pr_fast": 78, "spo2_slow": 95}
    assert parser.stats.rejected["extra_out_of_range"] == 2  # once per field, not per vital


def test_nonin_display_values_are_range_checked() -> None:
    packet = bytearray(enc.nonin_packet(72, 97))
    frame = 8 * 5  # frame 8 carries SpO2-D (display): make it 10 %, not a saturation
    packet[frame + 3] = 10
    packet[frame + 4] = sum(packet[frame : frame + 4]) & 0xFF
    parser = create_parser("nonin-format2")
    out = parser.feed(bytes(packet) * 3)
    assert out and all("spo2_display" not in dict(m.extra) for m in out)
    assert parser.stats.rejected["extra_out_of_range"] >= 1


def test_masimo_rainbow_extras_are_range_checked() -> None:
    line = encode_line().replace(b"SPCO=--.-%", b"SPCO=150.0%").replace(b"SPMET=--.-%", b"SPMET=01.2%")
    parser = MasimoAsciiParser()
    out = parser.feed(line)
    assert out and all("spco" not in dict(m.extra) and dict(m.extra)["spmet"] == 1.2 for m in out)
    assert parser.stats.rejected["extra_out_of_range"] == 1


def _check_extras(out: list[Measurement]) -> None:
    for m in out:
        for key, value in m.extra:
            if key in EXTRA_RANGES and not isinstance(value, bool) and isinstance(value, int | float):
                low, high = EXTRA_RANGES[key]
                assert low <= value <= high, (key, value)


@pytest.mark.parametrize("fmt", [n for n, f in FORMATS.items() if f.kind == "ble"])
@FAST
@given(flags=st.integers(0, 255), rest=st.binary(max_size=60))
def test_no_extra_leaves_its_range(fmt: str, flags: int, rest: bytes) -> None:
    _check_extras(create_parser(fmt).feed(bytes([flags]) + rest))


# --- 5. Contec lock-on --------------------------------------------------------------------------


def test_contec_random_megabyte_gives_no_readings() -> None:
    data = random.Random(20240601).randbytes(1 << 20)
    parser = ContecCms50Parser()
    out = parser.feed(data)
    assert len(out) <= 1  # 1,073 before the lock-on (no checksum: 1 window in 32 looks valid)
    assert parser.stats.bytes_discarded > len(data) * 0.9


def contec_stream(scenario: str, seconds: int) -> bytes:
    """What the Contec simulator sends for ``seconds`` of ``scenario`` (as its pty thread does)."""
    rng = random.Random(5)
    source = frame_source("contec-cms50")
    chunks: list[bytes] = []
    for state in itertools.islice(patient_timeline(scenario, seed=5), seconds):
        if state.garbage:
            chunks.append(rng.randbytes(40))
        chunks.extend(chunk for _, chunk in source(state, rng))
    return b"".join(chunks)


@pytest.mark.parametrize("scenario", ["normal", "tachycardia", "garbage_burst", "probe_off"])
def test_contec_simulator_stream_decodes_identically_in_any_chunking(scenario: str) -> None:
    stream = contec_stream(scenario, 30)
    whole = ContecCms50Parser()
    expected = whole.feed(stream)
    assert len([m for m in expected if m.vital is Vital.HEART_RATE]) >= 18
    bytewise = ContecCms50Parser()
    got = [m for i in range(len(stream)) for m in bytewise.feed(stream[i : i + 1])]
    assert got == expected and bytewise.stats.as_dict() == whole.stats.as_dict()
    rng = random.Random(9)
    chunked, pos, pieces = ContecCms50Parser(), 0, []
    while pos < len(stream):
        step = rng.randint(1, 700)
        pieces += chunked.feed(stream[pos : pos + step])
        pos += step
    assert pieces == expected


def test_contec_clean_stream_loses_nothing_to_the_lock_on() -> None:
    stream = b"".join(enc.contec_packet(60 + i // 60, 97) for i in range(180))
    parser = ContecCms50Parser()
    out = parser.feed(b"\x05\x06" + stream)  # misaligned start: searching, then lock-on
    assert [m.value for m in out if m.vital is Vital.HEART_RATE] == [60, 61, 62]
    assert parser.stats.frames_ok == 180


def test_contec_malformed_packet_drops_back_to_searching() -> None:
    parser = ContecCms50Parser()
    good = enc.contec_packet(72, 97)
    assert len(parser.feed(good)) == 2  # a stream's first packet is a boundary (one packet decodes)
    parser.feed(b"\x85\x85" + good * (LOCK_FRAMES - 1))  # a malformed packet: not locked any more
    assert parser.stats.frames_ok == 1
    parser.feed(good)
    assert parser.stats.frames_ok == 1 + LOCK_FRAMES


# --- 7. privacy: last_error carries a reason and at most a name ---------------------------------

_LAST_ERROR = re.compile(r"^[a-z0-9_:+\-]+(: [a-z0-9_]+)?$")


def _check_last_error(parser: Parser) -> None:
    last = parser.stats.last_error
    if last is None:
        return
    assert _LAST_ERROR.match(last), last
    if ": " in last:
        assert last.split(": ", 1)[1] in DETAIL_NAMES, last


def test_hl7_rejections_never_repeat_device_text() -> None:
    msg = enc.hl7_oru(
        [
            Obx("PATIENT-ID-55555^Secret^LN", "80", "/min"),
            Obx("59408-5^SpO2^LN", "23.4567", "%"),
            Obx("8867-4^HR^LN", "70", "UNIT-77777"),
            Obx("8310-5^T^LN", "37.0", "mm[Hg]"),
        ]
    )
    parser = create_parser("hl7v2")
    texts = []
    for piece in (
        enc.mllp(msg),
        enc.mllp("MSH|^~\\&|A|B|C|D|20240101||ADT^PATIENT-88888|X1|P|2.5\r"),
        b"\x0bPATIENT-66666\x1c\x0d",
    ):
        parser.feed(piece)
        texts.append(parser.stats.last_error or "")
        _check_last_error(parser)
    rejected = parser.stats.rejected
    assert rejected["unmapped_observation"] == 1 and rejected["out_of_range"] == 1
    assert rejected["unknown_unit"] == 1 and rejected["unit_mismatch"] == 1
    joined = " ".join(texts) + str(parser.stats.as_dict())
    for secret in ("55555", "Secret", "23.4", "77777", "88888", "66666", "mm[Hg]"):
        assert secret not in joined


def test_out_of_range_names_the_vital_not_the_value() -> None:
    parser = MasimoAsciiParser()
    parser.feed(encode_line(spo2=23, bpm=72))
    assert parser.stats.last_error == "out_of_range: spo2"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@FAST
@given(data=st.binary(max_size=80))
def test_last_error_is_always_a_reason_and_at_most_a_name(fmt: str, data: bytes) -> None:
    parser = create_parser(fmt)
    parser.feed(data)
    _check_last_error(parser)


def _valid_pieces(fmt: str) -> list[bytes]:
    return {
        "masimo-ascii": [encode_line(spo2=None), encode_line(bpm=999), encode_line(exc=0x820), b"xx12\r\n"],
        "nonin-format2": [enc.nonin_packet(511, 127), enc.nonin_packet(72, 97, NoninStatus(sensor_disconnected=True))],
        "contec-cms50": [enc.contec_packet(255, 127, finger_out=True), enc.contec_packet(72, 97)],
        "hl7v2": [enc.mllp(enc.hl7_oru([Obx("X-1^Y^LN", "1", "/min"), Obx("8867-4^HR^LN", "900", "/min")]))],
    }.get(fmt, [])


@pytest.mark.parametrize("fmt", ["masimo-ascii", "nonin-format2", "contec-cms50", "hl7v2"])
@FAST
@given(data=st.data())
def test_serial_last_error_is_always_a_reason_and_at_most_a_name(fmt: str, data: st.DataObject) -> None:
    pieces = _valid_pieces(fmt)
    stream = data.draw(st.lists(st.one_of(st.binary(max_size=20), st.sampled_from(pieces)), max_size=10))
    parser = create_parser(fmt)
    for piece in stream:
        parser.feed(piece)
        _check_last_error(parser)


def test_clock_unsynced_is_what_a_dropped_timestamp_becomes() -> None:
    from datetime import datetime

    from device_drivers.records import Reading

    parser = ble_parser("ble-blood-pressure", HO_CHI_MINH)
    (m, *_) = parser.feed(with_timestamp("ble-blood-pressure", raw_date(1, 1, 1)))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    r = Reading.from_measurement(m, gateway_id="gw", seq=1, device_id="cuff", received_at=now)
    assert r.measured_at == now and Quality.CLOCK_UNSYNCED in r.flags and not r.clock_from_device
