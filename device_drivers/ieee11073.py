"""IEEE 11073-20601 numeric types (SFLOAT, FLOAT) and the GATT 7-byte Date Time.

Sources (reference/protocols.md §1.0, §1.2): HL7-PHD `MderFLOATsandSFLOATs.md` for the layout
and the special values; NXP-11073 and Nordic/Zephyr `sfloat.h` agree for SFLOAT. NXP's 32-bit
special constants are wrong (protocols.md §1.2 caution); the HL7-PHD ones are used here.

A special value (NaN, NRes, ±INFINITY, reserved) is never turned into a number: the decoders
return a :class:`SpecialValue`, and parsers turn that into a counted rejection
``special_value:<name>`` and no reading (HL7-PHD: leave the value empty, give a reason).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo


class SpecialValue(enum.StrEnum):
    NAN = "nan"
    NRES = "nres"
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"
    RESERVED = "reserved"


# Raw integer (after little-endian read) -> meaning. HL7-PHD table, protocols.md §1.2.
SFLOAT_SPECIAL: dict[int, SpecialValue] = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}
FLOAT_SPECIAL: dict[int, SpecialValue] = {
    0x007FFFFF: SpecialValue.NAN,
    0x00800000: SpecialValue.NRES,
    0x007FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x00800002: SpecialValue.NEGATIVE_INFINITY,
    0x00800001: SpecialValue.RESERVED,
}


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _scale(mantissa: int, exponent: int) -> float:
    # mantissa * 10**exponent without binary drift for negative exponents (0xF014 -> 2.0, not
    # 2.0000000000000004): divide by an exact power of ten instead of multiplying by 0.1**n.
    if exponent >= 0:
        return float(mantissa * 10**exponent)
    divisor: int = 10 ** (-exponent)
    return mantissa / divisor


def decode_sfloat(raw: int) -> float | SpecialValue:
    """16-bit SFLOAT: exponent = signed bits 15..12, mantissa = signed bits 11..0."""
    raw &= 0xFFFF
    special = SFLOAT_SPECIAL.get(raw)
    if special is not None:
        return special
    return _scale(_signed(raw & 0x0FFF, 12), _signed(raw >> 12, 4))


def decode_float(raw: int) -> float | SpecialValue:
    """32-bit FLOAT: exponent = signed bits 31..24, mantissa = signed bits 23..0."""
    raw &= 0xFFFFFFFF
    special = FLOAT_SPECIAL.get(raw)
    if special is not None:
        return special
    return _scale(_signed(raw & 0xFFFFFF, 24), _signed(raw >> 24, 8))


@dataclass(frozen=True, slots=True)
class DateTimeField:
    """A decoded Date Time: ``value`` is None when the device says "not known" or sends an
    impossible date; ``valid`` is False only for the impossible case (worth counting)."""

    value: datetime | None
    valid: bool


def decode_date_time(data: bytes, tz: tzinfo = UTC) -> DateTimeField:
    """7-byte Date Time (year u16 LE, month, day, hours, minutes, seconds); protocols.md §1.0.

    Year 0, month 0 or day 0 mean "not known" (Nordic BP test) -> ``value`` None, ``valid`` True.
    ``tz`` is the zone the device clock runs in (the BLE link sets it via Current Time); the
    result is converted to UTC.

    A date the calendar cannot hold (month 13, 31 February, hour 24) and a date that leaves the
    calendar once shifted to UTC (0001-01-01 00:00 in Asia/Ho_Chi_Minh is year 0 in UTC;
    9999-12-31 late in a zone behind UTC is year 10000) are both ``value`` None, ``valid``
    False: never an exception. Decision (what a clinician needs): such a date is a fault of the
    device's *clock*, not of the measurement, so the parsers keep the value, count
    ``bad_timestamp`` and let the session stamp the gateway's receive time with the
    ``clock_unsynced`` flag, the same as for a device without a clock. Dropping the reading
    would lose a valid blood pressure or glucose value because a clock battery is flat; the
    flag keeps anyone from trusting its time, and the count tells the technician to set the
    device's clock.
    """
    if len(data) != 7:
        raise ValueError("Date Time is 7 bytes")
    year = data[0] | (data[1] << 8)
    month, day, hour, minute, second = data[2], data[3], data[4], data[5], data[6]
    if year == 0 or month == 0 or day == 0:
        return DateTimeField(None, True)
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=tz)
        return DateTimeField(local.astimezone(UTC), True)
    except (ValueError, OverflowError):
        return DateTimeField(None, False)
