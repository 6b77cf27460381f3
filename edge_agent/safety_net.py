"""The SpO2 safety net: a plain threshold alert that needs no model runtime.

NEWS2 gives 3 points to SpO2 ≤ 91 % on scale 1 (reference/clinical.md §3.1), a "red" single
parameter score whose response is at least low-medium (§3.2). This scorer raises such an alert
when SpO2 falls below ``spo2_low`` (default 90 %, issue 2) and clears it when SpO2 recovers. It
runs when the ONNX models are unavailable, so an oximeter alarm never depends on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from device_drivers.records import Reading, Vital
from edge_agent.alerts import Alert, AlertLevel


class AlertSink(Protocol):
    def save_alert(self, alert_id: str, payload: dict[str, object], *, updated_at: datetime) -> object: ...


def subject_of(reading: Reading) -> str:
    return reading.patient_id or f"device:{reading.device_id}"


class SpO2SafetyNet:
    def __init__(self, spo2_low: float = 90.0) -> None:
        self.spo2_low = spo2_low
        self._open: dict[str, Alert] = {}

    def on_readings(self, readings: Sequence[Reading], now: datetime) -> list[Alert]:
        changes: list[Alert] = []
        for r in readings:
            if r.vital != Vital.SPO2:
                continue
            subject = subject_of(r)
            current = self._open.get(subject)
            if r.value < self.spo2_low and current is None:
                alert = Alert(
                    alert_id=f"{r.uid}:spo2",
                    subject=subject,
                    kind="spo2_low",
                    level=AlertLevel.LOW_MEDIUM,
                    state="raised",
                    message=f"SpO2 {r.value:.0f} % < {self.spo2_low:.0f} %",
                    raised_at=now,
                    updated_at=now,
                    score=r.value,
                    inputs=((str(r.vital), r.value, r.uid),),
                    model="safety-net:spo2",
                )
                self._open[subject] = alert
                changes.append(alert)
            elif r.value >= self.spo2_low and current is not None:
                del self._open[subject]
                changes.append(
                    Alert(
                        alert_id=current.alert_id,
                        subject=subject,
                        kind=current.kind,
                        level=current.level,
                        state="cleared",
                        message=f"SpO2 recovered to {r.value:.0f} %",
                        raised_at=current.raised_at,
                        updated_at=now,
                        cleared_at=now,
                        clear_reason="recovered",
                        score=r.value,
                        inputs=((str(r.vital), r.value, r.uid),),
                        model=current.model,
                    )
                )
        return changes

    def tick(self, now: datetime) -> list[Alert]:
        return []

    def status(self) -> dict[str, object]:
        return {"scorer": "safety-net", "available": True, "open_alerts": len(self._open)}


class ScorerWithSafetyNet:
    """The model scorer, plus the SpO2 safety net whenever the models are unavailable.

    The safety net never runs alongside working models (NEWS2 already scores SpO2 ≤ 91 as red),
    so the nurse does not see the same desaturation twice.
    """

    def __init__(self, scorer: Any, net: SpO2SafetyNet, recorder: AlertSink | None = None) -> None:
        self.scorer = scorer
        self.net = net
        self.recorder = recorder  # saves the net's alerts in the alert lane, like the model scorer's

    def _models_available(self) -> bool:
        return bool(self.scorer.status().get("available"))

    def on_readings(self, readings: Sequence[Reading], now: datetime) -> list[Alert]:
        alerts: list[Alert] = self.scorer.on_readings(readings, now)
        if not self._models_available():
            net_alerts = self.net.on_readings(readings, now)
            if self.recorder is not None:
                for a in net_alerts:
                    self.recorder.save_alert(a.alert_id, a.to_json(), updated_at=a.updated_at or now)
            alerts += net_alerts
        return alerts

    def tick(self, now: datetime) -> list[Alert]:
        alerts: list[Alert] = self.scorer.tick(now)
        return alerts

    def acknowledge(self, alert_id: str, who: str, now: datetime) -> Alert:
        alert: Alert = self.scorer.acknowledge(alert_id, who, now)
        return alert

    def set_manual(self, subject: str, **obs: object) -> None:
        self.scorer.set_manual(subject, **obs)

    def status(self) -> dict[str, object]:
        status: dict[str, object] = dict(self.scorer.status())
        status["safety_net"] = "active" if not status.get("available") else "standby"
        return status
