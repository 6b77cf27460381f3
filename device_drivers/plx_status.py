"""Pulse Oximeter Service status fields shared by PLX spot-check and continuous parsers.

Bit tables: protocols.md §1.5 (Spezi `PLXSpotCheckMeasurement.swift`). What to do with them is
our decision (protocols.md's "rule of thumb", not the spec): a measurement the device itself
calls invalid or unavailable, or taken with the sensor off the patient, gives no reading and a
counted rejection; the other warning bits become quality flags on the readings.
"""

from __future__ import annotations

from dataclasses import dataclass

from device_drivers.records import Quality

# Measurement Status (u16)
MS_ONGOING = 1 << 5
MS_EARLY_ESTIMATE = 1 << 6
MS_VALIDATED = 1 << 7
MS_FULLY_QUALIFIED = 1 << 8
MS_FROM_STORAGE = 1 << 9
MS_DEMONSTRATION = 1 << 10
MS_TESTING = 1 << 11
MS_CALIBRATION = 1 << 12
MS_UNAVAILABLE = 1 << 13
MS_QUESTIONABLE = 1 << 14
MS_INVALID = 1 << 15

# Device and Sensor Status (u24)
DS_EQUIPMENT_MALFUNCTION = 1 << 1
DS_SIGNAL_IRREGULARITY = 1 << 2
DS_INADEQUATE_SIGNAL = 1 << 3
DS_POOR_SIGNAL = 1 << 4
DS_LOW_PERFUSION = 1 << 5
DS_ERRATIC_SIGNAL = 1 << 6
DS_NON_PULSATILE = 1 << 7
DS_QUESTIONABLE_PULSE = 1 << 8
DS_SENSOR_INTERFERENCE = 1 << 10
DS_SENSOR_UNCONNECTED = 1 << 11
DS_UNKNOWN_SENSOR = 1 << 12
DS_SENSOR_DISPLACED = 1 << 13
DS_SENSOR_MALFUNCTION = 1 << 14
DS_SENSOR_DISCONNECTED = 1 << 15

_ARTEFACT = (
    DS_SIGNAL_IRREGULARITY
    | DS_INADEQUATE_SIGNAL
    | DS_POOR_SIGNAL
    | DS_ERRATIC_SIGNAL
    | DS_NON_PULSATILE
    | DS_QUESTIONABLE_PULSE
    | DS_SENSOR_INTERFERENCE
)
_PROBE_OFF = DS_SENSOR_UNCONNECTED | DS_SENSOR_DISPLACED | DS_SENSOR_DISCONNECTED
_FAULT = DS_EQUIPMENT_MALFUNCTION | DS_SENSOR_MALFUNCTION | DS_UNKNOWN_SENSOR


@dataclass(frozen=True, slots=True)
class PlxVerdict:
    reject: str | None  # rejection reason when the readings must not be used
    flags: frozenset[Quality]


def judge(measurement_status: int | None, device_status: int | None) -> PlxVerdict:
    flags: set[Quality] = set()
    ms = measurement_status or 0
    ds = device_status or 0
    if ms & MS_INVALID:
        return PlxVerdict("device_invalid", frozenset())
    if ms & MS_UNAVAILABLE:
        return PlxVerdict("device_unavailable", frozenset())
    if ms & (MS_DEMONSTRATION | MS_TESTING):
        return PlxVerdict("demo_or_test_data", frozenset())
    if ds & _PROBE_OFF:
        return PlxVerdict("probe_off", frozenset())
    if ms & (MS_QUESTIONABLE | MS_EARLY_ESTIMATE | MS_CALIBRATION):
        flags.add(Quality.QUESTIONABLE)
    if ms & MS_FROM_STORAGE:
        flags.add(Quality.FROM_STORAGE)
    if ds & _ARTEFACT:
        flags.add(Quality.DEVICE_ARTEFACT)
    if ds & DS_LOW_PERFUSION:
        flags.add(Quality.LOW_PERFUSION)
    if ds & _FAULT:
        flags.add(Quality.SENSOR_FAULT)
    return PlxVerdict(None, frozenset(flags))
