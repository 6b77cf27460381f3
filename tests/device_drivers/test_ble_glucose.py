"""ble-glucose (0x2A18): protocols.md §1.9 derived encodings, units, options, status."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from device_drivers import encoders as enc
from device_drivers.ble_glucose import GlucoseParser
from device_drivers.records import MG_DL_PER_MMOL_L, Quality, Vital

BASE = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)


def test_protocols_example_kg_per_l() -> None:
    assert enc.glucose_mg_dl(90) == bytes.fromhex("5A B0")
    (m,) = GlucoseParser().feed(enc.glucose(1, BASE, concentration=bytes.fromhex("5A B0")))
    assert m.vital is Vital.GLUCOSE and m.unit == "mmol/L"
    assert m.value == pytest.approx(90 / MG_DL_PER_MMOL_L, abs=0.005)
    assert m.measured_at == BASE and ("sequence_number", 1) in m.extra


def test_protocols_example_mol_per_l() -> None:
    assert enc.glucose_mmol_l(5.6) == bytes.fromhex("38 C0")
    (m,) = GlucoseParser().feed(enc.glucose(2, BASE, concentration=bytes.fromhex("38 C0"), mol_per_l=True))
    assert m.value == 5.6


@pytest.mark.parametrize("offset,status,context", list(itertools.product([False, True], repeat=3)))
def test_options(offset: bool, status: bool, context: bool) -> None:
    raw = enc.glucose(
        7,
        BASE,
        concentration=enc.glucose_mg_dl(126),
        time_offset=-15 if offset else None,
        status=0x0001 if status else None,
        context_follows=context,
    )
    (m,) = GlucoseParser().feed(raw)
    assert m.measured_at == BASE + timedelta(minutes=-15 if offset else 0)
    extra = dict(m.extra)
    assert extra["sample_type"] == "capillary_whole_blood" and extra["sample_location"] == "finger"
    assert ("sensor_status" in extra) == status
    assert extra.get("context_follows", False) == context


def test_no_concentration_and_control_solution() -> None:
    p = GlucoseParser()
    assert p.feed(enc.glucose(3, BASE)) == []
    assert p.feed(enc.glucose(4, BASE, concentration=enc.glucose_mg_dl(100), sample_type=10)) == []
    assert p.feed(enc.glucose(5, BASE, concentration=enc.glucose_mg_dl(100), location=4)) == []
    assert p.stats.rejected["no_concentration"] == 1 and p.stats.rejected["control_solution"] == 2


def test_high_result_flagged_not_dropped() -> None:
    (m,) = GlucoseParser().feed(enc.glucose(9, BASE, concentration=enc.glucose_mg_dl(600), status=1 << 6))
    assert Quality.DEVICE_ALARM in m.flags and ("result_range", "above_device_range") in m.extra


def test_unknown_base_time_and_time_fault() -> None:
    (m,) = GlucoseParser().feed(enc.glucose(1, None, concentration=enc.glucose_mg_dl(100), time_offset=5))
    assert m.measured_at is None
    (m,) = GlucoseParser().feed(enc.glucose(1, BASE, concentration=enc.glucose_mg_dl(100), status=1 << 11))
    assert m.measured_at is None


def test_special_value_and_truncation() -> None:
    p = GlucoseParser()
    assert p.feed(enc.glucose(1, BASE, concentration=bytes.fromhex("FE 07"))) == []
    assert p.stats.rejected["special_value:+inf"] == 1
    assert p.feed(enc.glucose(1, BASE)[:9]) == [] and p.stats.rejected["truncated"] == 1


def test_offset_past_calendar_end_does_not_raise() -> None:
    p = GlucoseParser()
    (m,) = p.feed(
        enc.glucose(
            1,
            datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
            concentration=enc.glucose_mg_dl(100),
            time_offset=30000,
        )
    )
    assert m.measured_at is None and p.stats.rejected["bad_timestamp"] == 1


# Nordic-BLE-Common `GlucoseMeasurementDataCallbackTest` vectors.
NORDIC = bytes([0b011011, 1, 0, 0xE3, 0x07, 2, 27, 11, 10, 30, 0xFB, 0xFF, 30, 0, 0x12, 0b101, 0b1])


def test_nordic_vector_fields() -> None:
    # Nordic's test value is "30.0 kg/L" (a unit-less test number; 3,000,000 mg/dL), so it is
    # decoded and then rejected as out of range; the other fields are checked via a copy with a
    # physiological concentration (90e-5 kg/L) in its place.
    p = GlucoseParser()
    assert p.feed(NORDIC) == [] and p.stats.rejected["out_of_range"] == 1
    (m,) = GlucoseParser().feed(NORDIC[:12] + enc.glucose_mg_dl(90) + NORDIC[14:])
    assert m.measured_at == datetime(2019, 2, 27, 11, 5, 30, tzinfo=UTC)  # 11:10:30 - 5 min
    extra = dict(m.extra)
    assert extra["sequence_number"] == 1 and extra["sensor_status"] == 261
    assert extra["sample_type"] == "capillary_plasma" and extra["sample_location"] == "finger"
    assert extra["context_follows"] is True
    assert Quality.QUESTIONABLE in m.flags  # sample size insufficient, sensor temperature too low


def test_nordic_invalid_vector() -> None:
    p = GlucoseParser()
    assert p.feed(bytes([0b011011, 0, 0, 0xE2, 0x07, 4, 26, 11, 9, 30, 30, 0, 0x12, 0b101, 0b1])) == []
    assert p.stats.rejected["truncated"] == 1
