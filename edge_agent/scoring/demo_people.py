"""The demo's people for whom NEWS2 is not the score: a child and a pregnant woman.

``edge-agent demo`` adds :func:`demo_devices` to its simulated station and opens a visit for each
:data:`DEMO_PEOPLE` entry (its dashboard presets; :func:`apply` does the same on a bare scorer
and pipeline), so the demo shows PEWS with WHO IMCI referral flags for the child and the
pregnancy BP thresholds for the woman. Each person has a bedside monitor (HL7 v2 simulator)
playing a scenario of ``device_drivers.simulators`` and the values a nurse would enter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from edge_agent.config import DeviceConfig
from edge_agent.scoring.patient import AgeBand, PatientContext


@dataclass(frozen=True, slots=True)
class DemoPerson:
    code: str  # station-local patient code (never a real identifier)
    device: DeviceConfig
    context: PatientContext
    observations: Mapping[str, object] = field(default_factory=dict)  # what the nurse enters


DEMO_PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson(
        "DEMO-CHILD",
        DeviceConfig(id="monitor-child", format="hl7v2", transport="simulated", scenario="child_unwell"),
        PatientContext(AgeBand.YEARS_1_4),
        # with these the PEWS is complete: mild distress 1, room air 0, capillary refill 2 s 0
        {"consciousness": "A", "on_oxygen": False, "resp_distress": 1, "cap_refill": 2},
    ),
    DemoPerson(
        "DEMO-MOTHER",
        DeviceConfig(id="monitor-mother", format="hl7v2", transport="simulated", scenario="pregnancy_hypertension"),
        PatientContext(AgeBand.ADULT, pregnant=True),
        {"consciousness": "A", "on_oxygen": False},
    ),
)


def demo_devices() -> tuple[DeviceConfig, ...]:
    return tuple(p.device for p in DEMO_PEOPLE)


class _Scorer(Protocol):
    def set_patient(self, subject: str, ctx: PatientContext | None) -> None: ...
    def set_manual(self, subject: str, **obs: object) -> None: ...


def apply(
    scorer: object,
    open_visit: Callable[[str, Sequence[str]], None] | None = None,
    *,
    patient_id: Callable[[str], str] = lambda code: code,
) -> None:
    """Open each demo person's visit without the dashboard: ``open_visit(patient_id,
    device_ids)`` (the pipeline's) attaches the monitor, and the scorer (or the safety-net
    wrapper around it) learns the age band, pregnancy and the nurse's entries."""
    target = cast(_Scorer, scorer if hasattr(scorer, "set_patient") else getattr(scorer, "scorer", scorer))
    for p in DEMO_PEOPLE:
        pid = patient_id(p.code)
        if open_visit is not None:
            open_visit(pid, (p.device.id,))
        target.set_patient(pid, p.context)
        if p.observations:
            target.set_manual(pid, **dict(p.observations))
