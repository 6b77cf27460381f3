"""PLX Spot-check Measurement (0x2A5E) -> spo2, heart_rate, perfusion_index.

Layout: protocols.md §1.5 (Spezi `PLXSpotCheckMeasurement.swift`): flags · SpO2 SFLOAT · PR
SFLOAT · [timestamp 7] · [measurement status u16] · [device and sensor status u24] · [pulse
amplitude index SFLOAT]. Bit 0 is the timestamp here (not "fast set": bluetooth-sig-python's
table is wrong, protocols.md §1.5). Flag bit 4 "device clock not set" discards the timestamp.

The Pulse Amplitude Index (%) is reported as ``perfusion_index``: it is the PLX profile's name
for the same pulse-amplitude ratio oximeters show as PI (our mapping; the vital carries
``("pi_source", "plx_pai")`` in extra so the origin stays visible).
"""

from __future__ import annotations

from typing import ClassVar

from device_drivers.gatt import Cursor, GattParser
from device_drivers.plx_status import judge
from device_drivers.records import Measurement, Vital

FLAG_TIMESTAMP = 0x01
FLAG_MEASUREMENT_STATUS = 0x02
FLAG_DEVICE_STATUS = 0x04
FLAG_PAI = 0x08
FLAG_CLOCK_NOT_SET = 0x10


class PlxSpotCheckParser(GattParser):
    format_name: ClassVar[str] = "ble-plx-spot"
    characteristic: ClassVar[str] = "2a5e"

    def _parse(self, cur: Cursor, out: list[Measurement]) -> None:
        flags = cur.u8()
        spo2, pr = cur.sfloat(), cur.sfloat()
        measured_at = self.timestamp(cur) if flags & FLAG_TIMESTAMP else None
        ms = cur.u16() if flags & FLAG_MEASUREMENT_STATUS else None
        ds = cur.u24() if flags & FLAG_DEVICE_STATUS else None
        pai = cur.sfloat() if flags & FLAG_PAI else None
        if flags & FLAG_CLOCK_NOT_SET:
            measured_at = None

        verdict = judge(ms, ds)
        if verdict.reject is not None:
            self.stats.reject(verdict.reject)
            return
        extra: list[tuple[str, str | int | float | bool]] = []
        if ms is not None:
            extra.append(("measurement_status", ms))
        if ds is not None:
            extra.append(("device_sensor_status", ds))
        for vital, raw in ((Vital.SPO2, spo2), (Vital.HEART_RATE, pr)):
            value = self.number(raw, str(vital))
            if value is not None:
                self.emit(out, vital, value, measured_at=measured_at, flags=verdict.flags, extra=extra)
        if pai is not None:
            value = self.number(pai, "pulse_amplitude_index")
            if value is not None:
                self.emit(
                    out,
                    Vital.PERFUSION_INDEX,
                    value,
                    measured_at=measured_at,
                    flags=verdict.flags,
                    extra=[*extra, ("pi_source", "plx_pai")],
                )
