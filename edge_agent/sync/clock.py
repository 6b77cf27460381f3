"""Is the gateway's clock trustworthy? A Raspberry Pi has no battery-backed clock: after boot it
runs from the last saved time until NTP steps it, so "now" can be hours or days behind.

Two questions, answered without privileges and without blocking the loop for long:

* Is the kernel clock NTP-synchronised? ``timedatectl show -p NTPSynchronized`` where systemd
  runs (it asks timedated over D-Bus), else the kernel's own answer through ``ntp_adjtime(2)``
  (read-only: ``modes = 0``): ``STA_UNSYNC`` in the status bits or the ``TIME_ERROR`` state means
  unsynchronised. Neither available: ``unknown``. ``adjtimex`` also gives the kernel's estimated
  offset and maximum error, reported when it answers.
* Did the clock jump? :class:`ClockWatch` compares how far the wall clock moved with how far the
  monotonic clock moved between two samples; a difference above a threshold is a step (NTP
  setting the clock after boot, an operator running ``date``).

This module only reports (status, heartbeat). Readings are never reordered or dropped because of
the clock: the sync sends them in ``seq`` order, which is the truth, and each reading already
says whether its time came from the device or from the gateway (``clock_from_device`` and the
``clock_unsynced`` quality flag, device_drivers.records).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

TIMEDATECTL = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")
TIMEDATECTL_TIMEOUT_S = 2.0
JUMP_THRESHOLD_S = 2.0

# <sys/timex.h>
STA_UNSYNC = 0x0040
STA_NANO = 0x2000
TIME_ERROR = 5


class NtpState(enum.StrEnum):
    SYNCHRONIZED = "synchronized"
    UNSYNCHRONIZED = "unsynchronized"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ClockStatus:
    """What the probes said. ``source`` names the probe that decided ``ntp`` (``timedatectl``,
    ``adjtimex`` or ``none``); ``offset_s``/``max_error_s`` come from adjtimex when it answered."""

    ntp: NtpState
    source: str
    offset_s: float | None = None
    max_error_s: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "ntp": str(self.ntp),
            "source": self.source,
            "offset_s": self.offset_s,
            "max_error_s": self.max_error_s,
        }


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` of glibc (long-sized fields; the legacy ABI that ``ntp_adjtime`` uses)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
        ("_slack", ctypes.c_char * 64),  # room for a libc whose struct is larger than ours
    ]


def probe_timedatectl(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> NtpState | None:
    """timedated's answer, or None when it cannot say (no systemd, no D-Bus, not installed)."""
    try:
        done = run(list(TIMEDATECTL), capture_output=True, text=True, timeout=TIMEDATECTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    answer = done.stdout.strip().lower()
    if answer == "yes":
        return NtpState.SYNCHRONIZED
    if answer == "no":
        return NtpState.UNSYNCHRONIZED
    return None


def _libc_ntp_adjtime() -> Callable[[Any], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        fn = libc.ntp_adjtime
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.POINTER(_Timex)]
    fn.restype = ctypes.c_int
    return fn


def probe_adjtimex(
    ntp_adjtime: Callable[[Any], int] | None = None,
) -> tuple[NtpState, float, float] | None:
    """The kernel's view through ``ntp_adjtime`` (read only): (state, offset s, max error s), or
    None when the call is unavailable or fails."""
    fn = ntp_adjtime if ntp_adjtime is not None else _libc_ntp_adjtime()
    if fn is None:
        return None
    tx = _Timex()
    tx.modes = 0  # read, change nothing
    state = fn(ctypes.byref(tx))
    if state < 0:
        return None
    unsynced = bool(tx.status & STA_UNSYNC) or state == TIME_ERROR
    offset_s = tx.offset / (1e9 if tx.status & STA_NANO else 1e6)
    return (
        NtpState.UNSYNCHRONIZED if unsynced else NtpState.SYNCHRONIZED,
        offset_s,
        tx.maxerror / 1e6,
    )


def probe_clock(
    *,
    timedatectl: Callable[[], NtpState | None] = probe_timedatectl,
    adjtimex: Callable[[], tuple[NtpState, float, float] | None] = probe_adjtimex,
) -> ClockStatus:
    """timedatectl first, then adjtimex, else unknown. Blocking (a subprocess): run it off the loop."""
    kernel = adjtimex()
    offset = kernel[1] if kernel else None
    max_error = kernel[2] if kernel else None
    systemd = timedatectl()
    if systemd is not None:
        return ClockStatus(systemd, "timedatectl", offset, max_error)
    if kernel is not None:
        return ClockStatus(kernel[0], "adjtimex", offset, max_error)
    return ClockStatus(NtpState.UNKNOWN, "none")


@dataclass(frozen=True, slots=True)
class ClockJump:
    at: datetime  # wall time after the jump
    step_s: float  # positive: the wall clock moved forward more than time passed


class ClockWatch:
    """Detects steps of the wall clock against the monotonic clock between two :meth:`sample` calls."""

    def __init__(
        self,
        *,
        threshold_s: float = JUMP_THRESHOLD_S,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold_s = threshold_s
        self._wall = wall
        self._mono = monotonic
        self._last: tuple[float, float] | None = None
        self.jumps = 0
        self.last_jump: ClockJump | None = None

    def sample(self) -> ClockJump | None:
        """Take a sample; the jump since the previous one, if any (also counted and logged)."""
        now = (self._wall(), self._mono())
        last, self._last = self._last, now
        if last is None:
            return None
        step = (now[0] - last[0]) - (now[1] - last[1])
        if abs(step) < self.threshold_s:
            return None
        jump = ClockJump(at=datetime.fromtimestamp(now[0], UTC), step_s=round(step, 3))
        self.jumps += 1
        self.last_jump = jump
        log.warning("event=clock_jump step_s=%.3f jumps=%d", jump.step_s, self.jumps)
        return jump

    def as_dict(self) -> dict[str, object]:
        last = self.last_jump
        return {
            "jumps": self.jumps,
            "last_jump_s": None if last is None else last.step_s,
            "last_jump_at": None if last is None else last.at.isoformat(),
        }


class ClockMonitor:
    """The probe's last answer plus the jump watch, as one status section. :meth:`refresh` blocks
    (it may run ``timedatectl``): call it from an executor."""

    def __init__(
        self,
        *,
        probe: Callable[[], ClockStatus] = probe_clock,
        watch: ClockWatch | None = None,
    ) -> None:
        self._probe = probe
        self.watch = watch or ClockWatch()
        self.status = ClockStatus(NtpState.UNKNOWN, "none")
        self.hub_offset_s: float | None = None  # hub's ack time minus ours (latency included)

    def refresh(self) -> ClockStatus:
        self.watch.sample()
        previous = self.status
        try:
            self.status = self._probe()
        except Exception as exc:  # a probe must never stop the sync
            log.warning("event=clock_probe_failed error=%r", exc)
            self.status = ClockStatus(NtpState.UNKNOWN, "none")
        if self.status.ntp != previous.ntp:
            log.info("event=clock_state ntp=%s source=%s", self.status.ntp, self.status.source)
        return self.status

    def note_hub_time(self, hub_time: datetime, local_time: datetime) -> None:
        """An ack carried the hub's clock: remember the offset (hub minus gateway, seconds)."""
        self.hub_offset_s = round((hub_time - local_time).total_seconds(), 3)

    def as_dict(self) -> dict[str, object]:
        return {**self.status.as_dict(), "hub_offset_s": self.hub_offset_s, **self.watch.as_dict()}


__all__ = [
    "ClockJump",
    "ClockMonitor",
    "ClockStatus",
    "ClockWatch",
    "NtpState",
    "probe_adjtimex",
    "probe_clock",
    "probe_timedatectl",
]
