"""ble-weight (0x2A9D): protocols.md §1.8, resolutions from the Weight Scale Feature."""

import itertools
from datetime import UTC, datetime

import pytest

from device_drivers import encoders as enc
from device_drivers.ble_weight import WeightParser, WeightResolution
from device_drivers.records import KG_PER_LB, Vital


def test_protocols_example() -> None:
    (m,) = WeightParser().feed(bytes.fromhex("00 B0 36"))
    assert m.vital is Vital.BODY_WEIGHT and m.value == 70.0 and m.unit == "kg"


def test_imperial_to_kg() -> None:
    (m,) = WeightParser().feed(enc.weight(15432, imperial=True))  # 154.32 lb
    assert m.value == pytest.approx(154.32 * KG_PER_LB, abs=0.005)


def test_unsuccessful_measurement() -> None:
    p = WeightParser()
    assert p.feed(bytes.fromhex("00 FF FF")) == []
    assert p.feed(bytes.fromhex("0E FF FF") + bytes(7) + b"\x01") == []  # ts + user, no BMI
    assert p.stats.rejected["measurement_unsuccessful"] == 2


@pytest.mark.parametrize("imperial,ts,user,bmi", list(itertools.product([False, True], repeat=4)))
def test_every_option(imperial: bool, ts: bool, user: bool, bmi: bool) -> None:
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    raw = enc.weight(
        6500 if imperial else 13000,
        imperial=imperial,
        timestamp=when if ts else False,
        user_id=2 if user else None,
        bmi_height=(224, 1700 if not imperial else 669) if bmi else None,
    )
    (m,) = WeightParser().feed(raw)
    assert m.value == pytest.approx(65 * KG_PER_LB if imperial else 65.0, abs=0.01)
    assert m.measured_at == (when if ts else None)
    extra = dict(m.extra)
    assert extra.get("user_id") == (2 if user else None)
    if bmi:
        assert extra["bmi"] == 22.4
        assert extra["height_m"] == pytest.approx(1.7, abs=0.001)


def test_feature_resolution() -> None:
    res = WeightResolution.from_feature((4 << 3) | (1 << 7))  # 0.05 kg / 0.1 lb; 0.01 m / 1 in
    assert (res.kg, res.lb, res.m, res.inch) == (0.05, 0.1, 0.01, 1.0)
    (m,) = WeightParser(resolution=res).feed(enc.weight(1400, bmi_height=(220, 175)))
    assert m.value == 70.0 and dict(m.extra)["height_m"] == 1.75
    assert WeightResolution.from_feature(0) == WeightResolution()
