"""Glucose Measurement (0x2A18) -> glucose in mmol/L.

Layout: protocols.md §1.9 (Nordic-BLE-Common `GlucoseMeasurementDataCallback`): flags ·
sequence number u16 · base time (7) · [time offset s16, minutes] · [concentration SFLOAT ·
type/location u8] · [sensor status annunciation u16]. Minimum length 10.

Units on the wire are kg/L (flag bit 2 clear) or mol/L (set). kg/L × 100 000 = mg/dL, then
÷ MG_DL_PER_MMOL_L (18.016, DESIGN §3; Nordic uses 18.2, protocols.md §1.9); mol/L × 1000 =
mmol/L.

Decisions: a control-solution result (type 10 or location 4) is not a patient value: no
reading, rejection ``control_solution``. A result the meter flags as below/above what it can
process (status bits 5/6, "LO"/"HI") is kept with DEVICE_ALARM and ``result_range`` in extra,
because a HI glucose matters clinically; other status bits become quality flags. The
sequence number goes into extra (the BLE link uses it to deduplicate RACP replays).
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from device_drivers.gatt import Cursor, GattParser
from device_drivers.records import MG_DL_PER_MMOL_L, Measurement, Quality, Vital

FLAG_TIME_OFFSET = 0x01
FLAG_CONCENTRATION = 0x02
FLAG_MOL_PER_L = 0x04
FLAG_STATUS = 0x08
FLAG_CONTEXT_FOLLOWS = 0x10

SAMPLE_TYPES = {
    1: "capillary_whole_blood",
    2: "capillary_plasma",
    3: "venous_whole_blood",
    4: "venous_plasma",
    5: "arterial_whole_blood",
    6: "arterial_plasma",
    7: "undetermined_whole_blood",
    8: "undetermined_plasma",
    9: "interstitial_fluid",
    10: "control_solution",
}
SAMPLE_LOCATIONS = {
    1: "finger",
    2: "alternate_site",
    3: "earlobe",
    4: "control_solution",
    5: "subcutaneous_tissue",
    15: "not_available",
}
TYPE_CONTROL = 10
LOCATION_CONTROL = 4

# Sensor Status Annunciation bits (Nordic `GlucoseStatus`, protocols.md §1.9)
ST_BATTERY_LOW = 1 << 0
ST_SENSOR_MALFUNCTION = 1 << 1
ST_SAMPLE_INSUFFICIENT = 1 << 2
ST_STRIP_INSERTION = 1 << 3
ST_STRIP_TYPE = 1 << 4
ST_RESULT_LOW = 1 << 5
ST_RESULT_HIGH = 1 << 6
ST_TEMP_HIGH = 1 << 7
ST_TEMP_LOW = 1 << 8
ST_READ_INTERRUPTED = 1 << 9
ST_DEVICE_FAULT = 1 << 10
ST_TIME_FAULT = 1 << 11

MG_DL_PER_KG_L = 100_000.0
MMOL_PER_MOL = 1000.0


def status_flags(status: int) -> set[Quality]:
    flags: set[Quality] = set()
    if status & (ST_SENSOR_MALFUNCTION | ST_DEVICE_FAULT | ST_STRIP_TYPE):
        flags.add(Quality.SENSOR_FAULT)
    if status & (ST_SAMPLE_INSUFFICIENT | ST_STRIP_INSERTION | ST_TEMP_HIGH | ST_TEMP_LOW | ST_READ_INTERRUPTED):
        flags.add(Quality.QUESTIONABLE)
    if status & (ST_RESULT_LOW | ST_RESULT_HIGH):
        flags.add(Quality.DEVICE_ALARM)
    return flags


class GlucoseParser(GattParser):
    format_name: ClassVar[str] = "ble-glucose"
    characteristic: ClassVar[str] = "2a18"

    def _parse(self, cur: Cursor, out: list[Measurement]) -> None:
        flags = cur.u8()
        sequence = cur.u16()
        base_time = self.timestamp(cur)
        offset = cur.s16() if flags & FLAG_TIME_OFFSET else None
        conc = None
        type_location = None
        if flags & FLAG_CONCENTRATION:
            conc = cur.sfloat()
            type_location = cur.u8()
        status = cur.u16() if flags & FLAG_STATUS else None

        if conc is None:
            self.stats.reject("no_concentration")
            return
        measured_at = base_time
        if measured_at is not None and offset is not None:
            try:
                measured_at = measured_at + timedelta(minutes=offset)
            except OverflowError:  # as for a bad base time: receive time, clock_unsynced
                self.stats.reject("bad_timestamp")
                measured_at = None
        extra: list[tuple[str, str | int | float | bool]] = [("sequence_number", sequence)]
        quality: set[Quality] = set()
        if type_location is not None:
            sample_type, location = type_location & 0x0F, type_location >> 4
            if sample_type == TYPE_CONTROL or location == LOCATION_CONTROL:
                self.stats.reject("control_solution")
                return
            extra.append(("sample_type", SAMPLE_TYPES.get(sample_type, f"reserved:{sample_type}")))
            extra.append(("sample_location", SAMPLE_LOCATIONS.get(location, f"reserved:{location}")))
        if status is not None:
            quality = status_flags(status)
            extra.append(("sensor_status", status))
            if status & ST_RESULT_LOW:
                extra.append(("result_range", "below_device_range"))
            elif status & ST_RESULT_HIGH:
                extra.append(("result_range", "above_device_range"))
            if status & ST_TIME_FAULT:
                measured_at = None
        if flags & FLAG_CONTEXT_FOLLOWS:
            extra.append(("context_follows", True))
        value = self.number(conc, "glucose")
        if value is None:
            return
        if flags & FLAG_MOL_PER_L:
            mmol = value * MMOL_PER_MOL
            extra.append(("device_unit", "mol/L"))
        else:
            mmol = value * MG_DL_PER_KG_L / MG_DL_PER_MMOL_L
            extra.append(("device_unit", "kg/L"))
        self.emit(out, Vital.GLUCOSE, mmol, measured_at=measured_at, flags=quality, extra=extra)
