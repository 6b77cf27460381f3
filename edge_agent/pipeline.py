"""The ingest pipeline: validate → store → score → alert → outbox (DESIGN §1).

Runs on the asyncio loop thread. ``submit`` is called by device sessions with freshly parsed
measurements; it stamps them into Readings (uid = gateway id + a sequence that survives
restarts), hands them to the store's group-commit writer and returns at once. Only when the
commit is confirmed does the pipeline publish them, score them and raise alerts: a reading exists
for the nurse only after its transaction committed (DESIGN §6). Committed readings are the
outbox: they stay pending in the store until the hub acknowledges them.

Per commit batch, not per device line (issue 14): every submission that one group commit
confirmed reaches the loop in one wake-up, is published as one ``ReadingsStored`` event and scored
in one ``Scorer.on_readings`` call (ONNX scores a batch of vital sets for about the price of one).
An alert so waits at most one commit window after its reading arrived. When a batch holds several
readings of one vital from one device (time-compressed simulators, a backlog, a meter's memory),
it is scored in rounds, the k-th of each in round k (:func:`scoring_rounds`), so that every
reading is scored as the latest of its kind, as it was when each device line was scored alone:
an alert still cites the very reading that crossed a threshold. A station's real-time load (one
reading per vital and device per window) is one round.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from device_drivers.records import UNITS, Measurement, Reading, in_physiological_range, utcnow
from edge_agent.alerts import Alert
from edge_agent.events import AlertChanged, EventHub, ReadingsDropped, ReadingsStored
from edge_agent.store import CommitResult

log = logging.getLogger(__name__)

# A device clock further than this from the gateway's is not believed (years 0234 or 6122 from a
# garbled or never-set clock): the reading keeps the gateway's receive time and is flagged
# clock_unsynced, exactly as for a device without a clock. Ahead: one day covers a device set to
# the wrong time zone (Vietnam is UTC+7) and drift; behind: a glucometer's memory legitimately holds
# records measured weeks before they are fetched, so up to a year is accepted.
DEVICE_CLOCK_MAX_AHEAD = timedelta(days=1)
DEVICE_CLOCK_MAX_BEHIND = timedelta(days=366)


def plausible_device_time(measured_at: datetime, received_at: datetime) -> bool:
    """Pure: is a device-stamped time close enough to the gateway's receive time to be believed?"""
    return received_at - DEVICE_CLOCK_MAX_BEHIND <= measured_at <= received_at + DEVICE_CLOCK_MAX_AHEAD


def scoring_rounds(readings: Sequence[Reading]) -> list[list[Reading]]:
    """Pure: ``readings`` split into rounds holding at most one reading per (device, vital), the
    k-th of each in round k, in their order; one round when no device sent a vital twice."""
    rounds: list[list[Reading]] = []
    seen: dict[tuple[str, str], int] = {}
    for r in readings:
        key = (r.device_id, str(r.vital))
        k = seen.get(key, 0)
        seen[key] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(r)
    return rounds


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
    device_clock_rejected: int = 0  # device time implausible: stored with the receive time instead
    stored: int = 0
    dropped: int = 0
    store_errors: int = 0
    alerts: int = 0
    by_vital: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "invalid": self.invalid,
            "device_clock_rejected": self.device_clock_rejected,
            "stored": self.stored,
            "dropped": self.dropped,
            "store_errors": self.store_errors,
            "alerts": self.alerts,
            "stored_by_vital": dict(self.by_vital),
        }


