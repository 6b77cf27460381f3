"""HL7 v2 bedside-monitor simulator: one ORU^R01 in MLLP framing every 12 s (protocols.md §2.4).

The monitor sends heart rate, respiratory rate, SpO2, NIBP systolic/diastolic and body
temperature, LOINC-coded with UCUM units (as in the protocols.md example), OBX-14 stamped with
the current UTC time (a monitor whose clock the station keeps synced). With the probe off the
SpO2 observation carries result status ``X`` (cannot be obtained) and no value, the way a
monitor reports an absent result. Seconds without a message yield an empty chunk, so the
simulator keeps the 1 Hz patient timeline. Messages come from :mod:`device_drivers.encoders`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

from device_drivers.encoders import Obx, hl7_oru, mllp
from device_drivers.simulators.base import PatientState

MESSAGE_EVERY_S = 12


def oru_for(state: PatientState, when: datetime, control_id: str) -> bytes:
    if state.probe_off:
        spo2 = Obx("59408-5^Oxygen saturation^LN", "", "%^^UCUM", status="X")
    else:
        spo2 = Obx("59408-5^Oxygen saturation^LN", f"{state.spo2:.0f}", "%^^UCUM")
    observations = [
        Obx("8867-4^Heart rate^LN", f"{state.heart_rate:.0f}", "/min^^UCUM"),
        Obx("9279-1^Respiratory rate^LN", f"{state.resp_rate:.0f}", "/min^^UCUM"),
        spo2,
        Obx("8480-6^Systolic blood pressure^LN", f"{state.bp_systolic:.0f}", "mm[Hg]^^UCUM", sub_id="1"),
        Obx("8462-4^Diastolic blood pressure^LN", f"{state.bp_diastolic:.0f}", "mm[Hg]^^UCUM", sub_id="1"),
        Obx("8310-5^Body temperature^LN", f"{state.body_temp:.1f}", "Cel^^UCUM"),
    ]
    return mllp(hl7_oru(observations, control_id=control_id, when=when, sending_app="SIM-MONITOR"))


def hl7_frames(state: PatientState, rng: random.Random) -> Iterator[tuple[float, bytes]]:
    if int(state.t) % MESSAGE_EVERY_S == 0:
        yield 1.0, oru_for(state, datetime.now(UTC).replace(microsecond=0), f"SIM{int(state.t):08d}")
    else:
        yield 1.0, b""
