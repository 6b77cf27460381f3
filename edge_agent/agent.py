"""The gateway daemon: a list of components (edge_agent.component) with one lifecycle.

Concurrency model (DESIGN §7): one asyncio loop owns the pipeline, scoring, events and every
scheduled job. Blocking I/O sits at the edges with one explicit hand-off each: a worker thread per
serial port, the store's group-commit writer thread (readings and alerts are committed through
futures), the status writer's thread, and with ``[sync]`` paho's network thread and the sync's
store worker (edge_agent.sync). Start order is state dir and pid file, store, scoring, status,
sync (when configured), pipeline, dashboard (with ``[dashboard]``), devices, the garbage collector's
freeze (edge_agent.memory), scheduler; shutdown
(SIGTERM/SIGINT) runs it backwards: jobs stop, sessions stop, the sync sends what is pending for a
few seconds and says "offline", everything already parsed is drained into the store, the last status is written,
alerts in flight are committed, the store closes cleanly, the pid file goes, and systemd hears
STOPPING=1. A failed start stops what had started, the same way, and raises the original error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from device_drivers.records import utcnow
from edge_agent import __version__
from edge_agent.component import Component, Lifecycle
from edge_agent.config import AgentConfig
from edge_agent.devices import DeviceSession
from edge_agent.events import EventHub
from edge_agent.memory import GarbagePart
from edge_agent.parts import (
    DevicesPart,
    PipelinePart,
    SchedulerPart,
    ScoringPart,
    StateDirPart,
    StatusPart,
    StorePart,
)
from edge_agent.pipeline import Pipeline, Scorer
from edge_agent.sdnotify import Notifier
from edge_agent.state_files import PidFile, StatusFile
from edge_agent.store import BufferStore
from edge_agent.sync.component import FINAL_DRAIN_S, SyncPart

if TYPE_CHECKING:
    from edge_agent.dashboard.part import DashboardPart
    from edge_agent.remote.part import RemotePart

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
PID_FILE = "agent.pid"


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


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        events: EventHub | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = utcnow,
        final_sync_s: float | None = None,
    ) -> None:
        """``final_sync_s``: how long a clean stop may spend sending what is pending (default: the
        sync's own, a few seconds; the demo waits longer so that it ends with nothing pending)."""
        self.config = config
        self.events = events or EventHub()
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.started_at = clock()
        self.status_file = StatusFile(config.state_dir / STATUS_FILE)
        self._store = StorePart(config, clock)
        self._scoring = ScoringPart(config, self._store, clock)
        self._pipeline = PipelinePart(config, self._store, self._scoring, self.events, clock)
        self._devices = DevicesPart(config, self._pipeline, self.events)
        self._status = StatusPart(self.status_file, self.status, self.events, config.scheduler.status_interval_s)
        self._sync: SyncPart | None = None
        if config.sync is not None:  # no [sync]: the gateway runs offline
            drain = FINAL_DRAIN_S if final_sync_s is None else final_sync_s
            self._sync = SyncPart(
                config, lambda: self._store.store, self.events, self.status, clock, final_drain_s=drain
            )
        self.restart_reason: str | None = None  # set by a part that needs a restart (exit 1)
        self._stop: asyncio.Event | None = None
        self._remote: RemotePart | None = None
        if self._sync is not None:  # signed remote commands ride the sync link
            from edge_agent.remote.part import RemotePart

            self._remote = RemotePart(
                config,
                self._sync,
                status=self.status,
                scorer=lambda: self._scoring.scorer,
                clock=clock,
                restart=self.request_restart,
                store=lambda: self._store.store,
            )
        self._dashboard: DashboardPart | None = None
        if config.dashboard is not None:  # no [dashboard]: no web page (and its HTTP server is not imported)
            from edge_agent.dashboard.part import DashboardPart

            self._dashboard = DashboardPart(
                config,
                store=lambda: self._store.store,
                pipeline=lambda: self._pipeline.pipeline,
                scorer=lambda: self._scoring.scorer,
                status=self.status,
                events=self.events,
                clock=clock,
            )
        self.garbage = GarbagePart()
        components: list[Component] = [
            StateDirPart(config.state_dir, PidFile(config.state_dir / PID_FILE)),
            self._store,
            self._scoring,
            # status stops after the devices and the pipeline (its last write counts everything
            # drained into the store) and before the store closes
            self._status,
            # the sync stops after the devices and after the pipeline's drain, so its final sync at
            # a clean stop sends everything they produced; then the last status is written
            *([self._sync] if self._sync is not None else []),
            # commands start once the link exists and stop before it (their results go out on it)
            *([self._remote] if self._remote is not None else []),
            self._pipeline,
            # the dashboard starts after the pipeline (visits attach devices there), before the devices
            *([self._dashboard] if self._dashboard is not None else []),
            self._devices,
            # once everything has started: what is alive is frozen, the cyclic garbage collected
            # every minute (edge_agent/memory.py)
            self.garbage,
            SchedulerPart(lambda: self.lifecycle),
        ]
        self.lifecycle = Lifecycle(components)

    # -- what tests, the demo and the CLI look at -------------------------------------------------
    @property
    def store(self) -> BufferStore:
        return self._store.store

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline.pipeline

    @property
    def scorer(self) -> Scorer:
        return self._scoring.scorer

    @property
    def sessions(self) -> list[DeviceSession]:
        return self._devices.sessions

    @property
    def quarantined(self) -> str | None:
        return self._store.quarantined

    @property
    def sync(self) -> SyncPart | None:
        return self._sync

    @property
    def dashboard(self) -> DashboardPart | None:
        return self._dashboard

    @property
    def remote(self) -> RemotePart | None:
        return self._remote

    def request_restart(self, reason: str) -> None:
        """Stop cleanly; ``edge-agent run`` then exits 1 and systemd starts the agent again
        (a remote ``set-config`` takes effect this way)."""
        self.restart_reason = reason
        if self._stop is not None:
            self._stop.set()

    @property
    def synced(self) -> int:
        """Readings the hub acknowledged in this run (0 when offline)."""
        return 0 if self._sync is None else self._sync.synced

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> RunSummary:
        """Run until ``stop`` is set; returns the run's summary after a clean shutdown.

        A start-up failure stops whatever had started and raises the original error
        (:class:`edge_agent.errors.OperatorActionRequired` when restarting cannot help)."""
        self._stop = stop
        await self.lifecycle.start()
        try:
            await self._status.write_soon()
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
            await self.lifecycle.stop()
            log.info("event=agent_stopped")
        return self.summary()

    async def _main_loop(self, stop: asyncio.Event) -> None:
        """Wait for stop; ping the systemd watchdog from here, so a wedged loop is restarted."""
        interval = self.notifier.watchdog_interval_s or 5.0
        while not stop.is_set():
            self.notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    # -- status ---------------------------------------------------------------------------------
    def summary(self) -> RunSummary:
        counters = self.pipeline.counters
        stats = self.store.stats()
        return RunSummary(
            readings_stored=counters.stored,
            alerts=counters.alerts,
            synced=self.synced,
            pending=stats.pending,
            dropped=counters.dropped + counters.store_errors,
        )

    def status(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "version": __version__,
            "gateway_id": self.config.gateway.id,
            "province": self.config.gateway.province,
            "written_at": self.clock().isoformat(),
            "started_at": self.started_at.isoformat(),
            "pid": os.getpid(),
            # replaced by SyncPart's report when [sync] is configured
            "sync": {"configured": False, "state": "offline", "synced": 0, "last_sync_at": None, "last_ack_at": None},
        }
        doc.update(self.lifecycle.report())
        doc["status_file"] = {
            "in_place_writes": self.status_file.in_place_writes,
            "failures": self.status_file.failures,
        }
        return _jsonable(doc)  # type: ignore[return-value]


def _jsonable(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