class Pipeline:
    def __init__(
        self,
        *,
        gateway_id: str,
        store: Store,
        scorer: Scorer | None,
        events: EventHub,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.gateway_id = gateway_id
        self._clock = clock
        self.store = store
        self.scorer = scorer
        self.events = events
        self.counters = PipelineCounters()
        self._seq = store.last_seq
        self._visits: dict[str, str] = {}  # device id -> patient id of the open visit
        self._inflight: set[asyncio.Future[int]] = set()
        self._clock_warned: set[str] = set()
        # Submissions whose commit is done (appended on the writer thread), taken by the loop in
        # one go per wake-up: (device id, readings, the store's future, the caller's future).
        self._committed: list[tuple[str, list[Reading], Future[CommitResult], asyncio.Future[int]]] = []
        self._committed_lock = threading.Lock()
        self._wake_scheduled = False
        self.scoring_calls = 0  # Scorer.on_readings calls: one per commit batch

    # -- visits ---------------------------------------------------------------------------------
    def open_visit(self, patient_id: str, device_ids: Sequence[str]) -> None:
        for dev in device_ids:
            self._visits[dev] = patient_id

    def close_visit(self, device_ids: Sequence[str]) -> None:
        for dev in device_ids:
            self._visits.pop(dev, None)

    # -- ingest ---------------------------------------------------------------------------------
    def submit(
        self, device_id: str, measurements: list[Measurement], received_at: datetime
    ) -> asyncio.Future[int] | None:
        """Validate and stamp measurements, queue them for commit; never blocks the loop.

        Returns a future that resolves, once the commit is confirmed and the readings processed,
        to how many of them were stored (0 when the store failed or dropped them all); None when
        nothing was valid. A caller that must only forget bytes once they are safe (a glucometer's
        record cursor) waits for it."""
        readings: list[Reading] = []
        patient = self._visits.get(device_id)
        for m in measurements:
            self.counters.received += 1
            if UNITS.get(m.vital) != m.unit or not in_physiological_range(m.vital, m.value):
                # Parsers already enforce both; a failure here is a driver bug, counted loudly.
                self.counters.invalid += 1
                log.warning("event=invalid_measurement device=%s vital=%s unit=%s", device_id, m.vital, m.unit)
                continue
            if m.measured_at is not None and not plausible_device_time(m.measured_at, received_at):
                self.counters.device_clock_rejected += 1
                if device_id not in self._clock_warned:  # once per device and run: no log flood
                    self._clock_warned.add(device_id)
                    log.warning("event=device_clock_implausible device=%s action=use_receive_time", device_id)
                m = dataclasses.replace(m, measured_at=None)
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
            return None
        try:
            future = self.store.submit(readings)
        except Exception as exc:  # the store is closed or refused the batch: counted, never silent
            self.counters.store_errors += len(readings)
            log.error("event=store_failed device=%s readings=%d error=%r", device_id, len(readings), exc)
            return None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._inflight.add(done)
        done.add_done_callback(self._inflight.discard)
        future.add_done_callback(functools.partial(self._on_commit, loop, device_id, readings, done))
        return done

    def _on_commit(
        self,
        loop: asyncio.AbstractEventLoop,
        device_id: str,
        readings: list[Reading],
        done: asyncio.Future[int],
        future: Future[CommitResult],
    ) -> None:
        """Any thread (the store's writer, as it resolves a commit's futures one after another):
        queue the outcome; only the first of a batch wakes the loop."""
        with self._committed_lock:
            self._committed.append((device_id, readings, future, done))
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(self._after_commits)

    def _after_commits(self) -> None:
        """On the loop: every outcome queued so far, published and scored as one batch."""
        with self._committed_lock:
            items, self._committed = self._committed, []
            self._wake_scheduled = False
        batch: list[Reading] = []
        results: list[tuple[asyncio.Future[int], int]] = []
        try:
            for device_id, readings, future, done in items:
                stored = self._settle(device_id, readings, future)
                batch += stored
                results.append((done, len(stored)))
            if batch:
                self.events.publish(ReadingsStored(tuple(batch)))
                if self.scorer is not None:
                    now = self._clock()
                    for round_ in scoring_rounds(batch):
                        self.scoring_calls += 1
                        self._publish_alerts(self.scorer.on_readings(round_, now))
        except Exception as exc:  # a scorer bug must not leave the callers waiting for ever
            log.error("event=scoring_failed readings=%d error=%s", len(batch), type(exc).__name__)
        finally:
            settled = {id(done) for done, _ in results}
            for done, n in results:
                if not done.done():
                    done.set_result(n)
            for _dev, _readings, _future, done in items:
                if id(done) not in settled and not done.done():
                    done.set_result(0)

    def _settle(self, device_id: str, readings: list[Reading], future: Future[CommitResult]) -> list[Reading]:
        """Count one submission's outcome; return the readings it committed."""
        try:
            result = future.result()
        except Exception as exc:
            self.counters.store_errors += len(readings)
            log.error("event=store_failed device=%s readings=%d error=%r", device_id, len(readings), exc)
            return []
        stored_uids = set(result.stored)
        stored = [r for r in readings if r.uid in stored_uids]
        dropped = len(readings) - len(stored)
        if dropped:
            self.counters.dropped += dropped
            self.events.publish(ReadingsDropped(device_id, dropped))
        self.counters.stored += len(stored)
        for r in stored:
            self.counters.by_vital[str(r.vital)] += 1
        return stored

    def tick(self, now: datetime | None = None) -> None:
        """Periodic scoring work (re-raise unacknowledged alerts, clear stale ones); on the loop."""
        if self.scorer is not None:
            self._publish_alerts(self.scorer.tick(now or self._clock()))

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
