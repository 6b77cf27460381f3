"""ble-plx-spot (0x2A5E) and ble-plx-continuous (0x2A5F): protocols.md §1.5-1.6."""

import itertools
from datetime import UTC, datetime

import pytest

from device_drivers import encoders as enc
from device_drivers.ble_plx_continuous import PlxContinuousParser
from device_drivers.ble_plx_spot import PlxSpotCheckParser
from device_drivers.plx_status import DS_LOW_PERFUSION, DS_SENSOR_DISCONNECTED, MS_FROM_STORAGE, MS_INVALID
from device_drivers.records import Quality, Vital

NAN = bytes.fromhex("FF 07")


def values(ms):  # type: ignore[no-untyped-def]
    return {m.vital: m.value for m in ms}


def test_spot_protocols_example() -> None:
    assert values(PlxSpotCheckParser().feed(bytes.fromhex("00 61 00 48 00"))) == {
        Vital.SPO2: 97,
        Vital.HEART_RATE: 72,
    }


def test_continuous_protocols_example() -> None:
    assert values(PlxContinuousParser().feed(bytes.fromhex("00 60 00 4E 00"))) == {
        Vital.SPO2: 96,
        Vital.HEART_RATE: 78,
    }


@pytest.mark.parametrize("ts,ms,ds,pai,clock", list(itertools.product([False, True], repeat=5)))
def test_spot_every_option(ts: bool, ms: bool, ds: bool, pai: bool, clock: bool) -> None:
    when = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    raw = enc.plx_spot(
        95,
        88,
        timestamp=when if ts else False,
        measurement_status=MS_FROM_STORAGE if ms else None,
        device_status=DS_LOW_PERFUSION if ds else None,
        pai=2.4 if pai else None,
        clock_not_set=clock,
    )
    out = PlxSpotCheckParser().feed(raw)
    v = values(out)
    assert v[Vital.SPO2] == 95 and v[Vital.HEART_RATE] == 88
    assert v.get(Vital.PERFUSION_INDEX) == (2.4 if pai else None)
    for m in out:
        assert m.measured_at == (when if ts and not clock else None)
        assert (Quality.FROM_STORAGE in m.flags) == ms
        assert (Quality.LOW_PERFUSION in m.flags) == ds


@pytest.mark.parametrize("fast,slow,ms,ds,pai", list(itertools.product([False, True], repeat=5)))
def test_continuous_every_option(fast: bool, slow: bool, ms: bool, ds: bool, pai: bool) -> None:
    raw = enc.plx_continuous(
        96,
        78,
        fast=(94, 80) if fast else None,
        slow=(97, 76) if slow else None,
        measurement_status=0x0080 if ms else None,
        device_status=0x000004 if ds else None,
        pai=1.5 if pai else None,
    )
    out = PlxContinuousParser().feed(raw)
    v = values(out)
    assert v[Vital.SPO2] == 96 and v[Vital.HEART_RATE] == 78
    assert v.get(Vital.PERFUSION_INDEX) == (1.5 if pai else None)
    extra = dict(out[0].extra)
    assert (extra.get("spo2_fast"), extra.get("pr_fast")) == ((94, 80) if fast else (None, None))
    assert (extra.get("spo2_slow"), extra.get("pr_slow")) == ((97, 76) if slow else (None, None))
    assert (Quality.DEVICE_ARTEFACT in out[0].flags) == ds


@pytest.mark.parametrize("cls", [PlxSpotCheckParser, PlxContinuousParser])
def test_invalid_and_probe_off_give_nothing(cls) -> None:  # type: ignore[no-untyped-def]
    enc_fn = enc.plx_spot if cls is PlxSpotCheckParser else enc.plx_continuous
    p = cls()
    assert p.feed(enc_fn(97, 72, measurement_status=MS_INVALID)) == []
    assert p.feed(enc_fn(97, 72, device_status=DS_SENSOR_DISCONNECTED)) == []
    assert p.stats.rejected["device_invalid"] == 1 and p.stats.rejected["probe_off"] == 1


@pytest.mark.parametrize("cls", [PlxSpotCheckParser, PlxContinuousParser])
def test_special_values(cls) -> None:  # type: ignore[no-untyped-def]
    enc_fn = enc.plx_spot if cls is PlxSpotCheckParser else enc.plx_continuous
    p = cls()
    out = p.feed(enc_fn(NAN, 72, pai=bytes.fromhex("00 08")))
    assert values(out) == {Vital.HEART_RATE: 72}
    assert p.stats.rejected["special_value:nan"] == 1 and p.stats.rejected["special_value:nres"] == 1


def test_continuous_special_in_fast_set_is_left_out_of_extra() -> None:
    (spo2, _) = PlxContinuousParser().feed(enc.plx_continuous(96, 78, fast=(NAN, 80)))
    assert "spo2_fast" not in dict(spo2.extra) and dict(spo2.extra)["pr_fast"] == 80


def test_truncated() -> None:
    p = PlxSpotCheckParser()
    assert p.feed(bytes.fromhex("01 61 00 48 00 E8 07")) == []
    assert p.stats.rejected["truncated"] == 1


# Spezi `PLXTests.swift` vectors (Spezi encodes with exponent -1/-2, e.g. 100.0 = F3E8).
def test_spezi_continuous_vectors() -> None:
    assert values(PlxContinuousParser().feed(bytes([0, 232, 243, 132, 243]))) == {Vital.SPO2: 100, Vital.HEART_RATE: 90}
    out = PlxContinuousParser().feed(bytes([28, 95, 0, 90, 0, 32, 0, 0, 0, 0, 87, 240]))
    assert values(out) == {Vital.SPO2: 95, Vital.HEART_RATE: 90, Vital.PERFUSION_INDEX: 8.7}
    assert dict(out[0].extra)["measurement_status"] == 0x0020
    full = bytes([31, 222, 243, 202, 243, 202, 243, 90, 245, 212, 243, 178, 242, 32, 1, 0, 0, 0, 122, 227])
    out = PlxContinuousParser().feed(full)
    assert values(out) == {Vital.SPO2: 99, Vital.HEART_RATE: 97, Vital.PERFUSION_INDEX: 8.9}
    extra = dict(out[0].extra)
    assert (extra["spo2_fast"], extra["pr_fast"], extra["spo2_slow"], extra["pr_slow"]) == (97, 137, 98, 69)


def test_spezi_spot_check_vector() -> None:
    data = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    out = PlxSpotCheckParser().feed(data)
    assert values(out) == {Vital.SPO2: 94, Vital.HEART_RATE: 147, Vital.PERFUSION_INDEX: 8.7}
    for m in out:
        assert m.measured_at == datetime(2024, 11, 29, 23, 8, 57, tzinfo=UTC)
        # questionable measurement; equipment malfunction; low perfusion
        assert {Quality.QUESTIONABLE, Quality.SENSOR_FAULT, Quality.LOW_PERFUSION} <= m.flags
