"""The uplink: moves the buffer's pending readings and alerts to the hub, and marks them synced
only when the hub's signed ack for their batch arrives (DESIGN §6: exactly-once at the hub).

The store is the source of truth. A batch is leased from it (``BufferStore.lease``), sealed to
the hub and signed by the gateway (``wire.envelope.seal_batch``), published QoS 1 to ``up``, and
stays leased until a verified hub ``Ack`` with its id arrives: "ok" -> ``BufferStore.ack`` (its
readings leave the pending state), "rejected" -> counted, logged and left pending for an
operator (never marked synced). On every (re)connection every lease is released
(``release_leases``): batches in flight when the link broke, or before a restart, are sent
again first, under the same ids, so an ack that arrives late still marks the right readings and
the hub, which stores each uid once, answers a re-send with duplicates.

Order and bounds:

* Alerts first: pending alert revisions (``pending_alerts``) go out in their own lane (topic
  ``alert``) ahead of any reading batch, one alert batch in flight at a time; an acked alert
  batch marks exactly the ``(alert_id, rev)`` pairs it carried (``mark_alerts_synced``).
* Readings: a batch is leased when ``batch_max`` readings are waiting or the oldest has waited
  ``batch_max_age_s``; at most ``in_flight`` reading batches are unacknowledged. A batch's
  payload is dropped from memory once the broker has it (PUBACK): a week's backlog drains at
  full speed with ``in_flight`` batches in memory, never the backlog.
* Never spin: a hub that stops answering (no ack within ``ack_timeout_s``), a broker that
  refuses a publish, or a batch the hub rejects pauses the uplink with exponential backoff and
  full jitter (1 s to 5 min); a good ack resets it.

Threads: every store call and the sealing run on one worker thread of the uplink (SQLite and
CPU work never on the loop); everything else is on the loop. Acks that cannot be verified with
the hub's signing key (forged, garbled, for another gateway) are ignored and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from device_drivers.backoff import Backoff
from edge_agent.store import BufferStore, StoreStats
from edge_agent.store.errors import StoreError
from edge_agent.sync.clock import ClockMonitor
from edge_agent.sync.mqtt import AuthRefused, LinkEvent, LinkState, Message, MqttLink, NotConnected, SyncError
from provisioning.pki import CertifiedKey, HubPublicKeys
from wire.envelope import seal_batch
from wire.errors import WireError
from wire.messages import Ack, AlertBatch, AlertRecord, ReadingBatch, decode_ack
from wire.topics import topic

log = logging.getLogger(__name__)
T = TypeVar("T")

ACK_TIMEOUT_S = 60.0
IDLE_POLL_S = 5.0  # re-check the buffer at least this often while idle
ALERT_BATCH_MAX = 100
STALL_BASE_S = 1.0
STALL_CAP_S = 300.0


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    gateway_id: str
    province: str
    batch_max: int = 500
    batch_max_age_s: float = 5.0
    in_flight: int = 4
    alert_batch_max: int = ALERT_BATCH_MAX
    ack_timeout_s: float = ACK_TIMEOUT_S


@dataclass(slots=True)
class UplinkCounters:
    synced: int = 0  # readings that left the pending state on a hub ack (this run)
    batches_sent: int = 0  # reading batches the broker took (PUBACK), re-sends included
    resent_batches: int = 0  # of those, re-sends of a batch id handed out before (this run or earlier)
    batches_acked: int = 0
    duplicates: int = 0  # readings the hub already had (re-sends): it stored them once
    alerts_synced: int = 0
    alert_batches_sent: int = 0
    rejected_batches: int = 0  # authenticated but refused by the hub: left pending for an operator
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    ignored_acks: int = 0  # not verifiable as the hub's, malformed, or for another gateway
    ignored_by_reason: dict[str, int] = field(default_factory=dict)
    stale_acks: int = 0  # verified, but nothing left to mark (already acked)
    ack_timeouts: int = 0
    publish_failures: int = 0
    seal_failures: int = 0
    store_errors: int = 0
    stalls: int = 0
    peak_in_flight: int = 0
    last_ack_at: datetime | None = None
    last_rejection: str = ""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = dict(value) if isinstance(value, dict) else value
        return out


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


@dataclass(slots=True)
class _InFlight:
    """A batch sent (or being sent) and not yet answered. Holds ids and counts, not the payload."""

    batch_id: str
    lane: str  # "readings" | "alerts"
    count: int
    attempt: int
    alert_pairs: tuple[tuple[str, int], ...] = ()
    answer: asyncio.Future[str] | None = None
    task: asyncio.Task[None] | None = None


class Uplink:
    """Runs while the agent runs (:meth:`run`); follows the link's connections by itself."""

    def __init__(
        self,
        *,
        store: BufferStore,
        link: MqttLink,
        gateway: CertifiedKey,
        hub: HubPublicKeys,
        settings: UplinkSettings,
        clock: Callable[[], datetime],
        clock_monitor: ClockMonitor | None = None,
        stall_backoff: Backoff | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.link = link
        self.gateway = gateway
        self.hub = hub
        self.settings = settings
        self.clock = clock
        self.clock_monitor = clock_monitor
        self.stall_backoff = stall_backoff or Backoff(base=STALL_BASE_S, cap=STALL_CAP_S)
        self.on_change = on_change
        self.on_other: Callable[[Message], bool] | None = None  # other topics (renewal replies): True = taken
        self.on_result_ack: Callable[[Ack], None] | None = None  # verified acks of command results
        self.counters = UplinkCounters()
        self.refused: AuthRefused | None = None  # the broker refused our publishes (ACL)
        self.in_flight: dict[str, _InFlight] = {}
        s = settings
        self.up_topic = topic(s.province, s.gateway_id, "up")
        self.alert_topic = topic(s.province, s.gateway_id, "alert")
        self.ack_topic = topic(s.province, s.gateway_id, "ack")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-store")
        self._wake = asyncio.Event()
        self._session: asyncio.Task[None] | None = None
        self._pause_until = 0.0  # monotonic
        self._reset: str | None = None  # why the window must be re-sent (set by a delivery task)
        self._flush = False  # send small batches at once (final sync)
        self._idle_timeout = IDLE_POLL_S
        self._unlisten = link.add_listener(self._on_link)

    # -- plumbing ----------------------------------------------------------------------------------
    async def _blocking(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    def wake(self) -> None:
        """Something changed in the buffer (readings committed, an alert saved): look again."""
        self._wake.set()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _on_link(self, event: LinkEvent) -> None:
        if event.state is not LinkState.CONNECTED and self._session is not None:
            self._session.cancel()
        self._wake.set()

    def _pause(self, why: str) -> None:
        delay = self.stall_backoff.next_delay()
        self._pause_until = max(self._pause_until, time.monotonic() + delay)
        self.counters.stalls += 1
        log.warning("event=sync_uplink_paused reason=%s pause_s=%.1f", why, delay)

    @property
    def readings_in_flight(self) -> int:
        return sum(1 for x in self.in_flight.values() if x.lane == "readings")

    @property
    def alerts_in_flight(self) -> int:
        return sum(1 for x in self.in_flight.values() if x.lane == "alerts")

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: an ack reader for the whole run, a sender per connection."""
        loop = asyncio.get_running_loop()
        acks = loop.create_task(self._read_acks(), name="sync-acks")
        try:
            while True:
                await self.link.wait_connected()
                session = self._session = loop.create_task(self._run_session(), name="sync-uplink")
                await asyncio.wait({session})  # ends with the connection (cancelled by _on_link)
                self._session = None
                if not session.cancelled() and session.exception() is not None:
                    log.error("event=sync_uplink_failed error=%r", session.exception())
                    self._pause("uplink_error")
        finally:
            if self._session is not None:
                self._session.cancel()
            acks.cancel()
            self._clear_in_flight()
            await asyncio.wait({acks})
            self._unlisten()
            # no store call may outlive the uplink: the buffer closes after the sync stops
            await asyncio.shield(loop.run_in_executor(None, functools.partial(self._executor.shutdown, wait=True)))

    async def _run_session(self) -> None:
        try:
            released = await self._blocking(self.store.release_leases)
            self._clear_in_flight()
            if released:
                log.info("event=sync_resend_after_connect batches=%d", released)
            while True:
                self._wake.clear()  # before looking: a wake-up during the step is not lost
                progressed = await self._step()
                if not progressed:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._idle_timeout):
                            await self._wake.wait()
        except StoreError as exc:  # the store is failing or closed: say so and try again later
            self.counters.store_errors += 1
            log.error("event=sync_store_error error=%r", exc)
            self._pause("store_error")
        finally:
            self._clear_in_flight()

    async def _step(self) -> bool:
        """One round: the pause, a window reset, alerts, readings. True if something was sent."""
        pause = self._pause_until - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        if self._reset is not None:
            why, self._reset = self._reset, None
            self._clear_in_flight()
            await self._blocking(self.store.release_leases)
            self._pause(why)
            return True
        stats = await self._blocking(self.store.stats)
        sent = await self._send_alerts(stats)
        wait = None
        while self.readings_in_flight < self.settings.in_flight and self._reset is None:
            due, wait = self._readings_due(stats)
            if not due:
                break
            if not await self._send_readings():
                wait = IDLE_POLL_S
                break
            sent = True
            stats = await self._blocking(self.store.stats)
        self._idle_timeout = IDLE_POLL_S if wait is None else max(0.05, min(wait, IDLE_POLL_S))
        return sent

    def _readings_due(self, stats: StoreStats) -> tuple[bool, float | None]:
        """(lease now?, seconds until the oldest waiting reading is due)."""
        free = stats.pending - stats.leased
        if free <= 0:
            return False, None
        if free >= self.settings.batch_max or self._flush:
            return True, None
        if self.readings_in_flight:
            return False, None  # the batch in flight holds the oldest: wait for its ack
        age = stats.oldest_pending_age_s or 0.0
        if age >= self.settings.batch_max_age_s:
            return True, None
        return False, self.settings.batch_max_age_s - age

    # -- sending -----------------------------------------------------------------------------------
    def _seal_readings(self) -> tuple[_InFlight, bytes] | None:
        """Worker thread: lease the next batch and seal it (None: nothing to lease now)."""
        batch = self.store.lease(self.settings.batch_max)
        if not batch.id:
            return None
        wire_batch = ReadingBatch(
            batch_id=batch.id, gateway_id=self.settings.gateway_id, sent_at=self.clock(), readings=batch.readings
        )
        payload = seal_batch(wire_batch, hub_sealing_public=self.hub.sealing, gateway=self.gateway)
        return _InFlight(batch.id, "readings", len(batch.readings), batch.attempt), payload

    def _seal_alerts(self) -> tuple[_InFlight, bytes] | None:
        pending = self.store.pending_alerts(self.settings.alert_batch_max)
        if not pending:
            return None
        batch = AlertBatch(
            batch_id=uuid.uuid4().hex,
            gateway_id=self.settings.gateway_id,
            sent_at=self.clock(),
            alerts=tuple(AlertRecord(p.alert_id, p.rev, p.payload) for p in pending),
        )
        payload = seal_batch(batch, hub_sealing_public=self.hub.sealing, gateway=self.gateway)
        pairs = tuple((p.alert_id, p.rev) for p in pending)
        return _InFlight(batch.batch_id, "alerts", len(pending), 1, pairs), payload

    async def _send_alerts(self, stats: StoreStats) -> bool:
        if self.alerts_in_flight or not stats.pending_alerts:
            return False
        return await self._send(self._seal_alerts, self.alert_topic)

    async def _send_readings(self) -> bool:
        return await self._send(self._seal_readings, self.up_topic)

    async def _send(self, make: Callable[[], tuple[_InFlight, bytes] | None], to: str) -> bool:
        try:
            made = await self._blocking(make)
        except WireError as exc:  # e.g. a batch too large to seal: never silent, never a spin
            self.counters.seal_failures += 1
            log.error("event=sync_seal_failed reason=%s error=%r", exc.reason, str(exc))
            self._pause("seal_failed")
            return False
        if made is None:
            return False
        entry, payload = made
        old = self.in_flight.pop(entry.batch_id, None)
        if old is not None and old.task is not None:  # a re-lease of a batch still awaited
            old.task.cancel()
        entry.answer = asyncio.get_running_loop().create_future()
        self.in_flight[entry.batch_id] = entry
        self.counters.peak_in_flight = max(self.counters.peak_in_flight, self.readings_in_flight)
        entry.task = asyncio.get_running_loop().create_task(self._deliver(entry, payload, to))
        return True

    async def _deliver(self, entry: _InFlight, payload: bytes, to: str) -> None:
        """Publish (wait for the PUBACK), drop the payload, wait for the hub's answer."""
        try:
            await self.link.publish(to, payload, qos=1)
        except AuthRefused as exc:
            self.counters.publish_failures += 1
            self.refused = exc
            log.error("event=sync_publish_refused topic=%s reason=%s", to, exc.reason)
            self._finish(entry, "refused")
            self._reset = "publish_refused"
            self._changed()
            return
        except NotConnected:
            return  # the session ends; the next connection re-sends from the store
        except SyncError as exc:
            self.counters.publish_failures += 1
            log.warning("event=sync_publish_failed topic=%s reason=%s", to, exc.reason)
            self._finish(entry, "failed")
            self._reset = "publish_failed"
            self._wake.set()
            return
        del payload  # the broker has it; the store still has the readings
        self.refused = None
        if entry.lane == "readings":
            self.counters.batches_sent += 1
            if entry.attempt > 1:  # the store counts hand-outs of a batch id, across restarts too
                self.counters.resent_batches += 1
        else:
            self.counters.alert_batches_sent += 1
        assert entry.answer is not None
        try:
            async with asyncio.timeout(self.settings.ack_timeout_s):
                await asyncio.shield(entry.answer)
        except TimeoutError:
            self.counters.ack_timeouts += 1
            log.warning(
                "event=sync_ack_timeout batch=%s lane=%s timeout_s=%g",
                entry.batch_id,
                entry.lane,
                self.settings.ack_timeout_s,
            )
            if self.in_flight.get(entry.batch_id) is entry:
                self._reset = "ack_timeout"
                self._wake.set()

    def _finish(self, entry: _InFlight, how: str) -> None:
        if self.in_flight.get(entry.batch_id) is entry:
            del self.in_flight[entry.batch_id]
        if entry.answer is not None and not entry.answer.done():
            entry.answer.set_result(how)
        self._wake.set()

    def _clear_in_flight(self) -> None:
        for entry in list(self.in_flight.values()):
            if entry.task is not None and entry.task is not asyncio.current_task():
                entry.task.cancel()
            if entry.answer is not None and not entry.answer.done():
                entry.answer.cancel()
        self.in_flight.clear()

    # -- acks --------------------------------------------------------------------------------------
    async def _read_acks(self) -> None:
        async for message in self.link.messages():
            try:
                await self.handle(message)
            except StoreError as exc:  # the batch stays pending; its ack comes again after a re-send
                self.counters.store_errors += 1
                log.error("event=sync_ack_store_error error=%r", exc)
            except Exception:  # one bad message must not stop every later ack
                log.exception("event=sync_ack_failed topic=%s", message.topic)

    def _ignore(self, reason: str) -> None:
        self.counters.ignored_acks += 1
        _bump(self.counters.ignored_by_reason, reason)
        log.warning("event=sync_ack_ignored reason=%s", reason)

    async def handle(self, message: Message) -> None:
        """One message from the broker (an ack on our ``ack`` topic; anything else is ignored)."""
        if message.topic != self.ack_topic:
            if self.on_other is not None and self.on_other(message):
                return
            self._ignore("unexpected_topic")
            return
        try:
            ack = decode_ack(message.payload, self.hub.signing)
        except WireError as exc:
            self._ignore(exc.reason)
            return
        if ack.gateway_id != self.settings.gateway_id:
            self._ignore("other_gateway")
            return
        if ack.lane == "results":  # a command result's ack (edge_agent.remote), never a batch's
            if self.on_result_ack is None:
                self._ignore("unexpected_lane")
            else:
                self.on_result_ack(ack)
            return
        entry = self.in_flight.get(ack.batch_id)
        if entry is not None and entry.lane != ack.lane:
            self._ignore("wrong_lane")
            return
        if ack.status == "rejected":
            self._rejected(ack, entry)
        elif ack.lane == "readings":
            await self._acked_readings(ack, entry)
        else:
            await self._acked_alerts(ack, entry)
        self._changed()

    def _rejected(self, ack: Ack, entry: _InFlight | None) -> None:
        c = self.counters
        c.rejected_batches += 1
        _bump(c.rejected_by_reason, ack.reason or "unspecified")
        c.last_rejection = f"{ack.lane} batch {ack.batch_id}: {ack.reason or 'unspecified'}"
        log.error(
            "event=sync_batch_rejected batch=%s lane=%s reason=%r action=left_pending_for_operator",
            ack.batch_id,
            ack.lane,
            ack.reason[:80],
        )
        if entry is not None:
            self._finish(entry, "rejected")
        self._pause("batch_rejected")

    async def _acked_readings(self, ack: Ack, entry: _InFlight | None) -> None:
        # Signed by the hub: mark even a batch this run did not send (leased before a restart).
        marked = await self._blocking(self.store.ack, ack.batch_id)
        c = self.counters
        c.synced += marked
        c.duplicates += ack.duplicates
        if marked == 0:
            c.stale_acks += 1
        else:
            c.batches_acked += 1
        self._good_ack(ack)
        if entry is not None:
            self._finish(entry, "ok")

    async def _acked_alerts(self, ack: Ack, entry: _InFlight | None) -> None:
        if entry is None:  # alert batch ids live in memory only: re-sent under a new id anyway
            self.counters.stale_acks += 1
            return
        marked = await self._blocking(self.store.mark_alerts_synced, entry.alert_pairs)
        self.counters.alerts_synced += marked
        self._good_ack(ack)
        self._finish(entry, "ok")

    def _good_ack(self, ack: Ack) -> None:
        now = self.clock()
        self.counters.last_ack_at = now
        self.stall_backoff.reset()
        if self.clock_monitor is not None and ack.acked_at is not None:
            self.clock_monitor.note_hub_time(ack.acked_at, now)

    # -- the end -----------------------------------------------------------------------------------
    async def drain(self, timeout_s: float) -> bool:
        """Send everything pending now, small batches included, and wait for the acks, for at
        most ``timeout_s`` (the final sync at a clean stop). True when nothing is left."""
        self._flush = True
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        try:
            await self._blocking(self.store.flush)
            while time.monotonic() < deadline:
                if not self.link.connected:
                    return False
                stats = await self._blocking(self.store.stats)
                if stats.pending == 0 and stats.pending_alerts == 0 and not self.in_flight:
                    return True
                self._wake.set()
                await asyncio.sleep(0.05)
            return False
        finally:
            self._flush = False

    def as_dict(self) -> dict[str, object]:
        return {
            **self.counters.as_dict(),
            "batches_in_flight": self.readings_in_flight,
            "alert_batches_in_flight": self.alerts_in_flight,
            "paused_for_s": max(0.0, round(self._pause_until - time.monotonic(), 1)),
            "refused": None if self.refused is None else str(self.refused),
        }


__all__ = ["ACK_TIMEOUT_S", "Uplink", "UplinkCounters", "UplinkSettings"]
