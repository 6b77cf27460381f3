"""Space policy, pure logic: how full the buffer is, and which incoming readings to keep.

Levels, from the store's used bytes against the quota and the filesystem's free space:

- ``NORMAL``: keep everything.
- ``PRESSURE`` (>= 90 % of the quota, or free space below the reserve): synced rows are purged
  early to make room, and continuous high-rate streams are downsampled to one reading per
  (device, vital) per ``downsample_s``; spot checks are kept.
- ``FULL`` (quota reached, or SQLite said the disk is full): continuous streams are dropped,
  spot checks are still stored while they fit.
- ``CRITICAL`` (quota exceeded by the spot-check allowance): everything new is dropped.

Every dropped reading is counted per vital and reason by the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from device_drivers.records import Reading, Vital
from edge_agent.store.codec import to_us

# Streams that deliver a value every second or so (pulse oximeters in continuous mode, heart-rate
# straps, bedside monitors over serial). Everything else is a spot check (BP, temperature, weight,
# glucose, a spot SpO2).
CONTINUOUS_FORMATS = frozenset(
    {"ble-plx-continuous", "ble-heart-rate", "masimo-ascii", "nonin-format2", "contec-cms50"}
)
CONTINUOUS_VITALS = frozenset({Vital.PERFUSION_INDEX})


class Level(enum.IntEnum):
    NORMAL = 0
    PRESSURE = 1
    FULL = 2
    CRITICAL = 3


@dataclass(frozen=True, slots=True)
class SpacePolicy:
    quota_bytes: int
    reserve_bytes: int = 8 * 1024 * 1024  # keep this much of the filesystem free
    pressure_fraction: float = 0.9
    spot_allowance_fraction: float = 0.05  # spot checks may go this far past the quota
    downsample_s: float = 60.0

    def level(self, used_bytes: int, fs_free_bytes: int | None) -> Level:
        if used_bytes >= self.quota_bytes * (1.0 + self.spot_allowance_fraction):
            return Level.CRITICAL
        if used_bytes >= self.quota_bytes:
            return Level.FULL
        if fs_free_bytes is not None and fs_free_bytes < self.reserve_bytes // 4:
            return Level.FULL
        if used_bytes >= self.quota_bytes * self.pressure_fraction:
            return Level.PRESSURE
        if fs_free_bytes is not None and fs_free_bytes < self.reserve_bytes:
            return Level.PRESSURE
        return Level.NORMAL


def is_continuous(r: Reading) -> bool:
    return r.source_format in CONTINUOUS_FORMATS or r.vital in CONTINUOUS_VITALS


def holds_spot_check(readings: Sequence[Reading]) -> bool:
    """True when a reading of ``readings`` is a spot check (not a second of a continuous stream):
    its commit is fsynced before it exists (store/writer.py, the fsync window)."""
    return not all(map(is_continuous, readings))


@dataclass(frozen=True, slots=True)
class Plan:
    keep: tuple[int, ...]  # indexes into the batch
    drop: tuple[int, ...]
    reason: str  # reason recorded for the drops


def plan_batch(
    batch: Sequence[Reading], level: Level, last_kept_us: dict[tuple[str, str], int], downsample_s: float
) -> Plan:
    """Decide which readings of ``batch`` to store at ``level``.

    ``last_kept_us`` maps (device_id, vital) to the measured time (µs) of the last continuous
    reading kept; it is updated for the readings this plan keeps (the caller rolls it back if the
    commit fails).
    """
    if level is Level.NORMAL:
        return Plan(tuple(range(len(batch))), (), "")
    if level is Level.CRITICAL:
        return Plan((), tuple(range(len(batch))), "quota")
    keep: list[int] = []
    drop: list[int] = []
    step_us = int(downsample_s * 1_000_000)
    for i, r in enumerate(batch):
        if not is_continuous(r):
            keep.append(i)
            continue
        if level is Level.FULL:
            drop.append(i)
            continue
        key = (r.device_id, str(r.vital))
        t = to_us(r.measured_at)  # naive means UTC, as everywhere in the store (never the host's zone)
        last = last_kept_us.get(key)
        if last is None or t - last >= step_us or t < last:
            last_kept_us[key] = t
            keep.append(i)
        else:
            drop.append(i)
    return Plan(tuple(keep), tuple(drop), "downsampled" if level is Level.PRESSURE else "disk_full")


def spot_only(batch: Sequence[Reading], indexes: Iterable[int]) -> tuple[list[int], list[int]]:
    """Split ``indexes`` into (spot checks, continuous)."""
    spot: list[int] = []
    cont: list[int] = []
    for i in indexes:
        (cont if is_continuous(batch[i]) else spot).append(i)
    return spot, cont
