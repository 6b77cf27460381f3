"""Every alert version, from the model scorer and the SpO2 safety net alike, saved to the store's
alert lane through a future (never by blocking the event loop on an fsync) and logged as one line.

The scorer sees this object as its store (``save_alert`` / ``load_alerts``): saving returns at
once; the commit is confirmed later on the store's writer thread, and a failure is counted and
logged. The log line carries the alert's id, state, level and kind, never its subject (a patient
id) or the values that caused it (DESIGN §7).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Protocol

log = logging.getLogger("edge_agent.alerts")


class AlertLaneStore(Protocol):
    """The part of edge_agent.store.BufferStore the recorder uses."""

    def submit_alert(self, alert_id: str, payload: dict[str, object], *, updated_at: datetime) -> Future[int]: ...

    def load_alerts(self, *, open_only: bool = False) -> list[dict[str, Any]]: ...

    def recent(self, *, since: datetime) -> list[Any]: ...


class AlertRecorder:
    def __init__(self, store: AlertLaneStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._inflight: set[Future[int]] = set()
        self.saved = 0
        self.save_errors = 0

    def save_alert(self, alert_id: str, payload: dict[str, object], *, updated_at: datetime) -> Future[int] | None:
        log.info(
            "event=alert_%s alert=%s level=%s kind=%s",
            payload.get("state", "changed"),
            alert_id,
            payload.get("level"),
            payload.get("kind"),
        )
        try:
            future = self._store.submit_alert(alert_id, payload, updated_at=updated_at)
        except Exception as exc:  # store closed or full: the nurse still sees it; the gap is counted
            self._failed(alert_id, exc)
            return None
        with self._lock:
            self._inflight.add(future)
        future.add_done_callback(lambda f: self._done(alert_id, f))
        return future

    def _done(self, alert_id: str, future: Future[int]) -> None:
        with self._lock:
            self._inflight.discard(future)
        exc = future.exception()
        if exc is None:
            with self._lock:
                self.saved += 1
        else:
            self._failed(alert_id, exc)

    def _failed(self, alert_id: str, exc: BaseException) -> None:
        with self._lock:
            self.save_errors += 1
        log.error("event=alert_save_failed alert=%s error=%r", alert_id, type(exc).__name__)

    def load_alerts(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        return self._store.load_alerts(open_only=open_only)

    def recent(self, *, since: datetime) -> list[Any]:
        """Readings since ``since`` (the scorer's warm start after a restart)."""
        return self._store.recent(since=since)

    def pending_futures(self) -> list[Future[int]]:
        with self._lock:
            return list(self._inflight)

    def status(self) -> dict[str, int]:
        with self._lock:
            return {
                "alerts_saved": self.saved,
                "alert_save_errors": self.save_errors,
                "alerts_saving": len(self._inflight),
            }
