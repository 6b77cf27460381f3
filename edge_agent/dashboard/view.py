"""The live view model: what the page shows, built from the agent's events and status, and the
messages that update it. Pure logic (no I/O, no clock): the part feeds it on the event loop and
sends its messages to the browsers.

The page never receives a patient identifier: a visit is its random ``visit_id`` and a masked
label; an alert or a score about a patient names the visit.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from device_drivers.records import Reading
from edge_agent.alerts import Alert
from edge_agent.dashboard.visits import Visit, VisitBook

TREND_LEN = 30  # points per vital in a visit's inline chart
DEVICE_PREFIX = "device:"


def score_for_page(d: Mapping[str, Any]) -> dict[str, object]:
    """One subject's score (SubjectScore.to_json) as the page renders it: the generic keys
    (``score``, ``total``, ``level``, ``partial``, ``missing``, ``notes``) when the scorer gives
    them, else the NEWS2 ones. A partial total is a lower bound."""
    if "total" in d or "score" in d:
        name = d.get("score") or "NEWS2"
        total, level = d.get("total"), d.get("level")
        partial, missing = d.get("partial", True), d.get("missing") or ()
    else:
        name = "NEWS2"
        total, level = d.get("news2_total"), d.get("news2_level")
        partial, missing = d.get("news2_partial", True), d.get("news2_missing") or ()
    return {
        "name": str(name),
        "total": total,
        "level": level or "none",
        "partial": bool(partial),
        "missing": [str(m) for m in missing],
        "notes": [str(n) for n in d.get("notes") or ()],
        "bp_category": d.get("bp_category"),
        "pregnancy_bp": d.get("pregnancy_bp"),
        "imci_flags": [str(f) for f in d.get("imci_flags") or ()],
        "at": d.get("at"),
    }


def status_for_page(doc: Mapping[str, Any]) -> dict[str, object]:
    """The sync state, backlog and disk warnings from the agent's status document."""
    sync = doc.get("sync") or {}
    backlog = doc.get("backlog") or {}
    store = doc.get("store") or {}
    scoring = doc.get("scoring") or {}
    return {
        "sync": {
            "configured": bool(sync.get("configured")),
            "state": sync.get("state", "offline"),
            "last_sync_at": sync.get("last_ack_at") or sync.get("last_sync_at"),
        },
        "backlog": {"pending": backlog.get("pending", 0), "oldest_age_s": backlog.get("oldest_pending_age_s")},
        "disk": {
            "full": bool(store.get("disk_full")),
            "level": store.get("space_level", "normal"),
            "dropped": sum((store.get("dropped") or {}).values()),
        },
        "scores_available": bool(scoring.get("available", True)),
    }


