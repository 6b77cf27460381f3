"""Contec CMS50D+ legacy-stream simulator: ~60 five-byte packets per second (protocols.md §2.3).

Finger out sets the finger-out bit and sends SpO2 127 / PR 255 (what the firmware is said to
send; protocols.md marks those codes UNVERIFIED, the parser relies on the bit). The beat bit is
set on the packet nearest each heartbeat. Bytes come from :mod:`device_drivers.encoders`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from device_drivers.encoders import contec_packet
from device_drivers.simulators.base import PatientState

PACKETS_PER_SECOND = 60


def contec_frames(state: PatientState, rng: random.Random) -> Iterator[tuple[float, bytes]]:
    hr = max(0, min(254, round(state.heart_rate)))
    spo2 = max(0, min(100, round(state.spo2)))
    beat_hz = max(hr, 1) / 60.0
    for i in range(PACKETS_PER_SECOND):
        t = state.t + i / PACKETS_PER_SECOND
        if state.probe_off:
            chunk = contec_packet(255, 127, signal=0, finger_out=True, pleth=0, bar=0)
        else:
            phase = (t * beat_hz) % 1.0
            beat = phase < beat_hz / PACKETS_PER_SECOND  # the first packet of each beat
            wave = round(64 + 50 * math.sin(2 * math.pi * phase))
            chunk = contec_packet(hr, spo2, signal=6, beat=beat, pleth=wave, bar=min(15, wave // 8))
        yield 1.0 / PACKETS_PER_SECOND, chunk
