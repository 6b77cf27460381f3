"""The gateway daemon: wires config, store, scoring, pipeline, device sessions and the scheduler.

Concurrency model (DESIGN §7): one asyncio loop owns the pipeline, scoring and events. Blocking
I/O sits at the edges with one explicit hand-off each: a worker thread per serial port, the
store's group-commit writer thread, apscheduler jobs in its executor. Shutdown on SIGTERM/SIGINT
stops the sessions, drains everything already parsed into the store (nothing half-written), closes
the store cleanly and tells systemd (STOPPING=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from device_drivers.records import utcnow
from edge_agent import __version__
from edge_agent.config import AgentConfig, DeviceConfig
from edge_agent.devices import BleSession, DeviceSession, DeviceStatus, SerialSession, ble_link_for
from edge_agent.events import DeviceStateChanged, EventHub
from edge_agent.pipeline import Pipeline, Scorer
from edge_agent.safety_net import ScorerWithSafetyNet, SpO2SafetyNet
from edge_agent.sdnotify import Notifier
from edge_agent.store import BufferStore, StoreCorruptError

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
PID_FILE = "agent.pid"
SCORING_TICK_S = 5.0


@dataclass(frozen=True, slots=True)
class RunSummary:
    readings_stored: int
    alerts: int
    synced: int
    pending: int
    dropped: int

    def as_dict(self) -> dict[str, int]:
        return {
            "readings_stored": self.readings_stored,
            "alerts": self.alerts,
            "synced": self.synced,
            "pending": self.pending,
            "dropped": self.dropped,
        }


def build_scorer(config: AgentConfig, store: BufferStore) -> Scorer:
    """The model scorer (NEWS2, BP category, sustained events) backed by the SpO2 safety net.

    Model or runtime trouble never stops the agent: it shows in status ("scores unavailable")
    and the safety net takes over SpO2 alerts.
    """
    from edge_agent.scoring import build_scorer as build_model_scorer

    settings = config.scoring
    if settings.pushed_models_dir is None:
        settings = dataclasses.replace(settings, pushed_models_dir=config.state_dir / "models")
    scorer = build_model_scorer(models_dir=config.models_dir, store=store, settings=settings)
    status = scorer.status()
    if not status.get("available"):
        log.error("event=scores_unavailable error=%r", status.get("error"))
    return ScorerWithSafetyNet(scorer, SpO2SafetyNet(config.alerts.spo2_low))


class Agent:
    def __init__(
        self, config: AgentConfig, *, events: EventHub | None = None, notifier: Notifier | None = None
    ) -> None:
        self.config = config
        self.events = events or EventHub()
        self.notifier = notifier or Notifier()
        self.started_at = utcnow()
        self.store: BufferStore | None = None
        self.pipeline: Pipeline | None = None
        self.scorer: Scorer | None = None
        self.sessions: list[DeviceSession] = []
        self._simulators: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.synced = 0
        self.quarantined: str | None = None  # path of a corrupt buffer moved aside at start

    # -- lifecycle ------------------------------------------------------------------------------
    def _open(self) -> None:
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(cfg.state_dir, 0o700)
        self.store = self._open_store()
        self.scorer = build_scorer(cfg, self.store)
        self.pipeline = Pipeline(gateway_id=cfg.gateway.id, store=self.store, scorer=self.scorer, events=self.events)
        (cfg.state_dir / PID_FILE).write_text(f"{os.getpid()}\n")

    def _open_store(self) -> BufferStore:
        """Open the buffer; a database that fails its integrity check is moved aside (kept for a
        technician to recover what it can) and a fresh one started, because the station's alerts
        must not stop on a damaged file. Status reports the quarantine until an operator clears it."""
        cfg = self.config
        try:
            return BufferStore.open(
                cfg.db_path, gateway_id=cfg.gateway.id, keystore_path=cfg.keystore_path, config=cfg.store
            )
        except StoreCorruptError as exc:
            moved = BufferStore.quarantine(cfg.db_path, utcnow())
            self.quarantined = str(moved)
            log.error("event=store_corrupt action=quarantined_and_restarted moved_to=%s error=%r", moved, str(exc))
            return BufferStore.open(
                cfg.db_path, gateway_id=cfg.gateway.id, keystore_path=cfg.keystore_path, config=cfg.store
            )

    def _session_for(self, dev: DeviceConfig) -> DeviceSession:
        assert self.pipeline is not None
        if dev.transport == "ble":
            return BleSession(
                dev,
                self.pipeline.submit,
                self._device_state,
                link=ble_link_for(dev, self.config.gateway.tz),
                records_path=self.config.state_dir / "devices" / f"{dev.id}.records.json",
            )
        if dev.transport == "simulated":
            from device_drivers.simulators import create_simulator

            link = self.config.state_dir / "sim" / dev.id
            sim = create_simulator(dev.format, link=link, scenario=dev.scenario, speed=dev.speed).start()
            self._simulators.append(sim)
            dev = dataclasses.replace(dev, transport="serial", port=str(link))
        return SerialSession(dev, self.pipeline.submit, self._device_state)

    def _device_state(self, status: DeviceStatus) -> None:
        self.events.publish(DeviceStateChanged(status.device_id, str(status.state), status.detail, status.since))

    async def run(self, stop: asyncio.Event) -> RunSummary:
        """Run until ``stop`` is set; returns the run's summary after a clean shutdown."""
        loop = asyncio.get_running_loop()
        self._open()
        assert self.store is not None and self.pipeline is not None
        scheduler = AsyncIOScheduler(event_loop=loop, timezone="UTC")
        sched = self.config.scheduler
        scheduler.add_job(
            self.write_status,
            "interval",
            seconds=sched.status_interval_s,
            id="status_snapshot",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self.store.run_retention,
            "interval",
            seconds=sched.retention_interval_s,
            id="retention",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self.pipeline.tick, "interval", seconds=SCORING_TICK_S, id="scoring_tick", max_instances=1, coalesce=True
        )
        try:
            for dev in self.config.devices:
                session = self._session_for(dev)
                self.sessions.append(session)
                self._tasks.append(loop.create_task(session.run(), name=f"device-{dev.id}"))
            scheduler.start()
            self.write_status()
            self.notifier.ready(f"{len(self.sessions)} devices")
            log.info(
                "event=agent_ready version=%s gateway=%s devices=%d",
                __version__,
                self.config.gateway.id,
                len(self.sessions),
            )
            await self._main_loop(stop)
        finally:
            self.notifier.stopping()
            log.info("event=agent_stopping")
            scheduler.shutdown(wait=False)
            await self._shutdown()
        return self.summary()

    async def _main_loop(self, stop: asyncio.Event) -> None:
        """Wait for stop; ping the systemd watchdog from here, so a wedged loop is restarted."""
        interval = self.notifier.watchdog_interval_s or 5.0
        while not stop.is_set():
            self.notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sim in self._simulators:
            sim.stop()
        if self.pipeline is not None:
            await self.pipeline.drain()
        if self.store is not None:
            self.write_status()
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
        with contextlib.suppress(FileNotFoundError):
            (self.config.state_dir / PID_FILE).unlink()
        log.info("event=agent_stopped")

    # -- status ---------------------------------------------------------------------------------
    def summary(self) -> RunSummary:
        assert self.store is not None and self.pipeline is not None
        stats = self.store.stats()
        return RunSummary(
            readings_stored=self.pipeline.counters.stored,
            alerts=self.pipeline.counters.alerts,
            synced=self.synced,
            pending=stats.pending,
            dropped=self.pipeline.counters.dropped + self.pipeline.counters.store_errors,
        )

    def status(self) -> dict[str, object]:
        assert self.store is not None and self.pipeline is not None and self.scorer is not None
        stats = self.store.stats()
        store = {**dataclasses.asdict(stats), "quarantined": self.quarantined}
        return {
            "version": __version__,
            "gateway_id": self.config.gateway.id,
            "province": self.config.gateway.province,
            "written_at": utcnow().isoformat(),
            "started_at": self.started_at.isoformat(),
            "pid": os.getpid(),
            "devices": [s.status.as_dict(s.parser) for s in self.sessions],
            "pipeline": self.pipeline.counters.as_dict(),
            "store": _jsonable(store),
            "backlog": {"pending": stats.pending, "oldest_pending_age_s": stats.oldest_pending_age_s},
            "sync": {"synced": self.synced, "last_sync_at": None, "state": "not configured"},
            "scoring": self.scorer.status(),
        }

    def write_status(self) -> None:
        """Atomically replace ``status.json`` in the state dir (read by ``edge-agent status``)."""
        path = self.config.state_dir / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.status(), indent=2, default=str))
            tmp.replace(path)
        except OSError as exc:  # e.g. disk full: status is best effort, the agent goes on
            log.warning("event=status_write_failed error=%r", exc)


def _jsonable(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
