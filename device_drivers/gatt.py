"""Shared machinery for the BLE (GATT) measurement parsers.

Every measurement characteristic starts with a flags byte, then fixed fields, then optional
fields whose presence the flags announce, in a fixed order (protocols.md §1.0). A parser walks
the value with a :class:`Cursor` that checks the remaining length before each field; a short
value raises :class:`Truncated`, which :class:`GattParser` turns into a counted rejection.
Trailing bytes after the last announced field are ignored (newer spec revisions append fields).

A value longer than :data:`MAX_VALUE_LEN` cannot be one characteristic value (the ATT protocol
caps an attribute value at 512 octets, and a notification or indication carries at most
ATT_MTU - 3 <= 514 of them): it is rejected whole (``value_too_long``) before parsing, which
also bounds the variable-length tails (the Heart Rate RR-interval list).
"""

from __future__ import annotations

import abc
from datetime import UTC, datetime, tzinfo
from typing import ClassVar

from device_drivers.base import Parser
from device_drivers.ieee11073 import SpecialValue, decode_date_time, decode_float, decode_sfloat
from device_drivers.records import Measurement

# Bluetooth Core spec, ATT: "the maximum length of an attribute value shall be 512 octets"
# (Vol 3, Part F, 3.2.9; from general knowledge of the spec, not in protocols.md).
MAX_VALUE_LEN = 512


class Truncated(Exception):
    """The value ended before a field its flags announced."""


class Cursor:
    """Little-endian reader over one characteristic value."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise Truncated(f"need {n} bytes at offset {self.pos}, have {len(self.data) - self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def s16(self) -> int:
        return int.from_bytes(self.take(2), "little", signed=True)

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "little")

    def sfloat(self) -> float | SpecialValue:
        return decode_sfloat(self.u16())

    def float32(self) -> float | SpecialValue:
        return decode_float(int.from_bytes(self.take(4), "little"))

    def remaining(self) -> int:
        return len(self.data) - self.pos


class GattParser(Parser):
    """Base for parsers that take exactly one characteristic value per ``feed``.

    ``device_tz`` is the zone of the device's clock for formats that carry a Date Time; the BLE
    link writes Current Time in the same zone (UTC by default), so the default is right for
    devices this gateway set. Subclasses implement :meth:`_parse`.
    """

    kind: ClassVar[str] = "ble"
    characteristic: ClassVar[str]  # 16-bit UUID as 4 hex digits

    def __init__(self, device_tz: tzinfo = UTC) -> None:
        super().__init__()
        self.device_tz = device_tz

    def _feed(self, data: bytes) -> list[Measurement]:
        out: list[Measurement] = []
        if not data:
            self.stats.reject("empty")
            return out
        if len(data) > MAX_VALUE_LEN:
            self.stats.reject("value_too_long")
            return out
        try:
            self._parse(Cursor(data), out)
        except Truncated:
            self.stats.reject("truncated")
            return []
        self.stats.frames_ok += 1
        return out

    @abc.abstractmethod
    def _parse(self, cur: Cursor, out: list[Measurement]) -> None: ...

    # helpers ----------------------------------------------------------------------------------

    def number(self, value: float | SpecialValue, what: str) -> float | None:
        """Return the number, or count the special value and return None."""
        if isinstance(value, SpecialValue):
            self.stats.reject(f"special_value:{value}", what)
            return None
        return value

    def timestamp(self, cur: Cursor) -> datetime | None:
        field = decode_date_time(cur.take(7), self.device_tz)
        if not field.valid:  # impossible or out-of-calendar date: receive time, clock_unsynced
            self.stats.reject("bad_timestamp")
        return field.value
