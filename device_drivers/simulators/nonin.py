"""Nonin format #2 simulator: 75 five-byte frames per second, 25 frames per packet (protocols.md §2.2).

Each second of patient state becomes three packets; every frame is written on its own at the
device's pace (1/75 s apart). Probe off sets SNSD (sensor disconnected) and sends the missing
codes HR 511 / SpO2 127, as the device does. Bytes come from :mod:`device_drivers.encoders`,
the same encoder the parser tests use.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from device_drivers.encoders import NoninStatus, nonin_packet
from device_drivers.nonin_format2 import FRAME_LEN, MISSING_HR, MISSING_SPO2
from device_drivers.simulators.base import PatientState

FRAMES_PER_SECOND = 75
PACKETS_PER_SECOND = 3


def _pleth(t: float, hr: float) -> list[int]:
    beat_hz = max(hr, 1.0) / 60.0
    return [
        max(0, min(255, round(128 + 90 * math.sin(2 * math.pi * beat_hz * (t + i / FRAMES_PER_SECOND)))))
        for i in range(25)
    ]


def nonin_frames(state: PatientState, rng: random.Random) -> Iterator[tuple[float, bytes]]:
    if state.probe_off:
        status = NoninStatus(sensor_disconnected=True, perfusion=0)
        hr, spo2 = MISSING_HR, MISSING_SPO2
    else:
        perfusion = 0b01 if state.perfusion_index >= 1.0 else 0b10  # green, or red = low
        status = NoninStatus(perfusion=perfusion)
        hr = max(0, min(510, round(state.heart_rate)))
        spo2 = max(0, min(100, round(state.spo2)))
    for k in range(PACKETS_PER_SECOND):
        packet = nonin_packet(hr, spo2, status, pleth=_pleth(state.t + k / PACKETS_PER_SECOND, state.heart_rate))
        for i in range(0, len(packet), FRAME_LEN):
            yield 1.0 / FRAMES_PER_SECOND, packet[i : i + FRAME_LEN]
