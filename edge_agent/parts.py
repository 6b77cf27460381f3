"""The agent's core components (edge_agent.component): state dir and pid file, buffer store,
scoring, pipeline, device sessions, status reporter and scheduler. Each owns one resource and
says how it starts, stops, reports and what it runs periodically; ``edge_agent.agent`` lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from edge_agent.alert_recorder import AlertRecorder
from edge_agent.component import Job, Lifecycle
from edge_agent.config import AgentConfig, DeviceConfig
from edge_agent.devices import BleSession, DeviceSession, DeviceStatus, SerialSession, ble_link_for
from edge_agent.errors import OperatorActionRequired
from edge_agent.events import AlertChanged, DeviceStateChanged, Event, EventHub, ReadingsDropped
from edge_agent.pipeline import Pipeline, Scorer
from edge_agent.safety_net import ScorerWithSafetyNet, SpO2SafetyNet
from edge_agent.state_files import PidFile, StatusFile, prepare_state_dir
from edge_agent.store import BufferStore, KeystoreError, SchemaError, StoreCorruptError

log = logging.getLogger("edge_agent.agent")

SCORING_TICK_S = 5.0
STATUS_DEBOUNCE_S = 0.5

T = TypeVar("T")


def started(value: T | None, part: str) -> T:
    """What a part made in ``start``; a clear error when it is asked for before that."""
    if value is None:
        raise RuntimeError(f"{part} not started")
    return value


class StateDirPart:
    """The state dir (created 0700, proved writable) and ``agent.pid`` (removed on any stop)."""

    name = "state_dir"

    def __init__(self, state_dir: Path, pid_file: PidFile) -> None:
        self.state_dir = state_dir
        self.pid_file = pid_file

    async def start(self) -> None:
        prepare_state_dir(self.state_dir)
        self.pid_file.write()

    async def stop(self) -> None:
        self.pid_file.remove()


class StorePart:
    """The encrypted buffer. A database that fails its integrity check is moved aside (kept for a
    technician) and a fresh one started, because the station's alerts must not stop on a damaged
    file; a keystore or schema problem stops the agent for an operator."""

    name = "store"

    def __init__(self, config: AgentConfig, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.clock = clock
        self._store: BufferStore | None = None
        self.quarantined: str | None = None

    @property
    def store(self) -> BufferStore:
        return started(self._store, "store")

    def _open(self) -> BufferStore:
        cfg = self.config
        try:
            return BufferStore.open(
                cfg.db_path,
                gateway_id=cfg.gateway.id,
                keystore_path=cfg.keystore_path,
                config=cfg.store,
                clock=self.clock,
            )
        except StoreCorruptError as exc:
            moved = BufferStore.quarantine(cfg.db_path, self.clock())
            self.quarantined = str(moved)
            log.error("event=store_corrupt action=quarantined_and_restarted moved_to=%s error=%r", moved, str(exc))
            return BufferStore.open(
                cfg.db_path,
                gateway_id=cfg.gateway.id,
                keystore_path=cfg.keystore_path,
                config=cfg.store,
                clock=self.clock,
            )

    async def start(self) -> None:
        try:
            self._store = await asyncio.get_running_loop().run_in_executor(None, self._open)
        except KeystoreError as exc:
            raise OperatorActionRequired(
                f"keystore {exc.path}: {exc.reason}",
                "restore the gateway's keystore from its backup with mode 0600 owned by the service user, "
                "or re-provision the gateway (edge-provision)",
            ) from exc
        except SchemaError as exc:
            raise OperatorActionRequired(
                f"buffer {self.config.db_path}: {exc}", "install the agent version that wrote this buffer, or newer"
            ) from exc

    async def stop(self) -> None:
        if self._store is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._store.close)

    async def _retention(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.store.run_retention)

    def jobs(self) -> Sequence[Job]:
        return [Job("retention", self.config.scheduler.retention_interval_s, self._retention)]

    def report(self) -> Mapping[str, object]:
        stats = self.store.stats()
        store = {**dataclasses.asdict(stats), "quarantined": self.quarantined}
        return {
            "store": store,
            "backlog": {
                "pending": stats.pending,
                "oldest_pending_age_s": stats.oldest_pending_age_s,
                "dead_letter": stats.dead_letter,  # rows that failed to decrypt: never sent, reported
            },
        }


class ScoringPart:
    """The model scorer (NEWS2, BP category, sustained events) backed by the SpO2 safety net.

    Model or runtime trouble never stops the agent: it shows in status ("scores unavailable") and
    the safety net takes over SpO2 alerts. Every alert version goes to the store through the
    :class:`AlertRecorder` (futures, never a blocking fsync on the loop)."""

    name = "scoring"

    def __init__(self, config: AgentConfig, store: StorePart, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.store_part = store
        self.clock = clock
        self._scorer: Scorer | None = None
        self.recorder: AlertRecorder | None = None

    @property
    def scorer(self) -> Scorer:
        return started(self._scorer, "scoring")

    def _build(self) -> Scorer:
        from edge_agent.scoring import build_scorer

        cfg = self.config
        settings = cfg.scoring
        if settings.pushed_models_dir is None:
            settings = dataclasses.replace(settings, pushed_models_dir=cfg.state_dir / "models")
        assert self.recorder is not None
        scorer = build_scorer(models_dir=cfg.models_dir, store=self.recorder, settings=settings, clock=self.clock)
        status = scorer.status()
        if not status.get("available"):
            log.error("event=scores_unavailable error=%r", status.get("error"))
        return ScorerWithSafetyNet(scorer, SpO2SafetyNet(cfg.alerts.spo2_low), self.recorder)

    async def start(self) -> None:
        self.recorder = AlertRecorder(self.store_part.store)
        self._scorer = await asyncio.get_running_loop().run_in_executor(None, self._build)

    async def stop(self) -> None:
        if self.recorder is not None:  # every alert version handed to the store is committed (or counted)
            pending = self.recorder.pending_futures()
            if pending:
                await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)

    def report(self) -> Mapping[str, object]:
        scoring = dict(self.scorer.status())
        if self.recorder is not None:
            scoring.update(self.recorder.status())
        return {"scoring": scoring}


class PipelinePart:
    name = "pipeline"

    def __init__(
        self,
        config: AgentConfig,
        store: StorePart,
        scoring: ScoringPart,
        events: EventHub,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.store_part = store
        self.scoring = scoring
        self.events = events
        self.clock = clock
        self._pipeline: Pipeline | None = None

    @property
    def pipeline(self) -> Pipeline:
        return started(self._pipeline, "pipeline")

    async def start(self) -> None:
        self._pipeline = Pipeline(
            gateway_id=self.config.gateway.id,
            store=self.store_part.store,
            scorer=self.scoring.scorer,
            events=self.events,
            clock=self.clock,
        )

    async def stop(self) -> None:
        if self._pipeline is not None:  # everything already parsed reaches the store
            await self._pipeline.drain()

    async def _tick(self) -> None:
        self.pipeline.tick()

    def jobs(self) -> Sequence[Job]:
        return [Job("scoring_tick", SCORING_TICK_S, self._tick)]

    def report(self) -> Mapping[str, object]:
        return {"pipeline": self.pipeline.counters.as_dict()}


class DevicesPart:
    """One session per configured device (simulated devices get their simulator on a pty)."""

    name = "devices"

    def __init__(self, config: AgentConfig, pipeline: PipelinePart, events: EventHub) -> None:
        self.config = config
        self.pipeline_part = pipeline
        self.events = events
        self.sessions: list[DeviceSession] = []
        self._simulators: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

    def _session_for(self, dev: DeviceConfig) -> DeviceSession:
        submit = self.pipeline_part.pipeline.submit
        if dev.transport == "ble":
            return BleSession(
                dev,
                submit,
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
        return SerialSession(dev, submit, self._device_state)

    def _device_state(self, status: DeviceStatus) -> None:
        self.events.publish(DeviceStateChanged(status.device_id, str(status.state), status.detail, status.since))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for dev in self.config.devices:
            session = self._session_for(dev)
            self.sessions.append(session)
            self._tasks.append(loop.create_task(session.run(), name=f"device-{dev.id}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sim in self._simulators:
            sim.stop()

    def report(self) -> Mapping[str, object]:
        return {"devices": [s.status.as_dict(s.parser) for s in self.sessions]}


class StatusPart:
    """``status.json``: written at start, every ``status_interval_s``, soon after every state change
    (device state, dropped readings, alerts; debounced), and a last time at stop. Built on the
    loop, written on its own thread (the fsync stays off the loop)."""

    name = "status"

    def __init__(
        self, status_file: StatusFile, build: Callable[[], dict[str, object]], events: EventHub, interval_s: float
    ) -> None:
        self.file = status_file
        self.build = build
        self.events = events
        self.interval_s = interval_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status")
        self._unsubscribe: Callable[[], None] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[bool] | None = None

    async def start(self) -> None:
        self._unsubscribe = self.events.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, DeviceStateChanged | ReadingsDropped | AlertChanged) and self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(STATUS_DEBOUNCE_S, self._debounced)

    def _debounced(self) -> None:
        self._pending = None
        self.write_soon()

    def write_soon(self) -> asyncio.Future[bool]:
        """Build the snapshot now (on the loop) and write it on the status thread."""
        try:
            doc = self.build()
        except Exception as exc:  # a failing part must not stop status: say what failed
            log.error("event=status_build_failed error=%r", exc)
            doc = {"error": f"status unavailable: {type(exc).__name__}"}
        self._writing = asyncio.get_running_loop().run_in_executor(self._executor, self.file.write, doc)
        return self._writing

    async def _periodic(self) -> None:
        await self.write_soon()

    def jobs(self) -> Sequence[Job]:
        return [Job("status_snapshot", self.interval_s, self._periodic)]

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        with contextlib.suppress(Exception):
            await self.write_soon()
        self._executor.shutdown(wait=True)


class SchedulerPart:
    """apscheduler on the event loop: every component's jobs, as coroutines run on the loop."""

    name = "scheduler"

    def __init__(self, lifecycle: Callable[[], Lifecycle]) -> None:
        self._lifecycle = lifecycle
        self._scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone="UTC")
        for job in self._lifecycle().jobs():
            scheduler.add_job(job.run, "interval", seconds=job.interval_s, id=job.id, max_instances=1, coalesce=True)
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
