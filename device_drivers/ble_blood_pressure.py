"""Blood Pressure Measurement (0x2A35) -> bp_systolic, bp_diastolic, bp_mean, heart_rate.

Layout: protocols.md §1.3 (Nordic-BLE-Common `BloodPressureMeasurementDataCallback`, Spezi).
flags · systolic SFLOAT · diastolic SFLOAT · MAP SFLOAT · [timestamp 7] · [pulse rate SFLOAT]
· [user id u8] · [measurement status u16]. kPa values are converted to mm[Hg] (KPA_PER_MMHG from
Nordic `BloodPressureTypes`); the pulse rate is in beats/min whatever the unit flag says.
"""

from __future__ import annotations

from typing import ClassVar

from device_drivers.gatt import Cursor, GattParser
from device_drivers.records import KPA_PER_MMHG, Measurement, Quality, Vital

FLAG_KPA = 0x01
FLAG_TIMESTAMP = 0x02
FLAG_PULSE_RATE = 0x04
FLAG_USER_ID = 0x08
FLAG_STATUS = 0x10

# Measurement Status bits (Nordic `BloodPressureTypes.BPMStatus`, protocols.md §1.3).
STATUS_BODY_MOVEMENT = 0x0001
STATUS_CUFF_LOOSE = 0x0002
STATUS_IRREGULAR_PULSE = 0x0004
STATUS_PULSE_RANGE_MASK = 0x0018  # bits 3-4: 0 in range, 1 above upper limit, 2 below lower, 3 reserved
STATUS_IMPROPER_POSITION = 0x0020

PULSE_RANGE = {0: "in_range", 1: "above_upper_limit", 2: "below_lower_limit", 3: "reserved"}
USER_UNKNOWN = 0xFF


def status_flags(status: int) -> set[Quality]:
    flags: set[Quality] = set()
    if status & STATUS_BODY_MOVEMENT:
        flags.add(Quality.DEVICE_ARTEFACT)
    if status & (STATUS_CUFF_LOOSE | STATUS_IMPROPER_POSITION):
        flags.add(Quality.QUESTIONABLE)
    if status & STATUS_IRREGULAR_PULSE:
        flags.add(Quality.IRREGULAR_PULSE)
    return flags


class BloodPressureParser(GattParser):
    format_name: ClassVar[str] = "ble-blood-pressure"
    characteristic: ClassVar[str] = "2a35"

    def _parse(self, cur: Cursor, out: list[Measurement]) -> None:
        flags = cur.u8()
        pressures = (cur.sfloat(), cur.sfloat(), cur.sfloat())
        measured_at = self.timestamp(cur) if flags & FLAG_TIMESTAMP else None
        pulse = cur.sfloat() if flags & FLAG_PULSE_RATE else None
        user = cur.u8() if flags & FLAG_USER_ID else None
        status = cur.u16() if flags & FLAG_STATUS else None

        extra: list[tuple[str, str | int | float | bool]] = []
        quality: set[Quality] = set()
        if flags & FLAG_KPA:
            extra.append(("device_unit", "kPa"))
        if user is not None and user != USER_UNKNOWN:
            extra.append(("user_id", user))
        if status is not None:
            quality = status_flags(status)
            extra.append(("measurement_status", status))
            pulse_range = (status & STATUS_PULSE_RANGE_MASK) >> 3
            if pulse_range:
                extra.append(("pulse_rate_range", PULSE_RANGE[pulse_range]))

        factor = 1.0 / KPA_PER_MMHG if flags & FLAG_KPA else 1.0
        vitals = (Vital.BP_SYSTOLIC, Vital.BP_DIASTOLIC, Vital.BP_MEAN)
        for vital, raw in zip(vitals, pressures, strict=True):
            value = self.number(raw, str(vital))
            if value is not None:
                self.emit(out, vital, value * factor, measured_at=measured_at, flags=quality, extra=extra)
        if pulse is not None:
            rate = self.number(pulse, "pulse_rate")
            if rate is not None:
                hr_flags = quality & {Quality.IRREGULAR_PULSE, Quality.DEVICE_ARTEFACT}
                self.emit(out, Vital.HEART_RATE, rate, measured_at=measured_at, flags=hr_flags, extra=extra)
