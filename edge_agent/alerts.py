"""Alert records (DESIGN §3): a level, the score and the inputs that caused it, and an ack trail.

An :class:`Alert` is immutable; each lifecycle event (raised, escalated, renotified,
acknowledged, cleared) produces a new version of it with the same ``alert_id``, which the scorer
shows to the nurse and saves to the store's outbox for the hub. The lifecycle itself lives in
``edge_agent.scoring.lifecycle``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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


class AlertState(enum.StrEnum):
    """The event an alert version records."""

    RAISED = "raised"
    ESCALATED = "escalated"  # level rose while open (needs a new acknowledgement)
    RENOTIFIED = "renotified"  # still unacknowledged after the re-notify interval
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"  # resolved (or stale); closed for good


@dataclass(frozen=True, slots=True)
class Ack:
    who: str
    at: datetime

    def to_json(self) -> dict[str, object]:
        return {"who": self.who, "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    subject: str  # patient id, or "device:<device_id>" when no visit is open
    kind: str  # "news2", "bp_crisis", "desaturation", "tachycardia", "bradycardia", "fever", "hypothermia"
    level: AlertLevel  # the highest level reached while open
    state: str  # an AlertState value: the event this version records
    message: str
    raised_at: datetime
    score: float | None = None
    partial: bool = False  # some inputs of the score were missing: the score is a lower bound
    inputs: tuple[tuple[str, float, str], ...] = ()  # (input name, value, reading uid or "manual")
    model: str = ""  # model id@version that produced it ("rule:<kind>" for event detectors)
    updated_at: datetime | None = None
    notified_at: datetime | None = None  # last time the nurse was told (raise/escalate/renotify)
    acknowledged: bool = False  # acknowledged since the last raise or escalation
    acks: tuple[Ack, ...] = ()  # every acknowledgement, oldest first
    missing: tuple[str, ...] = ()  # score parameters that had no value
    causes: tuple[str, ...] = ()  # parameters that contributed; it clears only once they are re-measured
    cleared_at: datetime | None = None
    clear_reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.state != AlertState.CLEARED

    def to_json(self) -> dict[str, object]:
        return {
            "alert_id": self.alert_id,
            "subject": self.subject,
            "kind": self.kind,
            "level": str(self.level),
            "state": str(self.state),
            "message": self.message,
            "raised_at": self.raised_at.isoformat(),
            "score": self.score,
            "partial": self.partial,
            "inputs": [list(i) for i in self.inputs],
            "model": self.model,
            "updated_at": _iso(self.updated_at),
            "notified_at": _iso(self.notified_at),
            "acknowledged": self.acknowledged,
            "acks": [a.to_json() for a in self.acks],
            "missing": list(self.missing),
            "causes": list(self.causes),
            "cleared_at": _iso(self.cleared_at),
            "clear_reason": self.clear_reason,
            "open": self.is_open,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Alert:
        """Inverse of :meth:`to_json` (tolerates the older, shorter payload)."""
        return cls(
            alert_id=str(d["alert_id"]),
            subject=str(d["subject"]),
            kind=str(d["kind"]),
            level=AlertLevel(str(d["level"])),
            state=str(d["state"]),
            message=str(d.get("message", "")),
            raised_at=datetime.fromisoformat(str(d["raised_at"])),
            score=None if d.get("score") is None else float(d["score"]),
            partial=bool(d.get("partial", False)),
            inputs=tuple((str(n), float(v), str(u)) for n, v, u in d.get("inputs") or ()),
            model=str(d.get("model", "")),
            updated_at=_dt(d.get("updated_at")),
            notified_at=_dt(d.get("notified_at")),
            acknowledged=bool(d.get("acknowledged", False)),
            acks=tuple(Ack(str(a["who"]), datetime.fromisoformat(str(a["at"]))) for a in d.get("acks") or ()),
            missing=tuple(str(m) for m in d.get("missing") or ()),
            causes=tuple(str(c) for c in d.get("causes") or ()),
            cleared_at=_dt(d.get("cleared_at")),
            clear_reason=str(d.get("clear_reason", "")),
        )


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _dt(v: object) -> datetime | None:
    return None if v is None else datetime.fromisoformat(str(v))
