"""Serial device simulators over pseudo-terminals, one frame source per format.

``create_simulator("masimo-ascii", scenario="desaturation", link=path)`` gives a
:class:`PtySimulator`; ``python -m device_drivers.simulators FORMAT`` runs one in the foreground
for a technician or a manual test.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from device_drivers.simulators.base import (
    SCENARIOS,
    FrameSource,
    PatientState,
    PtySimulator,
    patient_timeline,
)

# format name -> "module:function" of its frame source (imported lazily).
FRAME_SOURCES: dict[str, str] = {
    "masimo-ascii": "device_drivers.simulators.masimo:masimo_frames",
    "nonin-format2": "device_drivers.simulators.nonin:nonin_frames",
    "contec-cms50": "device_drivers.simulators.contec:contec_frames",
    "hl7v2": "device_drivers.simulators.hl7:hl7_frames",
}


def frame_source(format_name: str) -> FrameSource:
    try:
        target = FRAME_SOURCES[format_name]
    except KeyError:
        raise ValueError(
            f"no simulator for format {format_name!r}; simulated formats: {', '.join(sorted(FRAME_SOURCES))}"
        ) from None
    module_name, _, func = target.partition(":")
    source: FrameSource = getattr(importlib.import_module(module_name), func)
    return source


def create_simulator(
    format_name: str, *, link: Path, scenario: str = "normal", speed: float = 1.0, seed: int = 0
) -> PtySimulator:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    return PtySimulator(
        frame_source(format_name), scenario=scenario, link=link, speed=speed, seed=seed, name=format_name
    )


__all__ = [
    "FRAME_SOURCES",
    "SCENARIOS",
    "FrameSource",
    "PatientState",
    "PtySimulator",
    "create_simulator",
    "frame_source",
    "patient_timeline",
]
