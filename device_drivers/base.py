"""The parser and transport contracts every driver follows.

Parsers are sans-I/O (STYLE.md, zigpy-znp): ``feed(bytes) -> list[Measurement]``. A serial format
buffers partial input and resynchronises on garbage, so any chunking of the same stream gives
the same output. A BLE format takes the bytes of exactly one characteristic value per call.

``feed`` never raises on device bytes. Bad input is counted in :attr:`Parser.stats` (with the
reason) and skipped; special values (IEEE 11073 NaN, Masimo dashes, Nonin 127/511) and values
outside the physiological range yield no measurement and a counted rejection.
"""

from __future__ import annotations

import abc
import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from device_drivers.records import VITALS, Measurement, Quality, Vital, in_physiological_range


class DriverError(Exception):
    """Root of the device layer's exceptions."""


class UnknownFormatError(DriverError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown format {name!r}; known formats: {', '.join(sorted(known))}")
        self.name = name


class TransportError(DriverError):
    """A transport failed to open or lost its device; the session retries with backoff."""


@dataclass(slots=True)
class ParserStats:
    """Counters a parser keeps; the session publishes them in status."""

    bytes_in: int = 0
    frames_ok: int = 0
    bytes_discarded: int = 0
    measurements: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    last_error: str | None = None

    def reject(self, reason: str, detail: str | None = None) -> None:
        self.rejected[reason] += 1
        self.last_error = f"{reason}: {detail}" if detail else reason

    def as_dict(self) -> dict[str, object]:
        return {
            "bytes_in": self.bytes_in,
            "frames_ok": self.frames_ok,
            "bytes_discarded": self.bytes_discarded,
            "measurements": self.measurements,
            "rejected": dict(self.rejected),
            "last_error": self.last_error,
        }


class Parser(abc.ABC):
    """Base of every format parser. Subclasses implement :meth:`_feed`.

    ``format_name`` is the contract name of DESIGN §4; ``kind`` is ``"serial"`` (a stream) or
    ``"ble"`` (one characteristic value per ``feed``).
    """

    format_name: ClassVar[str]
    kind: ClassVar[str]

    def __init__(self) -> None:
        self.stats = ParserStats()

    def feed(self, data: bytes) -> list[Measurement]:
        self.stats.bytes_in += len(data)
        out = self._feed(bytes(data))
        self.stats.measurements += len(out)
        return out

    @abc.abstractmethod
    def _feed(self, data: bytes) -> list[Measurement]: ...

    def emit(
        self,
        out: list[Measurement],
        vital: Vital,
        value: float,
        *,
        measured_at: datetime | None = None,
        flags: Iterable[Quality] = (),
        extra: Iterable[tuple[str, str | int | float | bool]] = (),
    ) -> None:
        """Append a measurement after the physiological-range check (counted when it fails).

        ``value`` must already be in the vital's unit (DESIGN §3); it is rounded to the vital's
        display precision so conversions do not produce 36.99999999.
        """
        spec = VITALS[vital]
        if not in_physiological_range(vital, value):
            self.stats.reject("out_of_range", f"{vital}={value!r}")
            return
        out.append(
            Measurement(
                vital=vital,
                value=round(float(value), spec.decimals + 1),
                unit=spec.unit,
                source_format=self.format_name,
                measured_at=measured_at,
                flags=frozenset(flags),
                extra=tuple(extra),
            )
        )


class ByteSource(Protocol):
    """What a serial-style transport offers a device session (pyserial-like, blocking)."""

    def read(self, size: int) -> bytes:
        """Return up to ``size`` bytes; ``b""`` after the read timeout; raise TransportError on loss."""
        ...

    def write(self, data: bytes) -> int: ...

    def close(self) -> None: ...
