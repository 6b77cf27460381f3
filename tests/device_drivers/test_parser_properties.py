"""Properties every parser keeps (DESIGN §4, §6): random bytes never raise and never yield a
value outside the physiological range; serial formats give the same output for any chunking;
encoder output round-trips through the parser."""

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers import encoders as enc
from device_drivers.encoders import NoninStatus, Obx
from device_drivers.records import VITALS, Measurement, Vital, in_physiological_range
from device_drivers.registry import FORMATS, create_parser

MINE = [n for n in FORMATS if n != "masimo-ascii"]
SERIAL = [n for n in MINE if FORMATS[n].kind == "serial"]
BLE = [n for n in MINE if FORMATS[n].kind == "ble"]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(out: list[Measurement]) -> None:
    for m in out:
        assert in_physiological_range(m.vital, m.value), m
        assert m.unit == VITALS[m.vital].unit


@pytest.mark.parametrize("name", BLE)
@FAST
@given(data=st.binary(max_size=40))
def test_ble_random_bytes(name: str, data: bytes) -> None:
    check(create_parser(name).feed(data))


@pytest.mark.parametrize("name", BLE)
@FAST
@given(flags=st.integers(0, 255), rest=st.binary(min_size=0, max_size=30))
def test_ble_random_bytes_with_every_flag_set(name: str, flags: int, rest: bytes) -> None:
    check(create_parser(name).feed(bytes([flags]) + rest))


def _serial_noise(name: str) -> st.SearchStrategy[bytes]:
    """Random bytes mixed with valid pieces of the format so the interesting paths are hit."""
    pieces: list[bytes]
    if name == "nonin-format2":
        pieces = [
            enc.nonin_packet(72, 97),
            enc.nonin_packet(511, 127),
            enc.nonin_frame(0x81, 1, 2),
            enc.nonin_packet(80, 95, NoninStatus(sensor_disconnected=True)),
        ]
    elif name == "contec-cms50":
        pieces = [enc.contec_packet(72, 97), enc.contec_packet(0, 0, finger_out=True)]
    else:
        pieces = [
            enc.mllp(enc.hl7_oru([Obx("8867-4^HR^LN", "80", "/min")])),
            b"\x0b",
            b"\x1c\x0d",
            b"OBX|1|NM|8310-5^T^LN||999|Cel\r",
            b"MSH|^~\\&|",
        ]
    return st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(pieces)), max_size=12).map(b"".join)


@pytest.mark.parametrize("name", SERIAL)
@FAST
@given(data=st.data())
def test_serial_random_and_chunking(name: str, data: st.DataObject) -> None:
    stream = data.draw(_serial_noise(name))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    whole = create_parser(name)
    expected = whole.feed(stream)
    check(expected)
    chunked = create_parser(name)
    got: list[Measurement] = []
    prev = 0
    for c in [*cuts, len(stream)]:
        got += chunked.feed(stream[prev:c])
        prev = c
    assert got == expected
    assert chunked.stats.as_dict() == whole.stats.as_dict()


@pytest.mark.parametrize("name", SERIAL)
def test_serial_bytewise_on_long_valid_stream(name: str) -> None:
    if name == "nonin-format2":
        stream = b"".join(enc.nonin_packet(60 + i, 90 + i % 10) for i in range(12))
    elif name == "contec-cms50":
        stream = b"".join(enc.contec_packet(60 + i // 60, 97) for i in range(240))
    else:
        stream = b"".join(
            enc.mllp(enc.hl7_oru([Obx("8867-4^HR^LN", str(60 + i), "/min")], control_id=f"M{i}")) for i in range(5)
        )
    whole = create_parser(name).feed(stream)
    p = create_parser(name)
    bytewise = [m for i in range(len(stream)) for m in p.feed(stream[i : i + 1])]
    assert bytewise == whole and len(whole) >= 4


# --- encoder round trips ----------------------------------------------------------------------

when_st = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=0)
    ),
)


@settings(max_examples=100, deadline=None)
@given(
    sys_=st.integers(90, 250),
    dia=st.integers(40, 89),
    pulse=st.one_of(st.none(), st.integers(30, 200)),
    when=when_st,
    user=st.one_of(st.none(), st.integers(0, 254)),
    status=st.one_of(st.none(), st.integers(0, 0x3F)),
)
def test_blood_pressure_round_trip(
    sys_: int, dia: int, pulse: int | None, when: datetime | None, user: int | None, status: int | None
) -> None:
    mean = (sys_ + 2 * dia) // 3
    out = create_parser("ble-blood-pressure").feed(
        enc.blood_pressure(sys_, dia, mean, timestamp=when, pulse=pulse, user_id=user, status=status)
    )
    got = {m.vital: m.value for m in out}
    assert got[Vital.BP_SYSTOLIC] == sys_ and got[Vital.BP_DIASTOLIC] == dia and got[Vital.BP_MEAN] == mean
    assert got.get(Vital.HEART_RATE) == pulse
    assert all(m.measured_at == when for m in out)


