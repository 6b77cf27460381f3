"""DashboardPart: the nurse's page as one of the agent's components (edge_agent.component).

It starts after the pipeline (visits attach devices to patients there) and stops before it. On
the loop it subscribes to the agent's events (readings after their commit, alerts, device
states, drops) and turns them into messages for the open pages; a job refreshes scores and the
sync/disk status every couple of seconds. Blocking work (the store, scrypt) goes to the default
executor. Visits are kept sealed in the store (edge_agent.store.visits) and re-opened at start;
the nurse's entered values are not carried over a restart (their time would be lost), so a
restarted visit's score shows as partial until they are entered again.

If the address cannot be bound (port in use), the agent keeps running and alerting; the error
shows in status (``dashboard.error``) and the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from device_drivers.records import Reading
from edge_agent.alerts import Alert
from edge_agent.component import Job
from edge_agent.config import AgentConfig
from edge_agent.dashboard.server import DashboardServer, PageInfo
from edge_agent.dashboard.view import LiveView
from edge_agent.dashboard.visits import (
    Identifier,
    Visit,
    VisitBook,
    VisitError,
    parse_age_band,
    parse_assignment,
    parse_identifier,
    parse_observations,
)
from edge_agent.events import AlertChanged, DeviceStateChanged, Event, EventHub, ReadingsDropped, ReadingsStored
from edge_agent.pipeline import Pipeline
from edge_agent.scoring.errors import ManualObservationError
from edge_agent.scoring.patient import AgeBand, PatientContext
from edge_agent.store import BufferStore
from webui import httpd as web

log = logging.getLogger("edge_agent.dashboard")

REFRESH_S = 2.0
HISTORY = timedelta(hours=2)  # a re-opened visit's trend comes from its readings in this window


@dataclass(frozen=True, slots=True)
class VisitPreset:
    """A visit the demo opens at start (a simulated patient)."""

    kind: str
    value: str
    device_ids: tuple[str, ...]
    age_band: AgeBand | None = AgeBand.ADULT
    pregnant: bool = False
    observations: Mapping[str, object] = field(default_factory=dict)


def _method(obj: object, name: str) -> Callable[..., Any] | None:
    """``obj.name``, or that of the scorer it wraps (ScorerWithSafetyNet.scorer)."""
    for candidate in (obj, getattr(obj, "scorer", None)):
        fn = getattr(candidate, name, None) if candidate is not None else None
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


class DashboardPart:
    name = "dashboard"

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: Callable[[], BufferStore],
        pipeline: Callable[[], Pipeline],
        scorer: Callable[[], object],
        status: Callable[[], dict[str, object]],
        events: EventHub,
        clock: Callable[[], datetime],
    ) -> None:
        assert config.dashboard is not None
        self.config = config
        self.settings = config.dashboard
        self._store = store
        self._pipeline = pipeline
        self._scorer = scorer
        self._status = status
        self.events = events
        self.clock = clock
        self.presets: list[VisitPreset] = []
        self.book = VisitBook(tuple(d.id for d in config.devices))
        self.view = LiveView(self.book)
        self.server = DashboardServer(
            info=PageInfo(
                station=config.gateway.station_name,
                gateway_id=config.gateway.id,
                timezone=config.gateway.timezone,
                devices=self.book.station_devices,
            ),
            view=self.view,
            controller=self,
            pin_file=config.pin_path,
            session_ttl_s=self.settings.session_ttl_s,
            clock=clock,
        )
        self._runner: web.AppRunner | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._refresh_pending = False
        self.url = f"http://{_url_host(self.settings.host)}:{self.settings.port}/"
        self.error = ""

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self.view.set_devices({"id": d.id, "format": d.format, "state": "connecting"} for d in self.config.devices)
        await self._restore_visits()
        for preset in self.presets:
            await self._open_preset(preset)
        for alert in self._open_alerts():
            self.view.alert(alert)
        self._unsubscribe = self.events.subscribe(self._on_event)
        runner = web.AppRunner(self.server.app, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.host, self.settings.port, reuse_address=True).start()
        except OSError as exc:  # the nurse's alerts still reach status and the hub: keep running
            self.error = f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror or exc}"
            log.error("event=dashboard_unavailable error=%r", self.error)
            await runner.cleanup()
            return
        self._runner = runner
        log.info("event=dashboard_listening url=%s", self.url)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.server.close_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.server.close()

    def jobs(self) -> Sequence[Job]:
        return [Job("dashboard_refresh", REFRESH_S, self._refresh)]

    def report(self) -> Mapping[str, object]:
        return {
            "dashboard": {
                "url": self.url,
                "listening": self._runner is not None,
                "error": self.error,
                "clients": len(self.server.clients),
                "sessions": len(self.server.sessions),
                "open_visits": len(self.book.open_visits()),
                "logins": self.server.logins,
                "failed_logins": self.server.failed_logins,
            }
        }

    # -- events -----------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, ReadingsStored):
            self.server.broadcast(self.view.readings(event.readings, time.time() * 1000))
            self._refresh_scores_soon()
        elif isinstance(event, AlertChanged):
            self.server.broadcast(self.view.alert(event.alert))
        elif isinstance(event, DeviceStateChanged):
            self.server.broadcast(
                self.view.device_state(event.device_id, event.state, event.detail, event.at.isoformat())
            )
        elif isinstance(event, ReadingsDropped):
            self.server.broadcast(self.view.dropped_readings(event.device_id, event.count))

    def _refresh_scores_soon(self) -> None:
        """After the pipeline has scored the readings just published (same loop turn)."""
        if not self._refresh_pending:
            self._refresh_pending = True
            asyncio.get_running_loop().call_soon(self._refresh_scores)

    def _refresh_scores(self) -> None:
        self._refresh_pending = False
        scores = _method(self._scorer(), "scores")
        if scores is None:
            return
        try:
            docs = [s.to_json() for s in scores()]
        except Exception as exc:  # the page must not stop on a scorer bug
            log.error("event=dashboard_scores_failed error=%r", exc)
            return
        for message in self.view.set_scores(docs):
            self.server.broadcast(message)

    async def _refresh(self) -> None:
        self.server.sessions.prune()
        self._refresh_scores()
        try:
            doc = self._status()
        except Exception as exc:
            log.error("event=dashboard_status_failed error=%r", exc)
            return
        message = self.view.set_status(doc)
        if message is not None:
            self.server.broadcast(message)

    def _open_alerts(self) -> list[Alert]:
        fn = _method(self._scorer(), "open_alerts")
        return list(fn()) if fn is not None else []

    # -- visits -----------------------------------------------------------------------------
    def _today(self) -> date:
        return self.clock().astimezone(self.config.gateway.tz).date()

    def _set_patient(self, patient_id: str, ctx: PatientContext | None) -> None:
        fn = _method(self._scorer(), "set_patient")
        if fn is not None:
            fn(patient_id, ctx)

    async def _save(self, visit: Visit, *, is_open: bool) -> None:
        store = self._store()
        payload = visit.to_store()
        now = self.clock()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: store.save_visit(visit.visit_id, payload, is_open=is_open, updated_at=now)
        )

    async def _attach(self, visit: Visit) -> None:
        self._pipeline().open_visit(visit.patient_id, visit.device_ids)
        self._set_patient(visit.patient_id, visit.context)

    async def _restore_visits(self) -> None:
        store = self._store()
        loop = asyncio.get_running_loop()
        try:
            docs = await loop.run_in_executor(None, lambda: store.load_visits(open_only=True))
        except Exception as exc:
            log.error("event=dashboard_visits_unreadable error=%r", exc)
            return
        since = self.clock() - HISTORY
        for d in docs:
            try:
                visit = Visit.from_store(str(d["visit_id"]), d)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("event=dashboard_visit_skipped error=%s", type(exc).__name__)
                continue
            self.book.restore(visit)
            await self._attach(visit)
            pid = visit.patient_id
            history = await loop.run_in_executor(None, lambda p=pid: store.recent(since=since, patient_id=p, limit=500))  # type: ignore[misc]
            self.view.load_history(visit, history)
            for device, start, end in visit.assigned:
                assigned = await self._unassigned(device, start, end, visit)
                warm = _method(self._scorer(), "warm_start")
                if warm is not None:
                    warm(assigned)
                self.view.load_history(visit, assigned)
        if docs:
            log.info("event=dashboard_visits_restored visits=%d", len(self.book.open_visits()))

    async def _open_preset(self, preset: VisitPreset) -> None:
        ident = Identifier(preset.kind, preset.value)
        existing = self.book.by_patient(ident.patient_id)
        if existing is None:
            free = tuple(
                d for d in preset.device_ids if d in self.book.station_devices and self.book.visit_of_device(d) is None
            )
            existing = self.book.open(
                ident, age_band=preset.age_band, pregnant=preset.pregnant, device_ids=free, now=self.clock()
            )
            await self._attach(existing)
        if preset.observations:
            await self._observe(existing, dict(preset.observations), "demo")
        await self._save(self.book.get(existing.visit_id), is_open=True)

    async def open_visit(self, form: Mapping[str, Any], who: str) -> dict[str, object]:
        ident = parse_identifier(str(form.get("kind", "")), str(form.get("identifier", "")))
        birth = ident.birth
        if birth is None and form.get("birth"):
            try:
                birth = date.fromisoformat(str(form["birth"]))
            except ValueError:
                raise VisitError("birth", "Enter the date of birth as day, month and year") from None
        band = parse_age_band(str(form.get("age_band") or ""), birth, self._today())
        devices = form.get("devices") or []
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise VisitError("devices", "Unknown device")
        visit = self.book.open(
            ident, age_band=band, pregnant=bool(form.get("pregnant")), device_ids=tuple(devices), now=self.clock()
        )
        await self._attach(visit)
        await self._save(visit, is_open=True)
        log.info("event=visit_opened devices=%d", len(visit.device_ids))
        self.server.broadcast(self.view.visits_changed())
        return {"visit_id": visit.visit_id}

    async def _observe(self, visit: Visit, values: dict[str, object], who: str) -> Visit:
        set_manual = _method(self._scorer(), "set_manual")
        if set_manual is not None:
            try:
                set_manual(visit.patient_id, **values)
            except ManualObservationError as exc:
                raise VisitError(exc.key, "This value cannot be used") from exc
        updated = self.book.observe(visit.visit_id, values, who=who, now=self.clock())
        self._pipeline().tick()  # score now, not at the next scoring tick
        self._refresh_scores()
        return updated

    async def observe(self, visit_id: str, form: Mapping[str, Any], who: str) -> dict[str, object]:
        visit = self.book.get(visit_id)
        updated = await self._observe(visit, parse_observations(dict(form)), who)
        await self._save(updated, is_open=True)
        self.server.broadcast(self.view.visits_changed())
        return {"visit_id": visit_id}

    async def _unassigned(self, device: str, start: datetime, end: datetime, visit: Visit) -> list[Reading]:
        """The device's readings measured in [start, end] with no patient, as the visit's."""
        store = self._store()
        rows = await asyncio.get_running_loop().run_in_executor(
            None, lambda: store.recent(since=start, device_id=device, limit=5000)
        )
        return [
            dataclasses.replace(r, patient_id=visit.patient_id)
            for r in rows
            if r.patient_id is None and r.measured_at <= end
        ]

    async def assign(self, visit_id: str, form: Mapping[str, Any], who: str) -> dict[str, object]:
        """Readings a device took before the visit was opened (no patient attached) become the
        visit's on this gateway: shown with it, scored for the patient, alerts raised. The store's
        rows and what the hub has are not changed (docs/dashboard.md)."""
        visit = self.book.get(visit_id)
        device, minutes = parse_assignment(dict(form), self.book.station_devices)
        now = self.clock()
        since = now - timedelta(minutes=minutes)
        readings = await self._unassigned(device, since, now, visit)
        if not readings:
            raise VisitError("device", "No unassigned reading from this device in that time")
        updated = self.book.assign(visit_id, device, since, now)
        self.view.load_history(updated, readings)
        on_readings = _method(self._scorer(), "on_readings")
        if on_readings is not None:
            for alert in on_readings(readings, now):
                self.events.publish(AlertChanged(alert))
        self._refresh_scores()
        await self._save(updated, is_open=True)
        log.info("event=readings_assigned readings=%d", len(readings))
        self.server.broadcast(self.view.visits_changed())
        return {"visit_id": visit_id, "assigned": len(readings)}

    async def close_visit(self, visit_id: str, who: str) -> dict[str, object]:
        visit = self.book.close(visit_id, self.clock())
        self._pipeline().close_visit(visit.device_ids)
        self._set_patient(visit.patient_id, None)
        await self._save(visit, is_open=False)
        log.info("event=visit_closed")
        self.server.broadcast(self.view.visits_changed())
        return {"visit_id": visit_id}

    async def acknowledge(self, alert_id: str, who: str) -> dict[str, object]:
        ack = _method(self._scorer(), "acknowledge")
        if ack is None:
            raise VisitError("alert", "This alert cannot be acknowledged")
        try:
            alert = ack(alert_id, who, self.clock())
        except KeyError:
            raise VisitError("alert", "This alert is no longer open") from None
        self.events.publish(AlertChanged(alert))  # the page, status and the console see it
        return {"alert_id": alert_id}


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
