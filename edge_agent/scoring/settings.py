"""Scoring settings: one frozen dataclass, validated on construction (the lead maps it to TOML
``[scoring]``; every field is a key of that table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.alerts import AlertLevel
from models.events import DEFAULT_RULES, EventRule


class ScoringSettingsError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"scoring.{key}: {message}")
        self.key = key


_DEFAULT_DURATIONS = {r.kind: r.duration_s for r in DEFAULT_RULES}


@dataclass(frozen=True, slots=True)
class ScoringSettings:
    # A device value counts as "latest" for scoring only if measured within this window.
    window_s: float = 300.0
    # Resp rate and consciousness typed by the nurse stay valid this long; on_oxygen and the SpO2
    # scale stay as set until changed (they are orders, not measurements).
    manual_valid_s: float = 3600.0
    # Re-raise an open, unacknowledged alert after this long (15 min).
    renotify_s: float = 900.0
    # Close an open alert whose subject has sent nothing for this long (reason "stale").
    stale_clear_s: float = 3600.0
    # NEWS2 SpO2 scale when none was set for the subject; only a clinician may choose 2
    # (clinical.md §3.1), so the agent never switches by itself.
    spo2_scale_default: int = 1
    # Lowest NEWS2 risk that raises an alert (clinical.md §3.2: 1–4 is "low").
    news2_min_level: AlertLevel = AlertLevel.LOW
    # Level of the severe-BP (>=180/110) alert: "urgent review" (project choice, clinical.md §3.4).
    bp_crisis_level: AlertLevel = AlertLevel.MEDIUM
    # Sustained-event durations, seconds (defaults and sources: models/events.py).
    desaturation_s: float = _DEFAULT_DURATIONS["desaturation"]
    tachycardia_s: float = _DEFAULT_DURATIONS["tachycardia"]
    bradycardia_s: float = _DEFAULT_DURATIONS["bradycardia"]
    fever_s: float = _DEFAULT_DURATIONS["fever"]
    hypothermia_s: float = _DEFAULT_DURATIONS["hypothermia"]
    # Two samples further apart than this break a sustained run.
    event_max_gap_s: float = 15.0
    # Model-signing public keys (PEM) trusted besides / instead of the development key.
    trusted_keys: tuple[Path, ...] = field(default=())
    # Trust the committed DEVELOPMENT key (models/keys); set false on production gateways.
    allow_dev_key: bool = True
    # Where models pushed by the hub are kept (e.g. <state_dir>/models); None = no pushes.
    pushed_models_dir: Path | None = None
    # Import onnxruntime in a child process first, so a crash (SIGILL on an unsupported CPU)
    # is reported in status instead of killing the agent.
    probe_runtime: bool = True

    def __post_init__(self) -> None:
        for key in (
            "window_s", "manual_valid_s", "renotify_s", "stale_clear_s", "event_max_gap_s",
            "desaturation_s", "tachycardia_s", "bradycardia_s", "fever_s", "hypothermia_s",
        ):  # fmt: skip
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ScoringSettingsError(key, f"must be a number >= 0, got {value!r}")
        if self.window_s <= 0 or self.renotify_s <= 0:
            raise ScoringSettingsError("window_s" if self.window_s <= 0 else "renotify_s", "must be > 0")
        if self.spo2_scale_default not in (1, 2):
            raise ScoringSettingsError("spo2_scale_default", "must be 1 or 2")
        longest = max(self.desaturation_s, self.tachycardia_s, self.bradycardia_s, self.fever_s, self.hypothermia_s)
        if longest > self.window_s:
            raise ScoringSettingsError("window_s", f"must be >= the longest event duration ({longest} s)")
        for key in ("news2_min_level", "bp_crisis_level"):
            if not isinstance(getattr(self, key), AlertLevel):
                raise ScoringSettingsError(key, "must be an AlertLevel")

    def event_rules(self) -> tuple[EventRule, ...]:
        return tuple(r.with_duration(float(getattr(self, f"{r.kind}_s"))) for r in DEFAULT_RULES)
