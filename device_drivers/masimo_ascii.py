"""Masimo Rad-8 / Radical-5 / Radical-7 "ASCII 1" serial output (reference/protocols.md §2.1).

One line per second: ``MM/DD/YY HH:MM:SS`` then space-separated ``LABEL=value`` tokens, ending
in CR LF (either order accepted; sources: MDPnP-Radical, masimo-datacapture). Fields are parsed
by label, never by position, because the order differs between firmware variants. Missing
values are dashes filling the field width (``SPO2=---%``, ``PI=--.--%``); any ``-`` in a value
other than a leading sign means "unavailable" (MDPnP-Radical checks the 2nd character).

The device clock has no time zone and is set by hand on the front panel, so the line's time is
kept in ``extra`` (``device_time``) and ``measured_at`` is left to the gateway's receive time
(flagged ``clock_unsynced``): a wrong device clock must never reorder a patient's readings.

EXC (exception) bits, Rad-8 manual trend-format page and MDPnP-Radical (low 12 bits agree):
0x001 no sensor, 0x002 defective sensor, 0x004 low perfusion, 0x008 pulse search,
0x010 interference, 0x020 sensor off, 0x040 ambient light, 0x080 unrecognised sensor,
0x400 low signal IQ, 0x800 "Masimo SET" (normal). ALARM bits 0-5 (both public decodes agree):
SpO2 high, SpO2 low, BPM high, BPM low, alarm active, alarm silenced. ALARM is advisory.

Work is linear in the input: the search for a line end starts where the previous feed stopped
(``_scanned``), so a stream without line ends fed byte by byte costs one byte each, not a
512-byte rescan each; the resynchronisation inside one line is bounded by ``MAX_LINE``. The
numeric extras (SpCO, SpMet, PVI...) are range-checked (base.EXTRA_RANGES) and the serial
number is cut to 32 characters.
"""

from __future__ import annotations

import re

from device_drivers.base import Parser
from device_drivers.records import Measurement, Quality, Vital

MAX_LINE = 512  # real lines are ~100-200 bytes; anything longer is garbage and is discarded

EXC_NO_SENSOR = 0x001
EXC_DEFECTIVE_SENSOR = 0x002
EXC_LOW_PERFUSION = 0x004
EXC_PULSE_SEARCH = 0x008
EXC_INTERFERENCE = 0x010
EXC_SENSOR_OFF = 0x020
EXC_AMBIENT_LIGHT = 0x040
EXC_UNRECOGNISED_SENSOR = 0x080
EXC_LOW_SIGNAL_IQ = 0x400

# No value can be trusted while the probe is off or the sensor is missing or broken.
_EXC_NO_DATA = EXC_NO_SENSOR | EXC_DEFECTIVE_SENSOR | EXC_SENSOR_OFF | EXC_UNRECOGNISED_SENSOR
# Values are present but the signal is unreliable.
_EXC_ARTEFACT = EXC_PULSE_SEARCH | EXC_INTERFERENCE | EXC_AMBIENT_LIGHT | EXC_LOW_SIGNAL_IQ

_ALARM_ACTIVE = 0x0010

_LINE_RE = re.compile(rb"^(?P<date>\d\d/\d\d/\d\d) (?P<time>\d\d:\d\d:\d\d)(?P<fields>(?: +[A-Z][A-Z0-9]*=[^ ]*)+) *$")
_NUMBER_RE = re.compile(r"^[+-]?\d+(?:\.\d+)?$")

# label -> vital for the values we store; the rest go to extra as text.
_VITAL_FIELDS: dict[str, Vital] = {
    "SPO2": Vital.SPO2,
    "BPM": Vital.HEART_RATE,
    "PI": Vital.PERFUSION_INDEX,
}
_EXTRA_FIELDS = ("SN", "SPCO", "SPMET", "SPHB", "SPOC", "DESAT", "PIDELTA", "PVI")


def _value(raw: str) -> float | None:
    """A field's number, or None when it is dashed (unavailable) or not a number."""
    text = raw.rstrip("%")
    if not text or "-" in text[1:] or text == "-":
        return None
    if not _NUMBER_RE.match(text):
        return None
    return float(text)


