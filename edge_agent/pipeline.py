"""The ingest pipeline: validate → store → score → alert → outbox (DESIGN §1).

Runs on the asyncio loop thread. ``submit`` is called by device sessions with freshly parsed
measurements; it stamps them into Readings (uid = gateway id + a sequence that survives
restarts), hands them to the store's group-commit writer and returns at once. Only when the
commit is confirmed does the pipeline publish them, score them and raise alerts: a reading exists
for the nurse only after its transaction committed (DESIGN §6). Committed readings are the
outbox: they stay pending in the store until the hub acknowledges them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from device_drivers.records import UNITS, Measurement, Reading, in_physiological_range, utcnow
from edge_agent.alerts import Alert
from edge_agent.events import AlertChanged, EventHub, ReadingsDropped, ReadingsStored
from edge_agent.store import CommitResult

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """What the pipeline needs from risk scoring (edge_agent.scoring provides the real one)."""

    def on_readings(self, readings: Sequence[Reading], now: datetime) -> list[Alert]: ...

    def tick(self, now: datetime) -> list[Alert]: ...

    def status(self) -> dict[str, object]: ...


class Store(Protocol):
    """The part of the buffer store the pipeline uses (edge_agent.store.BufferStore)."""

    @property
    def last_seq(self) -> int: ...

    def submit(self, readings: Sequence[Reading]) -> Future[CommitResult]: ...


@dataclass(slots=True)
class PipelineCounters:
    received: int = 0
    invalid: int = 0
    stored: int = 0
    dropped: int = 0
    store_errors: int = 0
    alerts: int = 0
    by_vital: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "invalid": self.invalid,
            "stored": self.stored,
            "dropped": self.dropped,
            "store_errors": self.store_errors,
            "alerts": self.alerts,
            "stored_by_vital": dict(self.by_vital),
        }


class Pipeline:
    def __init__(self, *, gateway_id: str, store: Store, scorer: Scorer | None, events: EventHub) -> None:
        self.gateway_id = gateway_id
        self.store = store
        self.scorer = scorer
        self.events = events
        self.counters = PipelineCounters()
        self._seq = store.last_seq
        self._visits: dict[str, str] = {}  # device id -> patient id of the open visit
        self._inflight: set[asyncio.Task[None]] = set()

    # -- visits ---------------------------------------------------------------------------------
    def open_visit(self, patient_id: str, device_ids: Sequence[str]) -> None:
        for dev in device_ids:
            self._visits[dev] = patient_id

    def close_visit(self, device_ids: Sequence[str]) -> None:
        for dev in device_ids:
            self._visits.pop(dev, None)

    # -- ingest ---------------------------------------------------------------------------------
    def submit(self, device_id: str, measurements: list[Measurement], received_at: datetime) -> None:
        """Validate and stamp measurements, queue them for commit; never blocks the loop."""
        readings: list[Reading] = []
        patient = self._visits.get(device_id)
        for m in measurements:
            self.counters.received += 1
            if UNITS.get(m.vital) != m.unit or not in_physiological_range(m.vital, m.value):
                # Parsers already enforce both; a failure here is a driver bug, counted loudly.
                self.counters.invalid += 1
                log.warning("event=invalid_measurement device=%s vital=%s unit=%s", device_id, m.vital, m.unit)
                continue
            self._seq += 1
            readings.append(
                Reading.from_measurement(
                    m,
                    gateway_id=self.gateway_id,
                    seq=self._seq,
                    device_id=device_id,
                    received_at=received_at,
                    patient_id=patient,
                )
            )
        if not readings:
            return
        future = self.store.submit(readings)
        task = asyncio.get_running_loop().create_task(self._after_commit(device_id, readings, future))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _after_commit(self, device_id: str, readings: list[Reading], future: Future[CommitResult]) -> None:
        try:
            result = await asyncio.wrap_future(future)
        except Exception as exc:
            self.counters.store_errors += len(readings)
            log.error("event=store_failed device=%s readings=%d error=%r", device_id, len(readings), exc)
            return
        stored_uids = set(result.stored)
        stored = tuple(r for r in readings if r.uid in stored_uids)
        dropped = len(readings) - len(stored)
        if dropped:
            self.counters.dropped += dropped
            self.events.publish(ReadingsDropped(device_id, dropped))
        if not stored:
            return
        self.counters.stored += len(stored)
        for r in stored:
            self.counters.by_vital[str(r.vital)] += 1
        self.events.publish(ReadingsStored(stored))
        if self.scorer is not None:
            self._publish_alerts(self.scorer.on_readings(stored, utcnow()))

    def tick(self, now: datetime | None = None) -> None:
        """Periodic scoring work (re-raise unacknowledged alerts, clear stale ones)."""
        if self.scorer is not None:
            self._publish_alerts(self.scorer.tick(now or utcnow()))

    def _publish_alerts(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.counters.alerts += 1
            self.events.publish(AlertChanged(alert))

    @property
    def inflight(self) -> int:
        """Submitted batches not yet committed and processed."""
        return len(self._inflight)

    async def drain(self) -> None:
        """Wait until every submitted reading is committed and processed."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
