"""Heart Rate Measurement (0x2A37) -> heart_rate.

Layout: protocols.md §1.7 (Nordic-BLE-Common `HeartRateMeasurementDataCallback`): flags · HR
(u8, or u16 when bit 0) · [energy expended u16, kJ] · [RR intervals u16 × n, 1/1024 s, to the
end of the value]. RR unit and kJ come from the HRS spec via protocols.md and are marked
partly UNVERIFIED there (the Nordic code does not state the unit); not re-verified here.

Sensor contact "supported but not detected" (bits 1-2 = 2) gives no reading (rejection
``probe_off``): the strap is off the skin. RR intervals go into extra as ``rr_ms``, a
comma-separated string of milliseconds (extra holds scalars only).

Bounds: the value itself is capped at 512 bytes (gatt.MAX_VALUE_LEN, the ATT limit; longer ->
``value_too_long``), so at most 254 RR intervals. Each RR interval must lie in
[:data:`RR_MIN_MS`, :data:`RR_MAX_MS`]; others are dropped from ``rr_ms`` and counted once per
value as ``extra_out_of_range: rr_ms`` (the heart rate itself is kept).
"""

from __future__ import annotations

from typing import ClassVar

from device_drivers.gatt import Cursor, GattParser
from device_drivers.records import Measurement, Vital

FLAG_HR_U16 = 0x01
CONTACT_MASK = 0x06
CONTACT_NOT_DETECTED = 0x04  # bits 1-2 == 2: supported, not detected
CONTACT_DETECTED = 0x06
FLAG_ENERGY = 0x08
FLAG_RR = 0x10

# RR-interval range (decision): 150 ms is below the shortest beat-to-beat interval a heart can
# conduct (HR 350/min, the top of the vital range, is 171 ms); 10 s keeps long sinus pauses,
# which are clinically important, and rejects the u16 garbage up to 64 s.
RR_MIN_MS = 150.0
RR_MAX_MS = 10_000.0


class HeartRateParser(GattParser):
    format_name: ClassVar[str] = "ble-heart-rate"
    characteristic: ClassVar[str] = "2a37"

    def _parse(self, cur: Cursor, out: list[Measurement]) -> None:
        flags = cur.u8()
        rate = cur.u16() if flags & FLAG_HR_U16 else cur.u8()
        energy = cur.u16() if flags & FLAG_ENERGY else None
        rr: list[int] = []
        if flags & FLAG_RR:
            rr.append(cur.u16())  # the flag promises at least one (Nordic rejects `17 01 01`)
            while cur.remaining() >= 2:
                rr.append(cur.u16())

        contact = flags & CONTACT_MASK
        if contact == CONTACT_NOT_DETECTED:
            self.stats.reject("probe_off")
            return
        extra: list[tuple[str, str | int | float | bool]] = []
        if contact == CONTACT_DETECTED:
            extra.append(("sensor_contact", True))
        if energy is not None:
            extra.append(("energy_kj", energy))
        rr_ms = [r * 1000 / 1024 for r in rr]
        kept = [ms for ms in rr_ms if RR_MIN_MS <= ms <= RR_MAX_MS]
        if len(kept) < len(rr_ms):
            self.stats.reject("extra_out_of_range", "rr_ms")
        if kept:
            extra.append(("rr_ms", ",".join(f"{ms:.1f}" for ms in kept)))
        self.emit(out, Vital.HEART_RATE, float(rate), extra=extra)