class MasimoAsciiParser(Parser):
    format_name = "masimo-ascii"
    kind = "serial"

    def __init__(self) -> None:
        super().__init__()
        self._buf = self.buffer_type()
        self._scanned = 0  # no CR or LF in _buf[:_scanned]

    def _line_end(self) -> int:
        """Index of the first CR or LF in the buffer at or after ``_scanned``, or -1.

        Searched in windows that double from 64 bytes, so finding a line end ``d`` bytes on
        costs O(d) even when only one of the two characters occurs (an unbounded search for CR
        in an LF-only stream would scan the whole buffer once per line)."""
        buf, start, size, width = self._buf, self._scanned, len(self._buf), 64
        while start < size:
            stop = min(size, start + width)
            cr = buf.find(b"\r", start, stop)
            lf = buf.find(b"\n", start, cr if cr >= 0 else stop)
            if lf >= 0 or cr >= 0:
                return lf if lf >= 0 else cr
            start, width = stop, width * 2
        return -1

    def _feed(self, data: bytes) -> list[Measurement]:
        out: list[Measurement] = []
        self._buf += data
        while True:
            end = self._line_end()
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    # Keep only the tail a line could still start in, so the result does not
                    # depend on how the stream was chunked.
                    cut = len(self._buf) - MAX_LINE
                    self.stats.bytes_discarded += cut
                    self.stats.reject("line_too_long")
                    del self._buf[:cut]
                self._scanned = len(self._buf)
                return out
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._scanned = 0
            if len(line) > MAX_LINE:
                self.stats.bytes_discarded += len(line) - MAX_LINE
                self.stats.reject("line_too_long")
                line = line[-MAX_LINE:]
            if line:
                self._line(line, out)

    def _line(self, line: bytes, out: list[Measurement]) -> None:
        # Garbage may precede a line (a burst of noise with no line end): resynchronise on the
        # last date that starts a well-formed line.
        match = _LINE_RE.match(line)
        if match is None:
            for start in (m.start() for m in re.finditer(rb"\d\d/\d\d/\d\d ", line)):
                if start and (match := _LINE_RE.match(line[start:])) is not None:
                    self.stats.bytes_discarded += start
                    self.stats.reject("garbage")
                    break
        if match is None:
            self.stats.bytes_discarded += len(line) + 1
            self.stats.reject("malformed_line")
            return
        fields: dict[str, str] = {}
        try:
            text = match.group("fields").decode("ascii")
        except UnicodeDecodeError:
            self.stats.bytes_discarded += len(line) + 1
            self.stats.reject("non_ascii")
            return
        for token in text.split():
            label, _, value = token.partition("=")
            fields[label] = value
        self.stats.frames_ok += 1

        extra: list[tuple[str, str | int | float | bool]] = []
        extra.append(("device_time", f"{match.group('date').decode()} {match.group('time').decode()}"))
        flags: set[Quality] = set()
        exc = _hex(fields.get("EXC"))
        alarm = _hex(fields.get("ALARM"))
        if exc is not None:
            extra.append(("exc", exc))
            if exc & (EXC_SENSOR_OFF | EXC_NO_SENSOR):
                flags.add(Quality.PROBE_OFF)
            if exc & (EXC_DEFECTIVE_SENSOR | EXC_UNRECOGNISED_SENSOR):
                flags.add(Quality.SENSOR_FAULT)
            if exc & EXC_LOW_PERFUSION:
                flags.add(Quality.LOW_PERFUSION)
            if exc & _EXC_ARTEFACT:
                flags.add(Quality.DEVICE_ARTEFACT)
        if alarm is not None:
            extra.append(("alarm", alarm))
            if alarm & _ALARM_ACTIVE:
                flags.add(Quality.DEVICE_ALARM)
        for label in _EXTRA_FIELDS:
            if label in fields and (v := _value(fields[label])) is not None:
                extra.append((label.lower(), fields[label].rstrip("%")[:32] if label == "SN" else v))

        if exc is not None and exc & _EXC_NO_DATA:
            # Some firmware keeps printing the last values with the probe off; never store them.
            self.stats.reject("probe_off")
            return
        for label, vital in _VITAL_FIELDS.items():
            raw = fields.get(label)
            if raw is None:
                continue
            value = _value(raw)
            if value is None:
                self.stats.reject("missing_value", str(vital))
                continue
            self.emit(out, vital, value, flags=flags, extra=extra)


def _hex(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.split(":", 1)[0]
    try:
        return int(text, 16)
    except ValueError:
        return None


def encode_line(
    *,
    when: str = "05/14/25 09:12:03",
    spo2: int | None = 97,
    bpm: int | None = 72,
    pi: float | None = 2.4,
    exc: int = 0x800,
    alarm: int = 0,
    serial_number: str = "0000012345",
    line_end: bytes = b"\r\n",
) -> bytes:
    """One Radical-7-style line as the device prints it; ``None`` prints the dashed field.

    Used by the simulator and the tests (the simulator reuses the test encoder, STYLE.md).
    """
    spo2_s = "---" if spo2 is None else f"{spo2:03d}"
    bpm_s = "---" if bpm is None else f"{bpm:03d}"
    pi_s = "--.--" if pi is None else f"{pi:05.2f}"
    text = (
        f"{when} SN={serial_number} SPO2={spo2_s}% BPM={bpm_s} PI={pi_s}% SPCO=--.-% SPMET=--.-% "
        f"DESAT=-- PIDELTA=+-- ALARM={alarm:04X} EXC={exc:06X}"
    )
    return text.encode("ascii") + line_end
