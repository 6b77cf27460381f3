"""Clock trust: timedatectl when it can answer, else the kernel (ntp_adjtime), else unknown;
jumps of the wall clock against the monotonic clock are detected and counted, never acted on."""

from __future__ import annotations

import ctypes
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_agent.sync.clock import (
    STA_NANO,
    STA_UNSYNC,
    TIME_ERROR,
    ClockMonitor,
    ClockStatus,
    ClockWatch,
    NtpState,
    _Timex,
    probe_adjtimex,
    probe_clock,
    probe_timedatectl,
)


def fake_run(stdout: str = "", returncode: int = 0, exc: Exception | None = None):  # type: ignore[no-untyped-def]
    def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        assert args == ["timedatectl", "show", "-p", "NTPSynchronized", "--value"]
        assert kw["timeout"] > 0
        if exc is not None:
            raise exc
        return subprocess.CompletedProcess(args, returncode, stdout, "")

    return run


def test_timedatectl_answers() -> None:
    assert probe_timedatectl(fake_run("yes\n")) is NtpState.SYNCHRONIZED
    assert probe_timedatectl(fake_run("no\n")) is NtpState.UNSYNCHRONIZED
    # no systemd (a container), not installed, hung, or something unexpected: cannot say
    assert probe_timedatectl(fake_run("", returncode=1)) is None
    assert probe_timedatectl(fake_run(exc=FileNotFoundError("timedatectl"))) is None
    assert probe_timedatectl(fake_run(exc=subprocess.TimeoutExpired("timedatectl", 2))) is None
    assert probe_timedatectl(fake_run("maybe")) is None


def fake_adjtime(status: int, state: int = 0, offset: int = 0, maxerror: int = 0):  # type: ignore[no-untyped-def]
    def call(ref: Any) -> int:
        tx = ctypes.cast(ref, ctypes.POINTER(_Timex)).contents
        assert tx.modes == 0  # read only: never changes the clock
        tx.status, tx.offset, tx.maxerror = status, offset, maxerror
        return state

    return call


def test_adjtimex_reads_the_kernel_state() -> None:
    assert probe_adjtimex(fake_adjtime(STA_UNSYNC)) == (NtpState.UNSYNCHRONIZED, 0.0, 0.0)
    assert probe_adjtimex(fake_adjtime(0, state=TIME_ERROR)) == (NtpState.UNSYNCHRONIZED, 0.0, 0.0)
    ok = probe_adjtimex(fake_adjtime(0, offset=1500, maxerror=250_000))
    assert ok == (NtpState.SYNCHRONIZED, 0.0015, 0.25)
    nano = probe_adjtimex(fake_adjtime(STA_NANO, offset=2_000_000))
    assert nano is not None and nano[1] == 0.002
    assert probe_adjtimex(fake_adjtime(0, state=-1)) is None


def test_the_real_kernel_answers_something_sane() -> None:
    real = probe_adjtimex()
    assert real is None or real[0] in (NtpState.SYNCHRONIZED, NtpState.UNSYNCHRONIZED)
    status = probe_clock()
    assert status.ntp in tuple(NtpState) and status.source in ("timedatectl", "adjtimex", "none")


def test_probe_order_timedatectl_then_adjtimex_then_unknown() -> None:
    kernel = (NtpState.UNSYNCHRONIZED, 0.01, 16.0)
    both = probe_clock(timedatectl=lambda: NtpState.SYNCHRONIZED, adjtimex=lambda: kernel)
    assert both == ClockStatus(NtpState.SYNCHRONIZED, "timedatectl", 0.01, 16.0)  # offset still from the kernel
    assert probe_clock(timedatectl=lambda: None, adjtimex=lambda: kernel).source == "adjtimex"
    none = probe_clock(timedatectl=lambda: None, adjtimex=lambda: None)
    assert none == ClockStatus(NtpState.UNKNOWN, "none")
    assert none.as_dict()["ntp"] == "unknown"


class FakeClocks:
    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 100.0

    def tick(self, seconds: float, *, step: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + step


def test_jumps_are_detected_both_ways_and_small_drift_is_not() -> None:
    c = FakeClocks()
    watch = ClockWatch(threshold_s=2.0, wall=lambda: c.wall, monotonic=lambda: c.mono)
    assert watch.sample() is None
    c.tick(60, step=0.5)
    assert watch.sample() is None  # drift, not a jump
    c.tick(10, step=3 * 86400)  # NTP sets a Pi that booted three days behind
    jump = watch.sample()
    assert jump is not None and jump.step_s == 3 * 86400
    c.tick(10, step=-30)
    back = watch.sample()
    assert back is not None and back.step_s == -30
    assert watch.jumps == 2 and watch.as_dict()["last_jump_s"] == -30


def test_monitor_reports_probe_jumps_and_the_hub_offset() -> None:
    c = FakeClocks()
    answers = iter([ClockStatus(NtpState.UNSYNCHRONIZED, "adjtimex"), ClockStatus(NtpState.SYNCHRONIZED, "adjtimex")])
    monitor = ClockMonitor(probe=lambda: next(answers), watch=ClockWatch(wall=lambda: c.wall, monotonic=lambda: c.mono))
    assert monitor.as_dict()["ntp"] == "unknown"  # before the first probe
    monitor.refresh()
    assert monitor.as_dict()["ntp"] == "unsynchronized"
    c.tick(5, step=3600)
    monitor.refresh()
    now = datetime(2027, 1, 1, tzinfo=UTC)
    monitor.note_hub_time(now + timedelta(seconds=2.5), now)
    doc = monitor.as_dict()
    assert doc["ntp"] == "synchronized" and doc["jumps"] == 1 and doc["hub_offset_s"] == 2.5


def test_a_failing_probe_is_unknown_not_an_exception() -> None:
    def broken() -> ClockStatus:
        raise OSError("no")

    monitor = ClockMonitor(probe=broken)
    assert monitor.refresh().ntp is NtpState.UNKNOWN
