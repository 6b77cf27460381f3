"""nonin-format2: frames, packets, checksum, missing codes, status bits, decimation, resync."""

from device_drivers import encoders as enc
from device_drivers.encoders import NoninStatus
from device_drivers.nonin_format2 import NoninFormat2Parser
from device_drivers.records import Quality, Vital


def feed_bytewise(p: NoninFormat2Parser, data: bytes) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(len(data)):
        out += p.feed(data[i : i + 1])
    return out


def test_frame_checksum_rule() -> None:
    frame = enc.nonin_frame(0x81, 0x40, 0x00)
    assert frame == bytes([0x01, 0x81, 0x40, 0x00, 0xC2])


def test_one_packet_gives_one_reading_per_vital() -> None:
    p = NoninFormat2Parser()
    out = p.feed(enc.nonin_packet(72, 97))
    assert {(m.vital, m.value) for m in out} == {(Vital.HEART_RATE, 72), (Vital.SPO2, 97)}
    assert p.stats.frames_ok == 25


def test_high_heart_rate_uses_msb_bits() -> None:
    (hr, _) = NoninFormat2Parser().feed(enc.nonin_packet(300, 90))
    assert hr.value == 300


def test_decimation_one_per_second() -> None:
    p = NoninFormat2Parser()
    out = p.feed(b"".join(enc.nonin_packet(70 + i, 95) for i in range(9)))  # 3 s
    hr = [m.value for m in out if m.vital is Vital.HEART_RATE]
    assert hr == [70, 73, 76]


def test_missing_values_give_no_reading() -> None:
    p = NoninFormat2Parser()
    assert p.feed(enc.nonin_packet(511, 127) * 3) == []
    assert p.stats.rejected["missing_value"] == 2  # once per vital per window


def test_missing_first_packet_then_valid_in_same_window() -> None:
    p = NoninFormat2Parser()
    out = p.feed(enc.nonin_packet(511, 127) + enc.nonin_packet(80, 96))
    assert {(m.vital, m.value) for m in out} == {(Vital.HEART_RATE, 80), (Vital.SPO2, 96)}


def test_sensor_disconnected_is_probe_off() -> None:
    p = NoninFormat2Parser()
    assert p.feed(enc.nonin_packet(72, 97, NoninStatus(sensor_disconnected=True))) == []
    assert p.stats.rejected["probe_off"] == 2


def test_status_bits_to_flags() -> None:
    status = NoninStatus(artifact=True, out_of_track=True, sensor_alarm=True, perfusion=0b10)
    (m, _) = NoninFormat2Parser().feed(enc.nonin_packet(72, 97, status))
    assert {
        Quality.DEVICE_ARTEFACT,
        Quality.QUESTIONABLE,
        Quality.SENSOR_FAULT,
        Quality.LOW_PERFUSION,
    } <= m.flags
    assert ("perfusion", "red") in m.extra


def test_bad_checksum_drops_packet_and_resyncs() -> None:
    pkt = bytearray(enc.nonin_packet(72, 97))
    pkt[14] ^= 0xFF  # corrupt the checksum of frame 3
    p = NoninFormat2Parser()
    out = p.feed(bytes(pkt) + enc.nonin_packet(75, 98))
    assert [m.value for m in out if m.vital is Vital.HEART_RATE] == [75]
    assert p.stats.rejected["sync_lost"] == 1 and p.stats.rejected["incomplete_packet"] == 1


def test_garbage_then_packet_and_bytewise_identical() -> None:
    data = b"\x00\xff\x01\x02garbage" + enc.nonin_packet(72, 97) + enc.nonin_packet(73, 97) * 2
    a = NoninFormat2Parser()
    b = NoninFormat2Parser()
    assert a.feed(data) == feed_bytewise(b, data)
    assert a.stats.as_dict() == b.stats.as_dict()
    assert a.stats.bytes_discarded == 11


def test_mid_stream_start_waits_for_sync_frame() -> None:
    pkt = enc.nonin_packet(72, 97)
    out = NoninFormat2Parser().feed(pkt[50:] + enc.nonin_packet(74, 97))
    assert [m.value for m in out if m.vital is Vital.HEART_RATE] == [74]
