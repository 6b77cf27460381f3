"""Contec CMS50D+ legacy live stream -> heart_rate, spo2 (stream parser).

Format (protocols.md §2.3; atbrask-CMS50 `cms50dplus.py`): 19200 baud 8O1, 5-byte packets at
about 60 Hz, no checksum. Only byte 1 has bit 7 set (sync):
byte 1: bit 6 beep/pulse, bit 5 SpO2 dropping, bit 4 finger out, bits 3-0 signal strength;
byte 2: pleth (7 bits); byte 3: bit 6 PR bit 7, bit 5 searching, bit 4 probe error, bits 3-0
bar graph; byte 4: PR bits 6-0; byte 5: SpO2 bits 6-0.

Framing: a packet is *well-formed* when byte 1 has bit 7 set and bytes 2-5 have it clear. With
no checksum, one random 5-byte window in 32 is well-formed (1 MB of random bytes gave 1,073
readings), so the parser locks on before it accepts anything: while *searching*, a position is
accepted only when :data:`LOCK_FRAMES` consecutive well-formed packets start there (those
packets are then all used, so a clean stream loses nothing); while *locked*, each well-formed
packet is accepted and the first malformed one drops the parser back to searching, one byte on.
Random bytes lock with probability (1/32)^5 per position, about 0.03 times per MB. A fresh
parser starts locked (decision): the first byte of a stream is taken as a packet boundary until
a malformed packet proves otherwise. A real device opened mid-packet fails at once (payload
bytes have bit 7 clear), random noise contributes only the packets before its first malformed
one (1/31 on average), and one packet on its own still decodes (``edge-agent decode
contec-cms50 84 3A 05 48 61``, DESIGN §4). Every decision depends only on the bytes at and
after a position, never on where a chunk ended, so any chunking gives the same result; the
work is at most ``5 * LOCK_FRAMES`` byte reads per input byte.

Decimation (decision): at most one reading per vital per 60 packets (about 1 s at the
device's ~60 Hz), via a :class:`~device_drivers.decimate.Decimator`: the first usable value of
each window is emitted with the quality flags seen so far in that window. Finger out or probe
error -> no reading, rejection ``probe_off`` / ``probe_error`` (once per window); searching ->
rejection ``searching``. SpO2 127 / PR 255 (and 0) are treated as "no value" (firmware habit
when no finger; protocols.md marks this UNVERIFIED, the finger-out bit is what we rely on).
"""

from __future__ import annotations

from typing import ClassVar

from device_drivers.base import Parser
from device_drivers.decimate import Decimator
from device_drivers.records import Measurement, Vital

PACKET_LEN = 5
PACKETS_PER_READING = 60
LOCK_FRAMES = 5  # consecutive well-formed packets before a searching parser accepts a stream

B1_SYNC = 0x80
B1_BEAT = 0x40
B1_SPO2_DROPPING = 0x20
B1_FINGER_OUT = 0x10
B1_SIGNAL_MASK = 0x0F
B3_PR_BIT7 = 0x40
B3_SEARCHING = 0x20
B3_PROBE_ERROR = 0x10
MISSING_SPO2 = {0, 127}
MISSING_PR = {0, 255}


class ContecCms50Parser(Parser):
    format_name: ClassVar[str] = "contec-cms50"
    kind: ClassVar[str] = "serial"

    def __init__(self) -> None:
        super().__init__()
        self._buf = self.buffer_type()
        self._in_garbage = False
        self._locked = True  # provisional lock at the start of the stream (module docstring)
        self._decimator = Decimator(PACKETS_PER_READING)

    @staticmethod
    def _well_formed(buf: bytearray, i: int) -> bool:
        return bool(buf[i] & 0x80) and not (buf[i + 1] | buf[i + 2] | buf[i + 3] | buf[i + 4]) & 0x80

    def _lock_at(self, buf: bytearray, i: int, size: int) -> bool | None:
        """True: LOCK_FRAMES well-formed packets start at i; False: one of them is malformed;
        None: the ones present are well-formed but the buffer ends before the last."""
        for k in range(LOCK_FRAMES):
            at = i + k * PACKET_LEN
            if at + PACKET_LEN > size:
                return None
            if not self._well_formed(buf, at):
                return False
        return True

    def _accept(self, buf: bytearray, i: int, out: list[Measurement]) -> None:
        self._in_garbage = False
        self.stats.frames_ok += 1
        self._packet(buf[i], buf[i + 2], buf[i + 3], buf[i + 4], out)

    def _feed(self, data: bytes) -> list[Measurement]:
        out: list[Measurement] = []
        buf = self._buf
        buf += data
        i = 0
        size = len(buf)
        while i + PACKET_LEN <= size:
            if self._locked:
                if self._well_formed(buf, i):
                    self._accept(buf, i, out)
                    i += PACKET_LEN
                    continue
                self._locked = False  # the byte at i is dropped by the search below
            # Searching: lock on only where LOCK_FRAMES well-formed packets follow each other.
            verdict = self._lock_at(buf, i, size)
            if verdict is None:
                break  # not decided until more bytes arrive
            if verdict:
                self._locked = True
                for k in range(LOCK_FRAMES):
                    self._accept(buf, i + k * PACKET_LEN, out)
                i += LOCK_FRAMES * PACKET_LEN
                continue
            i += 1
            self.stats.bytes_discarded += 1
            if not self._in_garbage:
                self._in_garbage = True
                self.stats.reject("sync_lost")
        del buf[:i]
        return out

    def _packet(self, b1: int, b3: int, b4: int, b5: int, out: list[Measurement]) -> None:
        dec = self._decimator
        dec.next_packet(set())
        if not (dec.wants(Vital.HEART_RATE) or dec.wants(Vital.SPO2)):
            return
        pr = ((b3 & B3_PR_BIT7) << 1) | (b4 & 0x7F)
        spo2 = b5 & 0x7F
        if b1 & B1_FINGER_OUT:
            reason: str | None = "probe_off"
        elif b3 & B3_PROBE_ERROR:
            reason = "probe_error"
        elif b3 & B3_SEARCHING:
            reason = "searching"
        else:
            reason = None
        extra: list[tuple[str, str | int | float | bool]] = [("signal_strength", b1 & B1_SIGNAL_MASK)]
        if b1 & B1_SPO2_DROPPING:
            extra.append(("spo2_dropping", True))
        for vital, value, missing in ((Vital.HEART_RATE, pr, MISSING_PR), (Vital.SPO2, spo2, MISSING_SPO2)):
            if not dec.wants(vital):
                continue
            why = reason or ("missing_value" if value in missing else None)
            if why is not None:
                if dec.should_count_rejection(vital):
                    self.stats.reject(why, str(vital))
                continue
            before = len(out)
            self.emit(out, vital, float(value), flags=dec.flags, extra=extra)
            if len(out) > before:
                dec.mark_emitted(vital)
