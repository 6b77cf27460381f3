"""The parser and transport contracts every driver follows.

Parsers are sans-I/O (STYLE.md, zigpy-znp): ``feed(bytes) -> list[Measurement]``. A serial format
buffers partial input and resynchronises on garbage, so any chunking of the same stream gives
the same output. A BLE format takes the bytes of exactly one characteristic value per call.

``feed`` never raises on device bytes. Bad input is counted in :attr:`Parser.stats` (with the
reason) and skipped; special values (IEEE 11073 NaN, Masimo dashes, Nonin 127/511) and values
outside the physiological range yield no measurement and a counted rejection. Numeric ``extra``
fields with a known range (:data:`EXTRA_RANGES`) are range-checked too: an out-of-range extra is
dropped from the measurement and counted as ``extra_out_of_range``.

Privacy: ``stats.last_error`` is shown in status and printed by ``edge-agent decode``, so it
carries a reason code and at most the *name* of a vital or field (``out_of_range: spo2``), never
a value, an identifier or any other device-supplied text (:meth:`ParserStats.reject` enforces
this with an allow-list of names).
"""

from __future__ import annotations

import abc
import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from device_drivers.records import VITALS, Measurement, Quality, Vital, in_physiological_range

# Ranges for numeric ``extra`` fields, in the unit the parsers put there. Like the vital table they
# catch garbage, not illness. Sources/reasoning: the oximeter "fast"/"slow"/"display" values are
# the same quantities as the vitals (their ranges from records.VITALS); BMI 5-250 kg/m2 and
# height 0.2-2.8 m bracket every living person (a premature newborn to the tallest recorded
# adult); the Masimo rainbow parameters use the manufacturer's display ranges as commonly
# published (SpCO 0-99 %, SpMet 0-99.9 %, SpHb 0-25 g/dL, SpOC 0-35 mL/dL, PVI 0-100 %;
# UNVERIFIED against a Masimo document in this repo), PI delta and the desaturation index
# within +/-100.
_HR = (VITALS[Vital.HEART_RATE].low, VITALS[Vital.HEART_RATE].high)
_SPO2 = (VITALS[Vital.SPO2].low, VITALS[Vital.SPO2].high)
EXTRA_RANGES: dict[str, tuple[float, float]] = {
    "spo2_fast": _SPO2,
    "spo2_slow": _SPO2,
    "spo2_display": _SPO2,
    "pr_fast": _HR,
    "pr_slow": _HR,
    "hr_display": _HR,
    "bmi": (5.0, 250.0),
    "height_m": (0.2, 2.8),
    "spco": (0.0, 99.0),
    "spmet": (0.0, 99.9),
    "sphb": (0.0, 25.0),
    "spoc": (0.0, 35.0),
    "pvi": (0.0, 100.0),
    "pidelta": (-100.0, 100.0),
    "desat": (0.0, 100.0),
}

# Names a rejection may carry in ``last_error`` (besides the reason code): vital names, the
# range-checked extras and the field names parsers use for special values. Anything else a
# parser passes is dropped, so a device-supplied string can never reach status or logs.
DETAIL_NAMES: frozenset[str] = frozenset(
    {str(v) for v in Vital}
    | set(EXTRA_RANGES)
    | {"rr_ms", "pulse_rate", "temperature", "pulse_amplitude_index", "glucose", "body_weight"}
)


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

    def reject(self, reason: str, what: str | None = None) -> None:
        """Count one rejection. ``what`` names the vital or field concerned; it is kept in
        ``last_error`` only when it is one of :data:`DETAIL_NAMES` (never a value or device text)."""
        self.rejected[reason] += 1
        self.last_error = f"{reason}: {what}" if what is not None and what in DETAIL_NAMES else reason

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
    # Stream parsers keep their input in ``self.buffer_type()``: a seam for tests that count the
    # work a parser does (a bytearray subclass counting the bytes each ``find`` scans), so a
    # super-linear resynchronisation fails a deterministic work budget instead of a stopwatch.
    buffer_type: ClassVar[type[bytearray]] = bytearray

    def __init__(self) -> None:
        self.stats = ParserStats()
        self._extras_counted: set[str] = set()

    def feed(self, data: bytes) -> list[Measurement]:
        self.stats.bytes_in += len(data)
        self._extras_counted.clear()
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
            self.stats.reject("out_of_range", str(vital))
            return
        out.append(
            Measurement(
                vital=vital,
                value=round(float(value), spec.decimals + 1),
                unit=spec.unit,
                source_format=self.format_name,
                measured_at=measured_at,
                flags=frozenset(flags),
                extra=self._checked_extra(extra),
            )
        )

    def _checked_extra(
        self, extra: Iterable[tuple[str, str | int | float | bool]]
    ) -> tuple[tuple[str, str | int | float | bool], ...]:
        """``extra`` without numeric fields outside :data:`EXTRA_RANGES`; each dropped field is
        counted once per ``feed`` (several vitals of one frame share the same extras)."""
        kept: list[tuple[str, str | int | float | bool]] = []
        for key, value in extra:
            bounds = EXTRA_RANGES.get(key)
            number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
            if bounds is not None and number is not None and not (bounds[0] <= number <= bounds[1]):
                if key not in self._extras_counted:
                    self._extras_counted.add(key)
                    self.stats.reject("extra_out_of_range", key)
                continue
            kept.append((key, value))
        return tuple(kept)


class ByteSource(Protocol):
    """What a serial-style transport offers a device session (pyserial-like, blocking)."""

    def read(self, size: int) -> bytes:
        """Return up to ``size`` bytes; ``b""`` after the read timeout; raise TransportError on loss."""
        ...

    def write(self, data: bytes) -> int: ...

    def close(self) -> None: ...
