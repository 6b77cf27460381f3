"""Risk scoring at the edge: signed ONNX models, sustained-event detectors, alerts.

Integration (edge_agent.pipeline)::

    scorer = build_scorer(models_dir=None, store=buffer_store, settings=ScoringSettings())
    events = scorer.on_readings(committed_readings, now)   # after the commit
    events += scorer.tick(now)                              # periodically (e.g. every 5 s)
    scorer.acknowledge(alert_id, who="nurse Lan", now=now)
    scorer.set_manual("patient-17", resp_rate=22, consciousness="A", on_oxygen=False)
    scorer.set_patient("patient-17", PatientContext(AgeBand.YEARS_1_4))  # the score follows the person
    scorer.status()   # {"available": bool, "error": str, "models": [...], "open_alerts": n, ...}

See docs/models.md and docs/scores.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from edge_agent.alerts import Alert
from edge_agent.scoring.errors import (
    AlertNotFound,
    ManualObservationError,
    ModelRejected,
    RuntimeUnavailable,
    ScoringError,
    TrustedKeyError,
)
from edge_agent.scoring.registry import LoadedModel, ModelRegistry, trusted_keys
from edge_agent.scoring.runtime import load_runtime
from edge_agent.scoring.scorer import AlertStore, Scorer, SubjectScore, utc_clock
from edge_agent.scoring.settings import ScoringSettings, ScoringSettingsError
from models import BUILT_DIR, signing

log = logging.getLogger(__name__)

__all__ = [
    "AlertNotFound",
    "AlertStore",
    "LoadedModel",
    "ManualObservationError",
    "ModelRegistry",
    "ModelRejected",
    "RuntimeUnavailable",
    "Scorer",
    "ScoringError",
    "ScoringSettings",
    "ScoringSettingsError",
    "SubjectScore",
    "TrustedKeyError",
    "build_scorer",
]


def build_scorer(
    *,
    models_dir: Path | None,
    store: AlertStore | None,
    clock: Callable[[], datetime] = utc_clock,
    settings: ScoringSettings | None = None,
) -> Scorer:
    """A ready scorer; never raises for model or runtime trouble (it shows in ``status()``).

    ``models_dir``: directory of signed manifests to load (default: the shipped models/built).
    ``store``: the BufferStore (alerts are saved with ``save_alert`` and open ones restored with
    ``load_alerts``); None keeps alerts in memory only.
    """
    settings = settings or ScoringSettings()
    runtime = load_runtime(probe=settings.probe_runtime)
    dev_id = signing.key_id(signing.dev_public_key()) if settings.allow_dev_key else None
    key_error = ""
    try:
        trusted = trusted_keys(settings.trusted_keys, allow_dev_key=settings.allow_dev_key)
    except TrustedKeyError as exc:  # every model would be refused: say why in status
        trusted = trusted_keys((), allow_dev_key=settings.allow_dev_key)
        key_error = str(exc)
        log.error("event=trusted_key_unreadable error=%r", key_error)
    registry = ModelRegistry(runtime=runtime, trusted=trusted, pushed_dir=settings.pushed_models_dir, dev_key_id=dev_id)
    registry.config_error = key_error
    if runtime.available:
        registry.load_dir(models_dir or BUILT_DIR, origin="shipped")
        registry.load_pushed()
    else:
        log.error("event=scoring_unavailable error=%r", runtime.error)
    scorer = Scorer(registry=registry, runtime=runtime, store=store, clock=clock, settings=settings)
    if store is not None:
        try:
            restored = [Alert.from_json(p) for p in store.load_alerts(open_only=True)]
            scorer.book.restore(a for a in restored if a.is_open)
        except Exception as exc:
            scorer.store_errors += 1
            log.error("event=alert_restore_failed error=%r", exc)
        recent = getattr(store, "recent", None)
        if recent is not None:  # resume with the last window of readings (events, latest values)
            try:
                scorer.warm_start(recent(since=clock() - timedelta(seconds=settings.window_s)))
            except Exception as exc:
                scorer.store_errors += 1
                log.error("event=scoring_warm_start_failed error=%r", exc)
    return scorer