class LiveView:
    def __init__(self, visits: VisitBook, *, trend_len: int = TREND_LEN) -> None:
        self.visits = visits
        self.trend_len = trend_len
        self.devices: dict[str, dict[str, Any]] = {}
        self.latest: dict[str, dict[str, dict[str, object]]] = {}  # visit id -> vital -> value
        self.trend: dict[str, dict[str, collections.deque[tuple[str, float]]]] = {}
        self.alerts: dict[str, dict[str, object]] = {}  # open alerts by id
        self.scores: dict[str, dict[str, object]] = {}  # visit id -> score_for_page
        self.status: dict[str, object] = {}
        self.dropped: dict[str, int] = {}

    # -- devices ----------------------------------------------------------------------------
    def set_devices(self, devices: Iterable[Mapping[str, Any]]) -> None:
        for d in devices:
            dev = self.devices.setdefault(str(d["id"]), {"id": str(d["id"]), "latest": {}})
            dev.update(format=d.get("format", ""), state=d.get("state", ""), detail=d.get("detail", ""))
            dev["since"] = d.get("since")

    def device_state(self, device_id: str, state: str, detail: str, at: str) -> dict[str, object]:
        dev = self.devices.setdefault(device_id, {"id": device_id, "latest": {}, "format": ""})
        dev.update(state=state, detail=detail, since=at)
        return {"type": "device", "device": self._device_page(dev)}

    def _device_page(self, dev: Mapping[str, Any]) -> dict[str, object]:
        visit = self.visits.visit_of_device(str(dev["id"]))
        return {**dev, "visit_id": None if visit is None else visit.visit_id}

    # -- readings ---------------------------------------------------------------------------
    def readings(self, readings: Sequence[Reading], sent_ms: float) -> dict[str, object]:
        """Committed readings -> one ``readings`` message (``sent_ms``: when the page was told,
        for the commit-to-page latency)."""
        items = []
        for r in readings:
            value: dict[str, object] = {
                "vital": str(r.vital),
                "value": r.value,
                "unit": str(r.unit),
                "at": r.measured_at.isoformat(),
                "device": r.device_id,
            }
            dev = self.devices.setdefault(r.device_id, {"id": r.device_id, "latest": {}, "format": "", "state": ""})
            dev["latest"][str(r.vital)] = value
            visit = self.visits.by_patient(r.patient_id) if r.patient_id else None
            vid = None if visit is None else visit.visit_id
            if vid is not None:
                self.latest.setdefault(vid, {})[str(r.vital)] = value
                series = self.trend.setdefault(vid, {}).setdefault(
                    str(r.vital), collections.deque(maxlen=self.trend_len)
                )
                series.append((r.measured_at.isoformat(), r.value))
            items.append({**value, "visit_id": vid})
        return {"type": "readings", "sent_ms": sent_ms, "items": items}

    def load_history(self, visit: Visit, readings: Sequence[Reading]) -> None:
        """Readings of a visit from the store (its own, or assigned to it afterwards), merged in
        time order with what the view already has, for its latest values and trend."""
        latest = self.latest.setdefault(visit.visit_id, {})
        trends = self.trend.setdefault(visit.visit_id, {})
        for r in sorted(readings, key=lambda r: r.measured_at):
            at = r.measured_at.isoformat()
            vital = str(r.vital)
            if vital not in latest or str(latest[vital]["at"]) <= at:
                latest[vital] = {"vital": vital, "value": r.value, "unit": str(r.unit), "at": at, "device": r.device_id}
            points = sorted({*trends.get(vital, ()), (at, r.value)})
            trends[vital] = collections.deque(points[-self.trend_len :], maxlen=self.trend_len)

    def dropped_readings(self, device_id: str, count: int) -> dict[str, object]:
        self.dropped[device_id] = self.dropped.get(device_id, 0) + count
        return {"type": "dropped", "device": device_id, "count": self.dropped[device_id]}

    # -- alerts -----------------------------------------------------------------------------
    def alert_page(self, a: Alert) -> dict[str, object]:
        visit = None if a.subject.startswith(DEVICE_PREFIX) else self.visits.by_patient(a.subject)
        return {
            "alert_id": a.alert_id,
            "visit_id": None if visit is None else visit.visit_id,
            "label": None if visit is None else visit.identifier.masked,
            "device": a.subject[len(DEVICE_PREFIX) :] if a.subject.startswith(DEVICE_PREFIX) else None,
            "kind": a.kind,
            "level": str(a.level),
            "state": str(a.state),
            "message": a.message,
            "score": a.score,
            "partial": a.partial,
            "missing": list(a.missing),
            "raised_at": a.raised_at.isoformat(),
            "updated_at": None if a.updated_at is None else a.updated_at.isoformat(),
            "acknowledged": a.acknowledged,
            "acks": [{"who": k.who, "at": k.at.isoformat()} for k in a.acks],
            "open": a.is_open,
        }

    def alert(self, a: Alert) -> dict[str, object]:
        page = self.alert_page(a)
        if a.is_open:
            self.alerts[a.alert_id] = page
        else:
            self.alerts.pop(a.alert_id, None)
        return {"type": "alert", "alert": page}

    # -- scores and status ------------------------------------------------------------------
    def set_scores(self, scores: Iterable[Mapping[str, Any]]) -> list[dict[str, object]]:
        """The scorer's latest scores; a message per open visit whose score changed."""
        out: list[dict[str, object]] = []
        for d in scores:
            visit = self.visits.by_patient(str(d.get("subject", "")))
            if visit is None:
                continue
            page = score_for_page(d)
            if self.scores.get(visit.visit_id) != page:
                self.scores[visit.visit_id] = page
                out.append({"type": "score", "visit_id": visit.visit_id, "score": page})
        return out

    def set_status(self, doc: Mapping[str, Any]) -> dict[str, object] | None:
        page = status_for_page(doc)
        if page == self.status:
            return None
        self.status = page
        return {"type": "status", "status": page}

    # -- visits -----------------------------------------------------------------------------
    def visits_changed(self) -> dict[str, object]:
        live = {v.visit_id for v in self.visits.open_visits()}
        for table in (self.latest, self.trend, self.scores):
            for vid in [k for k in table if k not in live]:
                del table[vid]
        return {"type": "visits", "visits": self._visits_page(), "devices": self._devices_page()}

    def _visits_page(self) -> list[dict[str, object]]:
        return [
            {
                **v.to_page(),
                "latest": self.latest.get(v.visit_id, {}),
                "trend": {k: list(s) for k, s in self.trend.get(v.visit_id, {}).items()},
                "score": self.scores.get(v.visit_id),
            }
            for v in self.visits.open_visits()
        ]

    def _devices_page(self) -> list[dict[str, object]]:
        return [self._device_page(d) for d in self.devices.values()]

    def snapshot(self) -> dict[str, object]:
        return {
            "type": "snapshot",
            "devices": self._devices_page(),
            "visits": self._visits_page(),
            "alerts": sorted(self.alerts.values(), key=lambda a: str(a["raised_at"])),
            "status": self.status,
            "dropped": self.dropped,
        }
