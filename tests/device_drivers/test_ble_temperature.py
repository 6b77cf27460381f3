"""ble-temperature (0x2A1C): protocols.md §1.4 examples, Nordic FLOAT example, options, specials."""

import itertools
from datetime import UTC, datetime

import pytest

from device_drivers import encoders as enc
from device_drivers.ble_temperature import TemperatureParser
from device_drivers.records import Vital


@pytest.mark.parametrize(
    ("hexs", "celsius"),
    [("01 DA 03 00 FF", 37.0), ("00 77 01 00 FF", 37.5), ("00 B0 0E 00 FE", 37.6)],
)
def test_protocols_examples(hexs: str, celsius: float) -> None:
    (m,) = TemperatureParser().feed(bytes.fromhex(hexs))
    assert m.vital is Vital.BODY_TEMP and m.value == celsius and m.unit == "Cel"


@pytest.mark.parametrize("special", ["FF FF 7F 00", "00 00 80 00", "FE FF 7F 00", "02 00 80 00", "01 00 80 00"])
def test_special_values(special: str) -> None:
    p = TemperatureParser()
    assert p.feed(bytes.fromhex("00 " + special)) == []
    assert sum(v for k, v in p.stats.rejected.items() if k.startswith("special_value:")) == 1


@pytest.mark.parametrize("fahrenheit,ts,kind", list(itertools.product([False, True], repeat=3)))
def test_options(fahrenheit: bool, ts: bool, kind: bool) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    raw = enc.temperature(
        100.4 if fahrenheit else 38.0,
        fahrenheit=fahrenheit,
        timestamp=when if ts else False,
        temp_type=9 if kind else None,
    )
    (m,) = TemperatureParser().feed(raw)
    assert m.value == 38.0
    assert m.measured_at == (when if ts else None)
    assert (("temperature_type", "tympanum") in m.extra) == kind


def test_reserved_type_and_out_of_range() -> None:
    (m,) = TemperatureParser().feed(enc.temperature(36.6, temp_type=0))
    assert ("temperature_type", "reserved:0") in m.extra
    p = TemperatureParser()
    assert p.feed(enc.temperature(20.0)) == [] and p.stats.rejected["out_of_range"] == 1
