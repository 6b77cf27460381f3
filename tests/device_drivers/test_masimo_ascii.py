"""masimo-ascii: real example lines, dashed (missing) fields, alarm/exception bits, garbage, chunking."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.masimo_ascii import MasimoAsciiParser, encode_line
from device_drivers.records import VITALS, Quality, Vital, in_physiological_range

# The constructed example of reference/protocols.md §2.1 (format as documented by MDPnP-Radical).
EXAMPLE = (
    b"05/14/25 09:12:03 SN=0000012345 SPO2=096% BPM=081 PI=02.40% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)
# Real Rad-8 output captured with `cat /dev/ttyUSB0` (yahnatan/pulseox README, "pulseox-rad8" in
# reference/protocols.md): five consecutive lines, CR LF line ends.
RAD8_CAPTURE = b"".join(
    line + b"\r\n"
    for line in (
        b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- "
        b"ALARM=0000 EXC=000800",
        b"02/22/16 22:47:46 SN=0000056661 SPO2=098% BPM=096 PI=03.95% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- "
        b"ALARM=0000 EXC=000800",
        b"02/22/16 22:47:47 SN=0000056661 SPO2=098% BPM=096 PI=04.25% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- "
        b"ALARM=0000 EXC=000800",
        b"02/22/16 22:47:48 SN=0000056661 SPO2=098% BPM=096 PI=03.19% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- "
        b"ALARM=0000 EXC=000800",
        b"02/22/16 22:47:49 SN=0000056661 SPO2=098% BPM=097 PI=02.41% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- "
        b"ALARM=0000 EXC=000800",
    )
)
# Constructed (not captured): LF CR ending (MDPnP's comment says "line-feed, carriage-return"), a
# dashed serial number and an extra PVI field, to check label-based parsing.
RAD8 = (
    b"11/04/19 21:12:53 SN=---------- SPO2=097% BPM=064 PI=04.50% SPCO=--.-% SPMET=--.-% DESAT=-- "
    b"PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000\n\r"
)


def values(measurements):  # type: ignore[no-untyped-def]
    return {m.vital: m.value for m in measurements}


def test_reference_example() -> None:
    p = MasimoAsciiParser()
    out = p.feed(EXAMPLE)
    assert values(out) == {Vital.SPO2: 96.0, Vital.HEART_RATE: 81.0, Vital.PERFUSION_INDEX: 2.4}
    assert all(m.unit == VITALS[m.vital].unit for m in out)
    assert all(m.measured_at is None for m in out)  # device clock is not trusted (module docstring)
    extra = dict(out[0].extra)
    assert extra["device_time"] == "05/14/25 09:12:03"
    assert extra["exc"] == 0x800 and extra["alarm"] == 0 and extra["sn"] == "0000012345"
    assert not out[0].flags  # EXC 0x800 is normal SET mode, not an error
    assert p.stats.frames_ok == 1 and not p.stats.rejected


def test_real_rad8_capture() -> None:
    p = MasimoAsciiParser()
    out = p.feed(RAD8_CAPTURE)
    assert [m.value for m in out if m.vital == Vital.SPO2] == [98.0] * 5
    assert [m.value for m in out if m.vital == Vital.HEART_RATE] == [97.0, 96.0, 96.0, 96.0, 97.0]
    assert [m.value for m in out if m.vital == Vital.PERFUSION_INDEX] == [3.6, 3.95, 4.25, 3.19, 2.41]
    assert dict(out[0].extra)["sn"] == "0000056661"
    assert p.stats.frames_ok == 5 and not p.stats.rejected


def test_lf_cr_line_end_and_dashed_serial() -> None:
    p = MasimoAsciiParser()
    out = p.feed(RAD8)
    assert values(out) == {Vital.SPO2: 97.0, Vital.HEART_RATE: 64.0, Vital.PERFUSION_INDEX: 4.5}
    assert "sn" not in dict(out[0].extra)


def test_missing_values_are_not_numbers() -> None:
    p = MasimoAsciiParser()
    out = p.feed(encode_line(spo2=None, bpm=81, pi=None))
    assert values(out) == {Vital.HEART_RATE: 81.0}
    assert p.stats.rejected["missing_value"] == 2


def test_probe_off_withholds_values() -> None:
    p = MasimoAsciiParser()
    assert p.feed(encode_line(spo2=95, bpm=80, exc=0x820)) == []  # sensor off + SET
    assert p.stats.rejected["probe_off"] == 1


def test_alarm_and_exception_bits_become_flags() -> None:
    p = MasimoAsciiParser()
    out = p.feed(encode_line(spo2=86, bpm=120, exc=0x800 | 0x004 | 0x010, alarm=0x0012))
    flags = out[0].flags
    assert Quality.LOW_PERFUSION in flags
    assert Quality.DEVICE_ARTEFACT in flags
    assert Quality.DEVICE_ALARM in flags
    assert dict(out[0].extra)["alarm"] == 0x12


def test_trend_format_exception_text_is_tolerated() -> None:
    # Rad-8 manual trend-download style EXC ("800:SET") with the live labels.
    line = b"09/21/08 09:56:12 SPO2=097% BPM=069 PI=04.69 EXC=800:SET\r\n"
    out = MasimoAsciiParser().feed(line)
    assert values(out) == {Vital.SPO2: 97.0, Vital.HEART_RATE: 69.0, Vital.PERFUSION_INDEX: 4.69}


def test_garbage_between_and_before_lines() -> None:
    p = MasimoAsciiParser()
    stream = b"\x00\xff\x13noise" + EXAMPLE + b"\r\n\r\n#$%^&*\r\n" + b"xx12" + encode_line(spo2=93) + b"\xfe\xfe"
    out = p.feed(stream)
    assert [m.value for m in out if m.vital == Vital.SPO2] == [96.0, 93.0]
    assert p.stats.rejected["garbage"] == 2
    assert p.stats.rejected["malformed_line"] == 1


def test_out_of_range_values_are_rejected() -> None:
    p = MasimoAsciiParser()
    out = p.feed(encode_line(spo2=100, bpm=999))  # BPM=999 is not a pulse
    assert values(out)[Vital.SPO2] == 100.0
    assert Vital.HEART_RATE not in values(out)
    assert p.stats.rejected["out_of_range"] == 1


def test_overlong_garbage_does_not_grow_the_buffer() -> None:
    p = MasimoAsciiParser()
    for _ in range(100):
        p.feed(b"A" * 1000)
    assert len(p._buf) <= 512
    assert values(p.feed(b"\r\n" + EXAMPLE))[Vital.SPO2] == 96.0


lines = st.builds(
    encode_line,
    spo2=st.one_of(st.none(), st.integers(0, 100)),
    bpm=st.one_of(st.none(), st.integers(0, 300)),
    pi=st.one_of(st.none(), st.floats(0, 20, allow_nan=False).map(lambda v: round(v, 2))),
    exc=st.sampled_from([0x800, 0x820, 0x804, 0x001, 0x000]),
    alarm=st.integers(0, 0xFFFF),
    line_end=st.sampled_from([b"\r\n", b"\n\r", b"\n"]),
)
streams = st.lists(st.one_of(lines, st.binary(max_size=60)), max_size=12).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(stream=streams, cuts=st.lists(st.integers(0, 2000), max_size=30))
def test_any_chunking_gives_the_same_output(stream: bytes, cuts: list[int]) -> None:
    whole = MasimoAsciiParser().feed(stream)
    chunked_parser = MasimoAsciiParser()
    chunked = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        chunked += chunked_parser.feed(stream[a:b])
    bytewise_parser = MasimoAsciiParser()
    bytewise = [m for i in range(len(stream)) for m in bytewise_parser.feed(stream[i : i + 1])]
    assert chunked == whole
    assert bytewise == whole


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_random_bytes_never_raise_nor_leave_range(data: bytes) -> None:
    p = MasimoAsciiParser()
    for m in p.feed(data) + p.feed(b"\r\n"):
        assert in_physiological_range(m.vital, m.value)


@settings(max_examples=200, deadline=None)
@given(spo2=st.integers(30, 100), bpm=st.integers(15, 300), pi=st.floats(0.02, 20).map(lambda v: round(v, 2)))
def test_encoder_round_trips(spo2: int, bpm: int, pi: float) -> None:
    out = MasimoAsciiParser().feed(encode_line(spo2=spo2, bpm=bpm, pi=pi))
    assert values(out) == {Vital.SPO2: spo2, Vital.HEART_RATE: bpm, Vital.PERFUSION_INDEX: pi}
