"""CI runs the suite twice: on today's date and with the calendar a year ahead
(``STATION_EDGE_CLOCK_SHIFT_DAYS``, tests/support/clockshift). These tests prove which run this is,
so a broken shift cannot pass silently as a "year ahead" run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

SHIFT_DAYS = float(os.environ.get("STATION_EDGE_CLOCK_SHIFT_DAYS", "0") or 0)


def _kernel_now(tmp: Path) -> float:
    """The kernel's wall clock, which no in-process shift touches: a fresh file's mtime."""
    probe = tmp / "probe"
    probe.write_bytes(b"")
    return probe.stat().st_mtime


def test_wall_clock_is_shifted_as_the_run_says(tmp_path: Path) -> None:
    offset_days = (time.time() - _kernel_now(tmp_path)) / 86400
    assert abs(offset_days - SHIFT_DAYS) < 0.01
    assert abs(datetime.now(UTC).timestamp() - time.time()) < 5


def test_child_python_processes_see_the_same_calendar(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"], capture_output=True, text=True, check=True
    )
    offset_days = (float(out.stdout) - _kernel_now(tmp_path)) / 86400
    assert abs(offset_days - SHIFT_DAYS) < 0.01


def test_monotonic_time_is_not_shifted() -> None:
    before = time.monotonic()
    time.sleep(0.05)
    assert 0.04 < time.monotonic() - before < 5
