"""ble-blood-pressure (0x2A35): protocols.md §1.3 examples, every optional field, specials."""

import itertools
from datetime import UTC, datetime

import pytest

from device_drivers import encoders as enc
from device_drivers.ble_blood_pressure import BloodPressureParser
from device_drivers.records import KPA_PER_MMHG, Quality, Vital


def values(ms):  # type: ignore[no-untyped-def]
    return {m.vital: m.value for m in ms}


def test_protocols_example_mmhg() -> None:
    p = BloodPressureParser()
    out = p.feed(bytes.fromhex("00 78 00 50 00 5D 00"))
    assert values(out) == {Vital.BP_SYSTOLIC: 120, Vital.BP_DIASTOLIC: 80, Vital.BP_MEAN: 93}
    assert all(m.unit == "mm[Hg]" and m.measured_at is None for m in out)


def test_nan_mean_gives_no_mean_and_a_counted_rejection() -> None:
    p = BloodPressureParser()
    out = p.feed(bytes.fromhex("00 78 00 50 00 FF 07"))
    assert values(out) == {Vital.BP_SYSTOLIC: 120, Vital.BP_DIASTOLIC: 80}
    assert p.stats.rejected["special_value:nan"] == 1


def test_nordic_minimal_example_is_decoded_but_out_of_range() -> None:
    # `00 BD F0 0B 00 9F F0` = 18.9 / 11 / 15.9 (unit-less test values, protocols.md §1.3):
    # not physiological blood pressures, so nothing is emitted and three are counted.
    p = BloodPressureParser()
    assert p.feed(bytes.fromhex("00 BD F0 0B 00 9F F0")) == []
    assert p.stats.rejected["out_of_range"] == 3
    # last_error names the vital, never the value (privacy: status and logs carry no values).
    assert p.stats.last_error == "out_of_range: bp_mean"


def test_kpa_converted_to_mmhg() -> None:
    p = BloodPressureParser()
    out = p.feed(enc.blood_pressure(16.0, 10.7, 12.4, kpa=True, decimals=1, pulse=70))
    v = values(out)
    assert v[Vital.BP_SYSTOLIC] == pytest.approx(16.0 / KPA_PER_MMHG, abs=0.05)
    assert v[Vital.BP_DIASTOLIC] == pytest.approx(10.7 / KPA_PER_MMHG, abs=0.05)
    assert v[Vital.HEART_RATE] == 70  # pulse rate is never in kPa
    assert ("device_unit", "kPa") in out[0].extra


@pytest.mark.parametrize("ts,pulse,user,status", list(itertools.product([False, True], repeat=4)))
def test_every_optional_field_combination(ts: bool, pulse: bool, user: bool, status: bool) -> None:
    when = datetime(2026, 11, 23, 8, 15, 30, tzinfo=UTC)
    raw = enc.blood_pressure(
        132,
        85,
        101,
        timestamp=when if ts else False,
        pulse=77 if pulse else None,
        user_id=3 if user else None,
        status=0x0004 if status else None,
    )
    out = BloodPressureParser().feed(raw)
    v = values(out)
    assert v[Vital.BP_SYSTOLIC] == 132 and v[Vital.BP_DIASTOLIC] == 85 and v[Vital.BP_MEAN] == 101
    assert (Vital.HEART_RATE in v) == pulse
    for m in out:
        assert m.measured_at == (when if ts else None)
        assert (("user_id", 3) in m.extra) == user
        assert (Quality.IRREGULAR_PULSE in m.flags) == status


def test_status_bits_to_flags() -> None:
    out = BloodPressureParser().feed(enc.blood_pressure(120, 80, 93, pulse=150, status=0x0001 | 0x0002 | 0x0008))
    sys_ = next(m for m in out if m.vital is Vital.BP_SYSTOLIC)
    assert {Quality.DEVICE_ARTEFACT, Quality.QUESTIONABLE} <= sys_.flags
    assert ("pulse_rate_range", "above_upper_limit") in sys_.extra


def test_unknown_timestamp_and_unknown_user() -> None:
    out = BloodPressureParser().feed(enc.blood_pressure(120, 80, 93, timestamp=None, user_id=0xFF))
    assert all(m.measured_at is None and not any(k == "user_id" for k, _ in m.extra) for m in out)


@pytest.mark.parametrize("n", range(7))
def test_truncated_value_is_rejected(n: int) -> None:
    p = BloodPressureParser()
    assert p.feed(bytes.fromhex("00 78 00 50 00 5D 00")[:n]) == []
    assert sum(p.stats.rejected.values()) == 1


def test_announced_field_missing_is_truncated() -> None:
    p = BloodPressureParser()
    assert p.feed(bytes.fromhex("02 78 00 50 00 5D 00 E8 07")) == []
    assert p.stats.rejected["truncated"] == 1


def test_reserved_flag_bits_ignored() -> None:
    assert len(BloodPressureParser().feed(bytes.fromhex("E0 78 00 50 00 5D 00"))) == 3
