"""Shift the wall clock of this Python process (and of every Python child that inherits the
environment) by ``STATION_EDGE_CLOCK_SHIFT_DAYS`` days, for CI's "a year ahead" run.

Only the calendar moves: ``time.time()``, ``datetime.now()`` and friends are shifted by
time-machine, while ``time.monotonic()``, ``time.sleep()``, pseudo-terminals and the kernel's
file timestamps are left alone. libfaketime was measured here first (0.9.10 over the whole
suite): it hangs the pty/serial tests, and with ``FAKETIME_DONT_FAKE_MONOTONIC=1``
``time.sleep`` raises EINVAL. ``.ci/run`` puts this directory on ``PYTHONPATH``;
``tests/test_clock_shift.py`` proves the shift is in force when the variable is set.
"""

import os

_DAYS = os.environ.get("STATION_EDGE_CLOCK_SHIFT_DAYS", "").strip()
if _DAYS:
    import datetime as _dt

    import time_machine as _tm

    _TRAVEL = _tm.travel(_dt.datetime.now(_dt.UTC) + _dt.timedelta(days=float(_DAYS)), tick=True)
    _TRAVEL.start()
