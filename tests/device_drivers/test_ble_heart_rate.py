"""ble-heart-rate (0x2A37): protocols.md §1.7."""

import pytest

from device_drivers import encoders as enc
from device_drivers.ble_heart_rate import HeartRateParser
from device_drivers.records import Vital


def test_protocols_example() -> None:
    (m,) = HeartRateParser().feed(bytes.fromhex("00 48"))
    assert m.vital is Vital.HEART_RATE and m.value == 72 and m.unit == "/min"


def test_sixteen_bit_energy_and_rr() -> None:
    (m,) = HeartRateParser().feed(enc.heart_rate(260, wide=True, contact=3, energy_kj=512, rr_1024=[1024, 512]))
    assert m.value == 260
    extra = dict(m.extra)
    assert extra["energy_kj"] == 512 and extra["rr_ms"] == "1000.0,500.0" and extra["sensor_contact"] is True


@pytest.mark.parametrize("energy", [None, 7])
@pytest.mark.parametrize("rr", [(), (800,), (800, 820, 790)])
@pytest.mark.parametrize("wide", [False, True])
def test_combinations(energy: int | None, rr: tuple[int, ...], wide: bool) -> None:
    (m,) = HeartRateParser().feed(enc.heart_rate(75, wide=wide, energy_kj=energy, rr_1024=rr))
    extra = dict(m.extra)
    assert m.value == 75
    assert extra.get("energy_kj") == energy
    assert ("rr_ms" in extra) == bool(rr)


def test_contact_not_detected_is_rejected() -> None:
    p = HeartRateParser()
    assert p.feed(enc.heart_rate(0, contact=2)) == [] and p.stats.rejected["probe_off"] == 1


def test_odd_trailing_rr_byte_ignored_and_truncation() -> None:
    assert len(HeartRateParser().feed(enc.heart_rate(70, rr_1024=[800]) + b"\x01")) == 1
    p = HeartRateParser()
    assert p.feed(bytes.fromhex("01 48")) == [] and p.stats.rejected["truncated"] == 1


# Nordic-BLE-Common `HeartRateMeasurementDataCallbackTest` vectors. Their RR intervals are
# codec test values (32.2 ms, 1 ms, 64 s), not beats: by the extras range check (RR 150 ms-10 s)
# they are dropped and counted, the heart rate is kept. (Before the range check this test
# expected them in rr_ms; the layout decoding is still checked through the one in range.)
def test_nordic_vectors() -> None:
    (m,) = HeartRateParser().feed(bytes([0, 85]))
    assert m.value == 85
    p = HeartRateParser()
    (m,) = p.feed(bytes([0b11110, 85, 50, 0, 33, 0]))
    assert m.value == 85 and dict(m.extra) == {"sensor_contact": True, "energy_kj": 50}
    assert p.stats.rejected["extra_out_of_range"] == 1 and p.stats.last_error == "extra_out_of_range: rr_ms"
    (m,) = p.feed(bytes([0b11111, 1, 1, 50, 1, 1, 0, 2, 1, 0xFF, 0xFF]))
    assert m.value == 257 and dict(m.extra)["energy_kj"] == 306
    assert dict(m.extra)["rr_ms"] == "252.0"
    assert p.stats.rejected["extra_out_of_range"] == 2  # once per value, not per interval


def test_nordic_no_contact_and_invalid_vectors() -> None:
    p = HeartRateParser()
    assert p.feed(bytes([0x04, 0xFF])) == []  # contact supported, not detected
    assert p.feed(bytes([0b10111, 1, 1])) == []  # RR flag without an RR interval
    assert p.stats.rejected["probe_off"] == 1 and p.stats.rejected["truncated"] == 1