@settings(max_examples=100, deadline=None)
@given(tenths=st.integers(340, 420), f=st.booleans(), when=when_st, kind=st.one_of(st.none(), st.integers(0, 12)))
def test_temperature_round_trip(tenths: int, f: bool, when: datetime | None, kind: int | None) -> None:
    c = tenths / 10
    value = c * 9 / 5 + 32 if f else c
    (m,) = create_parser("ble-temperature").feed(
        enc.temperature(value, fahrenheit=f, timestamp=when, temp_type=kind, decimals=2)
    )
    assert m.value == pytest.approx(c, abs=0.006) and m.measured_at == when


@settings(max_examples=100, deadline=None)
@given(spo2=st.integers(70, 100), pr=st.integers(30, 220), pai=st.one_of(st.none(), st.integers(1, 200)))
def test_plx_round_trip(spo2: int, pr: int, pai: int | None) -> None:
    for name, fn in (("ble-plx-spot", enc.plx_spot), ("ble-plx-continuous", enc.plx_continuous)):
        out = create_parser(name).feed(fn(spo2, pr, pai=None if pai is None else pai / 10))
        got = {m.vital: m.value for m in out}
        assert got[Vital.SPO2] == spo2 and got[Vital.HEART_RATE] == pr
        assert got.get(Vital.PERFUSION_INDEX) == (None if pai is None else pai / 10)


@settings(max_examples=100, deadline=None)
@given(bpm=st.integers(20, 300), wide=st.booleans(), rr=st.lists(st.integers(200, 2000), max_size=6))
def test_heart_rate_round_trip(bpm: int, wide: bool, rr: list[int]) -> None:
    (m,) = create_parser("ble-heart-rate").feed(enc.heart_rate(bpm, wide=wide or bpm > 255, rr_1024=rr))
    assert m.value == bpm
    if rr:
        assert len(dict(m.extra)["rr_ms"].split(",")) == len(rr)  # type: ignore[union-attr]


@settings(max_examples=100, deadline=None)
@given(counts=st.integers(200, 60000), when=when_st)
def test_weight_round_trip(counts: int, when: datetime | None) -> None:
    (m,) = create_parser("ble-weight").feed(enc.weight(counts, timestamp=when))
    assert m.value == pytest.approx(counts * 0.005, abs=0.001) and m.measured_at == when


@settings(max_examples=100, deadline=None)
@given(mg=st.integers(20, 600), seq=st.integers(0, 65535), offset=st.one_of(st.none(), st.integers(-600, 600)))
def test_glucose_round_trip(mg: int, seq: int, offset: int | None) -> None:
    base = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    (m,) = create_parser("ble-glucose").feed(
        enc.glucose(seq, base, concentration=enc.glucose_mg_dl(mg), time_offset=offset)
    )
    assert m.value == pytest.approx(mg / 18.016, abs=0.006)
    assert dict(m.extra)["sequence_number"] == seq


@settings(max_examples=50, deadline=None)
@given(hr=st.integers(20, 300), spo2=st.integers(50, 100))
def test_nonin_round_trip(hr: int, spo2: int) -> None:
    out = create_parser("nonin-format2").feed(enc.nonin_packet(hr, spo2))
    assert {m.vital: m.value for m in out} == {Vital.HEART_RATE: hr, Vital.SPO2: spo2}


@settings(max_examples=50, deadline=None)
@given(pr=st.integers(20, 254), spo2=st.integers(50, 100))
def test_contec_round_trip(pr: int, spo2: int) -> None:
    out = create_parser("contec-cms50").feed(enc.contec_packet(pr, spo2))
    assert {m.vital: m.value for m in out} == {Vital.HEART_RATE: pr, Vital.SPO2: spo2}


@settings(max_examples=50, deadline=None)
@given(
    hr=st.integers(20, 300),
    temp=st.integers(300, 440),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)),
)
def test_hl7_round_trip(hr: int, temp: int, when: datetime) -> None:
    when = when.replace(microsecond=0)
    msg = enc.hl7_oru([Obx("8867-4^HR^LN", str(hr), "/min"), Obx("8310-5^T^LN", f"{temp / 10:.1f}", "Cel")], when=when)
    out = create_parser("hl7v2").feed(enc.mllp(msg))
    assert [(m.vital, m.value, m.measured_at) for m in out] == [
        (Vital.HEART_RATE, hr, when),
        (Vital.BODY_TEMP, temp / 10, when),
    ]
