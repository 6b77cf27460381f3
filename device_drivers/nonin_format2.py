"""Nonin serial data format #2 -> heart_rate, spo2 (stream parser).

Format (protocols.md §2.2; diozero-Nonin `DataFormat2FrameSerialiser`, Pufferfish-Nonin
`FrameReceiver`/`PacketReceiver`, Oxford-Nonin `NoninPacket`): 5-byte frames
``01 STATUS PLETH FLOAT CHK`` at 75 frames/s, CHK = sum of bytes 1-4 mod 256, STATUS bit 7
always set, bit 0 (SYNC) set only on frame 1 of each 25-frame packet (1/3 s). The FLOAT byte's
meaning depends on the frame index: 0/1 HR MSB/LSB (4-beat average), 2 SpO2 (4-beat average),
3 firmware revision, 8 SpO2-D (display), 19/20 HR-D; HR = ((MSB & 3) << 7) | (LSB & 0x7F),
SpO2 = byte & 0x7F; 511 / 127 mean "missing" (Oxford-Nonin MISSING_HR/MISSING_SPO2).

Framing: a frame is accepted when byte 1 is 0x01, STATUS bit 7 is set and the checksum holds;
otherwise one byte is dropped and the search starts again (Pufferfish `shift_left`). Any
dropped byte abandons the packet being assembled (its frame indices are no longer known).
Each byte is examined at most five times (once per frame window covering it): linear work, and
the 8-bit checksum keeps random bytes from decoding (a false frame needs the start byte, bit 7
and the sum to agree, and a reading needs 25 such frames in a row from a SYNC frame).

Rate (decision): one reading per vital per second, i.e. one per three packets (a
:class:`~device_drivers.decimate.Decimator` of 3). The readings are the 4-beat averages Nonin
designates for recording (frames 0-2); the display values go into extra. Status bits, ORed
over the packet: SNSD (sensor disconnected) -> no reading, rejection ``probe_off``; ARTF ->
DEVICE_ARTEFACT; OOT (out of track) -> QUESTIONABLE; SNSA (sensor alarm) -> SENSOR_FAULT; red
perfusion -> LOW_PERFUSION.
"""

from __future__ import annotations

from typing import ClassVar

from device_drivers.base import Parser
from device_drivers.decimate import Decimator
from device_drivers.records import Measurement, Quality, Vital

FRAME_LEN = 5
FRAMES_PER_PACKET = 25
PACKETS_PER_READING = 3  # 3 packets/s -> 1 reading per vital per second
START = 0x01

ST_ALWAYS = 0x80
ST_SNSD = 0x40
ST_ARTF = 0x20
ST_OOT = 0x10
ST_SNSA = 0x08
ST_PERFUSION_MASK = 0x06
ST_SYNC = 0x01
PERFUSION = {0x02: "green", 0x04: "red", 0x06: "yellow", 0x00: "none"}

IDX_HR_MSB, IDX_HR_LSB, IDX_SPO2, IDX_FIRMWARE = 0, 1, 2, 3
IDX_SPO2_D = 8
IDX_HR_D_MSB, IDX_HR_D_LSB = 19, 20
MISSING_HR = 511
MISSING_SPO2 = 127


def hr_from(msb: int, lsb: int) -> int:
    return ((msb & 0x03) << 7) | (lsb & 0x7F)


class NoninFormat2Parser(Parser):
    format_name: ClassVar[str] = "nonin-format2"
    kind: ClassVar[str] = "serial"

    def __init__(self) -> None:
        super().__init__()
        self._buf = self.buffer_type()
        self._status: list[int] = []  # STATUS bytes of the packet being assembled
        self._data: list[int] = []  # FLOAT bytes of the packet being assembled
        self._in_garbage = False
        self._decimator = Decimator(PACKETS_PER_READING)

    def _feed(self, data: bytes) -> list[Measurement]:
        out: list[Measurement] = []
        buf = self._buf
        buf += data
        i = 0
        end = len(buf) - FRAME_LEN
        while i <= end:
            b0, st, pl, fl, chk = buf[i], buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]
            if b0 == START and st & ST_ALWAYS and (b0 + st + pl + fl) & 0xFF == chk:
                i += FRAME_LEN
                self._in_garbage = False
                self.stats.frames_ok += 1
                self._frame(st, fl, out)
            else:
                i += 1
                self.stats.bytes_discarded += 1
                if not self._in_garbage:
                    self._in_garbage = True
                    self.stats.reject("sync_lost")
                    if self._status:
                        self.stats.reject("incomplete_packet")
                    self._status.clear()
                    self._data.clear()
        del buf[:i]
        return out

    def _frame(self, status: int, value: int, out: list[Measurement]) -> None:
        if status & ST_SYNC:
            if self._status:
                self.stats.reject("incomplete_packet")
            self._status.clear()
            self._data.clear()
        elif not self._status:
            return  # not yet aligned on a packet start
        self._status.append(status)
        self._data.append(value)
        if len(self._status) == FRAMES_PER_PACKET:
            self._packet(self._status, self._data, out)
            self._status = []
            self._data = []

    def _packet(self, status: list[int], d: list[int], out: list[Measurement]) -> None:
        any_status = 0
        for s in status:
            any_status |= s
        flags: set[Quality] = set()
        if any_status & ST_ARTF:
            flags.add(Quality.DEVICE_ARTEFACT)
        if any_status & ST_OOT:
            flags.add(Quality.QUESTIONABLE)
        if any_status & ST_SNSA:
            flags.add(Quality.SENSOR_FAULT)
        if any(s & ST_PERFUSION_MASK == 0x04 for s in status):
            flags.add(Quality.LOW_PERFUSION)
        dec = self._decimator
        dec.next_packet(flags)

        hr = hr_from(d[IDX_HR_MSB], d[IDX_HR_LSB])
        spo2 = d[IDX_SPO2] & 0x7F
        extra: list[tuple[str, str | int | float | bool]] = [
            ("perfusion", PERFUSION[status[0] & ST_PERFUSION_MASK]),
            ("firmware_revision", d[IDX_FIRMWARE]),
        ]
        spo2_d = d[IDX_SPO2_D] & 0x7F
        hr_d = hr_from(d[IDX_HR_D_MSB], d[IDX_HR_D_LSB])
        if spo2_d != MISSING_SPO2:
            extra.append(("spo2_display", spo2_d))
        if hr_d != MISSING_HR:
            extra.append(("hr_display", hr_d))
        probe_off = bool(any_status & ST_SNSD)
        for vital, value, missing in ((Vital.HEART_RATE, hr, MISSING_HR), (Vital.SPO2, spo2, MISSING_SPO2)):
            if not dec.wants(vital):
                continue
            reason = "probe_off" if probe_off else "missing_value" if value == missing else None
            if reason is not None:
                if dec.should_count_rejection(vital):
                    self.stats.reject(reason, str(vital))
                continue
            before = len(out)
            self.emit(out, vital, float(value), flags=dec.flags, extra=extra)
            if len(out) > before:
                dec.mark_emitted(vital)
