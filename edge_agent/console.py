"""The demo's terminal view: one live line per reading and per alert, Vietnamese first.

Until the dashboard exists this is the nurse's view (issue 2). Lines carry no patient
identifier beyond the subject key the nurse already sees on the device.
"""

from __future__ import annotations

import sys
from datetime import tzinfo
from typing import TextIO

from device_drivers.records import Vital
from edge_agent.events import AlertChanged, DeviceStateChanged, Event, ReadingsDropped, ReadingsStored

# Vietnamese / English labels for the terminal.
LABELS: dict[Vital, str] = {
    Vital.HEART_RATE: "Mạch/Pulse",
    Vital.SPO2: "SpO2",
    Vital.RESP_RATE: "Nhịp thở/Resp",
    Vital.BODY_TEMP: "Nhiệt độ/Temp",
    Vital.GLUCOSE: "Đường huyết/Glucose",
    Vital.BP_SYSTOLIC: "HA tâm thu/Sys",
    Vital.BP_DIASTOLIC: "HA tâm trương/Dia",
    Vital.BP_MEAN: "HA TB/MAP",
    Vital.BODY_WEIGHT: "Cân nặng/Weight",
    Vital.PERFUSION_INDEX: "PI",
}
LEVELS = {
    "low": "THẤP/LOW",
    "low-medium": "THẤP-TB/LOW-MEDIUM",
    "medium": "TRUNG BÌNH/MEDIUM",
    "high": "CAO/HIGH",
}
DECIMALS = {Vital.BODY_TEMP: 1, Vital.GLUCOSE: 1, Vital.PERFUSION_INDEX: 1, Vital.BODY_WEIGHT: 2}
UNIT_TEXT = {"/min": "/phút", "Cel": "°C", "mm[Hg]": "mmHg", "%": "%", "kg": "kg", "mmol/L": "mmol/L"}


class ConsoleView:
    def __init__(self, out: TextIO | None = None, *, color: bool | None = None, tz: tzinfo | None = None) -> None:
        self.out = out or sys.stdout
        self.tz = tz  # the station's time zone; None: the machine's local time
        self.color = self.out.isatty() if color is None else color

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def __call__(self, event: Event) -> None:
        if isinstance(event, ReadingsStored):
            for r in event.readings:
                when = r.measured_at.astimezone(self.tz).strftime("%H:%M:%S")
                value = f"{r.value:.{DECIMALS.get(r.vital, 0)}f}"
                flags = f"  [{', '.join(sorted(r.flags - {'clock_unsynced'}))}]" if r.flags - {"clock_unsynced"} else ""
                self._print(
                    f"{when}  {r.device_id:<14} {LABELS[r.vital]:<18} {value:>6} {UNIT_TEXT.get(r.unit, r.unit)}{flags}"
                )
        elif isinstance(event, AlertChanged):
            a = event.alert
            level = LEVELS.get(str(a.level), str(a.level))
            head = "CẢNH BÁO/ALERT" if a.state != "cleared" else "HẾT CẢNH BÁO/CLEARED"
            partial = " (điểm chưa đủ/partial score)" if a.partial else ""
            line = f"!! {head} [{level}] {a.subject}: {a.message}{partial}"
            self._print(self._paint(line, "1;31" if a.state != "cleared" else "32"))
        elif isinstance(event, DeviceStateChanged):
            self._print(
                self._paint(f"-- thiết bị/device {event.device_id}: {event.state} {event.detail}".rstrip(), "2")
            )
        elif isinstance(event, ReadingsDropped):
            self._print(self._paint(f"!! {event.count} readings dropped (disk full) from {event.device_id}", "33"))

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)
