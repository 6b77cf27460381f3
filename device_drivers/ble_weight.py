"""Weight Measurement (0x2A9D) -> body_weight in kg.

Layout: protocols.md §1.8 (Spezi `WeightMeasurement.swift`): flags · weight u16 · [timestamp 7]
· [user id u8] · [BMI u16 0.1 kg/m² · height u16] (bit 3 announces BMI and height together;
bluetooth-sig-python's separate height flag is wrong, protocols.md §1.8). Weight 0xFFFF is
"measurement unsuccessful" (no reading, rejection ``measurement_unsuccessful``). BMI and height
are range-checked like every extra (base.EXTRA_RANGES: 5-250 kg/m², 0.2-2.8 m); a scale that
sends 0 for an unset height loses the field, counted ``extra_out_of_range``.

Resolution: the Weight Scale Feature (0x2A9E) may select a coarser step; pass the decoded
feature value (or explicit steps) to the constructor. Without it the defaults are 0.005 kg /
0.01 lb per count and 0.001 m / 0.1 in for height (Spezi docs). The Feature bit layout (bits
3-6 weight resolution codes 1-7 = 0.5/0.2/0.1/0.05/0.02/0.01/0.005 kg or 1/0.5/0.2/0.1/0.05/
0.02/0.01 lb; bits 7-9 height resolution codes 1-3 = 0.01/0.005/0.001 m or 1/0.5/0.1 in):
checked with the search tool against ENGAGE-HF (Spezi-based) `WeightMeasurementResolution`
and RonanB96/bluetooth-sig-python `weight_scale_feature.py`, which agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import ClassVar

from device_drivers.gatt import Cursor, GattParser
from device_drivers.records import KG_PER_LB, Measurement, Vital

FLAG_IMPERIAL = 0x01
FLAG_TIMESTAMP = 0x02
FLAG_USER_ID = 0x04
FLAG_BMI_HEIGHT = 0x08
WEIGHT_UNSUCCESSFUL = 0xFFFF
USER_UNKNOWN = 0xFF

# Weight Scale Feature resolution codes -> (kg per count, lb per count); 0 = not specified.
WEIGHT_RESOLUTIONS: dict[int, tuple[float, float]] = {
    0: (0.005, 0.01),
    1: (0.5, 1.0),
    2: (0.2, 0.5),
    3: (0.1, 0.2),
    4: (0.05, 0.1),
    5: (0.02, 0.05),
    6: (0.01, 0.02),
    7: (0.005, 0.01),
}
# height resolution codes -> (m per count, in per count)
HEIGHT_RESOLUTIONS: dict[int, tuple[float, float]] = {
    0: (0.001, 0.1),
    1: (0.01, 1.0),
    2: (0.005, 0.5),
    3: (0.001, 0.1),
}


@dataclass(frozen=True, slots=True)
class WeightResolution:
    kg: float = 0.005
    lb: float = 0.01
    m: float = 0.001
    inch: float = 0.1

    @classmethod
    def from_feature(cls, feature: int) -> WeightResolution:
        """Decode the Weight Scale Feature (u32) value read from 0x2A9E."""
        kg, lb = WEIGHT_RESOLUTIONS.get((feature >> 3) & 0x0F, WEIGHT_RESOLUTIONS[0])
        m, inch = HEIGHT_RESOLUTIONS.get((feature >> 7) & 0x07, HEIGHT_RESOLUTIONS[0])
        return cls(kg=kg, lb=lb, m=m, inch=inch)


class WeightParser(GattParser):
    format_name: ClassVar[str] = "ble-weight"
    characteristic: ClassVar[str] = "2a9d"

    def __init__(self, resolution: WeightResolution | None = None, device_tz: tzinfo = UTC) -> None:
        super().__init__(device_tz)
        self.resolution = resolution or WeightResolution()

    def _parse(self, cur: Cursor, out: list[Measurement]) -> None:
        flags = cur.u8()
        raw = cur.u16()
        measured_at = self.timestamp(cur) if flags & FLAG_TIMESTAMP else None
        user = cur.u8() if flags & FLAG_USER_ID else None
        bmi_height = None
        if flags & FLAG_BMI_HEIGHT and raw != WEIGHT_UNSUCCESSFUL:
            bmi_height = (cur.u16(), cur.u16())
        if raw == WEIGHT_UNSUCCESSFUL:
            self.stats.reject("measurement_unsuccessful")
            return

        imperial = bool(flags & FLAG_IMPERIAL)
        res = self.resolution
        kg = raw * res.lb * KG_PER_LB if imperial else raw * res.kg
        extra: list[tuple[str, str | int | float | bool]] = []
        if imperial:
            extra.append(("device_unit", "[lb_av]"))
        if user is not None and user != USER_UNKNOWN:
            extra.append(("user_id", user))
        if bmi_height is not None:
            bmi, height = bmi_height
            extra.append(("bmi", round(bmi * 0.1, 1)))
            height_m = height * res.inch * 0.0254 if imperial else height * res.m
            extra.append(("height_m", round(height_m, 3)))
        self.emit(out, Vital.BODY_WEIGHT, kg, measured_at=measured_at, extra=extra)
