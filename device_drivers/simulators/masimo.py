"""Masimo Rad-8 / Radical-7 simulator: one ASCII 1 line per second (reference/protocols.md §2.1)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from device_drivers.masimo_ascii import EXC_SENSOR_OFF, encode_line
from device_drivers.simulators.base import PatientState

_EPOCH = datetime(2025, 5, 14, 9, 0, 0, tzinfo=UTC)
_EXC_SET = 0x800  # "Masimo SET" mode: the normal state


def masimo_frames(state: PatientState, rng: random.Random) -> Iterator[tuple[float, bytes]]:
    when = (_EPOCH + timedelta(seconds=state.t)).strftime("%m/%d/%y %H:%M:%S")
    if state.probe_off:
        # Probe off: dashes, and the sensor-off exception bit set.
        yield 1.0, encode_line(when=when, spo2=None, bpm=None, pi=None, exc=_EXC_SET | EXC_SENSOR_OFF)
        return
    alarm = 0x0002 | 0x0010 if state.spo2 < 90 else 0  # SpO2 low + alarm active (advisory bits)
    yield (
        1.0,
        encode_line(
            when=when,
            spo2=int(state.spo2),
            bpm=int(state.heart_rate),
            pi=state.perfusion_index,
            exc=_EXC_SET,
            alarm=alarm,
        ),
    )
