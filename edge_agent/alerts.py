"""Alert records (DESIGN §3): a level, the score and the inputs that caused it, and an ack trail.

The foundation raises one kind of alert (SpO2 below the configured threshold); the scoring
package grows this into the full NEWS2-driven lifecycle.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class AlertLevel(enum.StrEnum):
    """NEWS2 clinical-risk levels (reference/clinical.md §3.2)."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {AlertLevel.LOW: 0, AlertLevel.LOW_MEDIUM: 1, AlertLevel.MEDIUM: 2, AlertLevel.HIGH: 3}


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    subject: str  # patient id, or "device:<device_id>" when no visit is open
    kind: str  # e.g. "spo2_low", "news2"
    level: AlertLevel
    state: str  # raised | escalated | renotified | acknowledged | cleared
    message: str
    raised_at: datetime
    score: float | None = None
    partial: bool = False
    inputs: tuple[tuple[str, float, str], ...] = ()  # (vital, value, reading uid)
    model: str = ""  # model id@version that produced it

    def to_json(self) -> dict[str, object]:
        return {
            "alert_id": self.alert_id,
            "subject": self.subject,
            "kind": self.kind,
            "level": str(self.level),
            "state": self.state,
            "message": self.message,
            "raised_at": self.raised_at.isoformat(),
            "score": self.score,
            "partial": self.partial,
            "inputs": [list(i) for i in self.inputs],
            "model": self.model,
        }
