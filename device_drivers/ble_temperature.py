"""Temperature Measurement (0x2A1C) -> body_temp in Cel.

Layout: protocols.md §1.4 (Nordic-BLE-Common `TemperatureMeasurementDataCallback`, Spezi
`TemperatureMeasurement.swift`): flags · temperature FLOAT · [timestamp 7] · [type u8].
Fahrenheit is converted to Celsius. The same layout serves Intermediate Temperature (0x2A1E).
"""

from __future__ import annotations

from typing import ClassVar

from device_drivers.gatt import Cursor, GattParser
from device_drivers.records import Measurement, Vital, fahrenheit_to_celsius

FLAG_FAHRENHEIT = 0x01
FLAG_TIMESTAMP = 0x02
FLAG_TYPE = 0x04

# Temperature Type codes (Nordic `HealthThermometerTypes`, Spezi tests); 0 and >9 reserved.
TEMPERATURE_TYPES = {
    1: "armpit",
    2: "body",
    3: "ear",
    4: "finger",
    5: "gastrointestinal",
    6: "mouth",
    7: "rectum",
    8: "toe",
    9: "tympanum",
}


class TemperatureParser(GattParser):
    format_name: ClassVar[str] = "ble-temperature"
    characteristic: ClassVar[str] = "2a1c"

    def _parse(self, cur: Cursor, out: list[Measurement]) -> None:
        flags = cur.u8()
        raw = cur.float32()
        measured_at = self.timestamp(cur) if flags & FLAG_TIMESTAMP else None
        site = cur.u8() if flags & FLAG_TYPE else None

        extra: list[tuple[str, str | int | float | bool]] = []
        if flags & FLAG_FAHRENHEIT:
            extra.append(("device_unit", "[degF]"))
        if site is not None:
            extra.append(("temperature_type", TEMPERATURE_TYPES.get(site, f"reserved:{site}")))
        value = self.number(raw, "temperature")
        if value is None:
            return
        if flags & FLAG_FAHRENHEIT:
            value = fahrenheit_to_celsius(value)
        self.emit(out, Vital.BODY_TEMP, value, measured_at=measured_at, extra=extra)
