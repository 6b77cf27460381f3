"""Scoring settings: one frozen dataclass, validated on construction (the lead maps it to TOML
``[scoring]``; every field is a key of that table)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.alerts import AlertLevel
from models.events import DEFAULT_RULES, EventRule


class ScoringSettingsError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"scoring.{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class Bounds:
    """The allowed range of one numeric setting, both ends included (docs/config.md)."""

    minimum: float
    maximum: float
    integer: bool = False


MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

# Every numeric field of ScoringSettings and its range. edge_agent.config builds its table of
# numeric keys from this one, and tests/test_docs.py checks docs/config.md against that table.
SCORING_RANGES: dict[str, Bounds] = {
    "window_s": Bounds(1, DAY),
    "manual_valid_s": Bounds(MINUTE, DAY),
    "renotify_s": Bounds(MINUTE, DAY),
    "stale_clear_s": Bounds(MINUTE, DAY),
    "spo2_scale_default": Bounds(1, 2, integer=True),
    "desaturation_s": Bounds(0, HOUR),
    "tachycardia_s": Bounds(0, HOUR),
    "bradycardia_s": Bounds(0, HOUR),
    "fever_s": Bounds(0, HOUR),
    "hypothermia_s": Bounds(0, HOUR),
    "event_max_gap_s": Bounds(1, HOUR),
}


def show_number(x: float) -> str:
    """``1000000`` rather than ``1e+06`` or ``1000000.0`` in messages and docs."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def number_problem(value: object, bounds: Bounds) -> str | None:
    """What is wrong with ``value`` for ``bounds`` (one line), or None if it is acceptable.

    Shared by the config loader so that every numeric key says the same things.
    """
    kind = "an integer" if bounds.integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:39] + "…"
        return f"must be {kind}, got {type(value).__name__} {shown}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if bounds.integer and not isinstance(value, int):
        return f"must be an integer (no decimal point), got {value!r}"
    if not bounds.minimum <= value <= bounds.maximum:
        shown = repr(value) if abs(value) < 1e15 else f"{float(value):.3g}"
        return f"must be between {show_number(bounds.minimum)} and {show_number(bounds.maximum)}, got {shown}"
    return None


_DEFAULT_DURATIONS = {r.kind: r.duration_s for r in DEFAULT_RULES}


@dataclass(frozen=True, slots=True)
class ScoringSettings:
    # A device value counts as "latest" for scoring only if measured within this window.
    window_s: float = 300.0
    # Every value the nurse enters (resp rate, consciousness, on_oxygen, SpO2 scale, PEWS entries)
    # stays valid this long, and no longer than the visit: a stale "on air" under-scores by 2 and a
    # stale scale 2 scores SpO2 88-92 as 0.
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
        for key, bounds in SCORING_RANGES.items():
            problem = number_problem(getattr(self, key), bounds)
            if problem is not None:
                raise ScoringSettingsError(key, problem)
        longest = max(self.desaturation_s, self.tachycardia_s, self.bradycardia_s, self.fever_s, self.hypothermia_s)
        if longest > self.window_s:
            raise ScoringSettingsError(
                "window_s",
                f"must be >= the longest sustained-event duration ({show_number(longest)} s), got "
                f"{show_number(self.window_s)}; raise window_s or shorten the *_s event durations",
            )
        for key in ("news2_min_level", "bp_crisis_level"):
            if not isinstance(getattr(self, key), AlertLevel):
                raise ScoringSettingsError(key, "must be an AlertLevel")

    def event_rules(self) -> tuple[EventRule, ...]:
        return tuple(r.with_duration(float(getattr(self, f"{r.kind}_s"))) for r in DEFAULT_RULES)
