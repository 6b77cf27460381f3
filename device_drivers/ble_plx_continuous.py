"""PLX Continuous Measurement (0x2A5F) -> spo2, heart_rate, perfusion_index.

Layout: protocols.md §1.6 (Spezi `PLXContinuousMeasurement.swift`): flags · SpO2PR-Normal
(SpO2, PR SFLOAT) · [SpO2PR-Fast] · [SpO2PR-Slow] · [measurement status u16] · [device and
sensor status u24] · [pulse amplitude index SFLOAT]. No timestamp.

Decision: the Normal set gives the readings; the Fast and Slow sets go into ``extra``
(``spo2_fast``, ``pr_fast``, ``spo2_slow``, ``pr_slow``; omitted when special values) so the
store sees one reading per vital per notification. PAI -> perfusion_index as in spot-check.
The Fast/Slow values are range-checked like the vitals (base.EXTRA_RANGES); out of range ->
dropped from extra, counted ``extra_out_of_range``.
"""

from __future__ import annotations

from typing import ClassVar

from device_drivers.gatt import Cursor, GattParser
from device_drivers.ieee11073 import SpecialValue
from device_drivers.plx_status import judge
from device_drivers.records import Measurement, Vital

FLAG_FAST = 0x01
FLAG_SLOW = 0x02
FLAG_MEASUREMENT_STATUS = 0x04
FLAG_DEVICE_STATUS = 0x08
FLAG_PAI = 0x10


class PlxContinuousParser(GattParser):
    format_name: ClassVar[str] = "ble-plx-continuous"
    characteristic: ClassVar[str] = "2a5f"

    def _parse(self, cur: Cursor, out: list[Measurement]) -> None:
        flags = cur.u8()
        spo2, pr = cur.sfloat(), cur.sfloat()
        fast = (cur.sfloat(), cur.sfloat()) if flags & FLAG_FAST else None
        slow = (cur.sfloat(), cur.sfloat()) if flags & FLAG_SLOW else None
        ms = cur.u16() if flags & FLAG_MEASUREMENT_STATUS else None
        ds = cur.u24() if flags & FLAG_DEVICE_STATUS else None
        pai = cur.sfloat() if flags & FLAG_PAI else None

        verdict = judge(ms, ds)
        if verdict.reject is not None:
            self.stats.reject(verdict.reject)
            return
        extra: list[tuple[str, str | int | float | bool]] = []
        for name, pair in (("fast", fast), ("slow", slow)):
            if pair is None:
                continue
            for key, raw in zip((f"spo2_{name}", f"pr_{name}"), pair, strict=True):
                if not isinstance(raw, SpecialValue):
                    extra.append((key, raw))
        if ms is not None:
            extra.append(("measurement_status", ms))
        if ds is not None:
            extra.append(("device_sensor_status", ds))
        for vital, raw in ((Vital.SPO2, spo2), (Vital.HEART_RATE, pr)):
            value = self.number(raw, str(vital))
            if value is not None:
                self.emit(out, vital, value, flags=verdict.flags, extra=extra)
        if pai is not None:
            value = self.number(pai, "pulse_amplitude_index")
            if value is not None:
                self.emit(
                    out,
                    Vital.PERFUSION_INDEX,
                    value,
                    flags=verdict.flags,
                    extra=[*extra, ("pi_source", "plx_pai")],
                )
