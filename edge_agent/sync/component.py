"""SyncPart: the sync as one agent component (edge_agent.component): the MQTT link, the uplink,
the heartbeat and the clock probe, started with the agent and stopped before the buffer closes.

It never stops the station: a missing, unreadable or expired certificate, a key that does not
match, unusable hub keys or a broker that refuses the gateway show as state ``auth_refused``
with the reason in ``status.json`` (``edge-agent status``), readings keep being buffered, and
the part keeps retrying (reloading the files too), so a technician who installs the right
files needs no restart. At a clean stop it sends what is pending for a few seconds (the final
sync), then publishes a last heartbeat with ``online: false`` and disconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from device_drivers.backoff import Backoff
from edge_agent.component import Job
from edge_agent.config import AgentConfig, SyncConfig
from edge_agent.events import AlertChanged, DeviceStateChanged, Event, EventHub, ReadingsDropped, ReadingsStored
from edge_agent.store import BufferStore
from edge_agent.sync.clock import ClockMonitor
from edge_agent.sync.heartbeat import Heartbeat
from edge_agent.sync.mqtt import (
    RECONNECT_BASE_S,
    RECONNECT_CAP_S,
    AuthRefused,
    LinkEvent,
    LinkSettings,
    LinkState,
    Message,
    MqttLink,
    SyncError,
    Will,
    tls_context,
)
from edge_agent.sync.renewal import CHECK_INTERVAL_S, Renewer, best_identity
from edge_agent.sync.uplink import ACK_TIMEOUT_S, Uplink, UplinkSettings
from provisioning.errors import ProvisioningError
from provisioning.pki import CertifiedKey, HubPublicKeys, common_name, load_certified_key
from wire.messages import OFFLINE_WILL, Ack
from wire.topics import topic

log = logging.getLogger(__name__)

FINAL_DRAIN_S = 5.0
STOP_TIMEOUT_S = 10.0
STATES = ("connected", "connecting", "offline", "auth_refused")


@dataclass(frozen=True, slots=True)
class Material:
    """What the sync needs from disk, checked together."""

    gateway: CertifiedKey
    hub: HubPublicKeys
    cert_path: Path | None = None  # None: sync.cert
    key_path: Path | None = None  # None: sync.key (a rotated key in the state dir otherwise)


def load_material(
    sync: SyncConfig, gateway_id: str, state_dir: Path | None = None, now: datetime | None = None
) -> Material:
    """The gateway's key and certificate (CN = ``gateway_id``), the hub's public keys, and a TLS
    context that loads (CA included). Raises AuthRefused naming the ``[sync]`` key at fault.
    With ``state_dir`` and ``now``, a renewed certificate there is preferred when it is the
    newest valid one, and a rotated key with its certificate when that pair is the newest
    (edge_agent.sync.renewal.best_identity)."""
    cert_path, key_path = sync.cert, sync.key
    if state_dir is not None and now is not None:
        key_path, cert_path = best_identity(sync.cert, sync.key, sync.ca, state_dir, gateway_id, now)
    try:
        gateway = load_certified_key(key_path, cert_path)
    except ProvisioningError as exc:
        raise AuthRefused("gateway_certificate", f"sync.cert/sync.key: {exc}") from None
    cn = common_name(gateway.cert)
    if cn != gateway_id:
        raise AuthRefused(
            "certificate_cn_mismatch",
            f"sync.cert: certificate is for {cn!r}, this gateway is {gateway_id!r} (gateway.id)",
        )
    try:
        hub = HubPublicKeys.load(sync.hub_keys)
    except ProvisioningError as exc:
        raise AuthRefused("hub_keys", f"sync.hub_keys: {exc}") from None
    try:
        tls_context(sync.ca, cert_path, key_path)
    except AuthRefused as exc:
        raise AuthRefused(exc.reason, f"sync.ca: {exc.detail}") from None
    return Material(gateway, hub, cert_path, key_path)


class SyncPart:
    """Start after the pipeline; see the module doc. ``report()`` gives ``status.json``'s ``sync``."""

    name = "sync"

    def __init__(
        self,
        config: AgentConfig,
        store: Callable[[], BufferStore],
        events: EventHub,
        status: Callable[[], Mapping[str, Any]],
        clock: Callable[[], datetime],
        *,
        backoff: Backoff | None = None,
        stall_backoff: Backoff | None = None,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        final_drain_s: float = FINAL_DRAIN_S,
        clock_monitor: ClockMonitor | None = None,
    ) -> None:
        if config.sync is None:
            raise ValueError("SyncPart needs a [sync] config")
        self.config = config
        self.sync: SyncConfig = config.sync
        self._store = store
        self.events = events
        self.status = status
        self.clock = clock
        self.backoff = backoff or Backoff(base=RECONNECT_BASE_S, cap=RECONNECT_CAP_S)
        self.stall_backoff = stall_backoff
        self.ack_timeout_s = ack_timeout_s
        self.final_drain_s = final_drain_s
        self.clock_monitor = clock_monitor or ClockMonitor()
        gw = config.gateway
        self.status_topic = topic(gw.province, gw.id, "status")
        self.link: MqttLink | None = None
        self.uplink: Uplink | None = None
        self.heartbeat: Heartbeat | None = None
        self.renewer: Renewer | None = None
        self.not_after: datetime | None = None
        self.serial: int | None = None  # the certificate's, in the heartbeat (the hub prunes revoked ones)
        self.material_error: AuthRefused | None = None
        self.since = clock()
        self._reported = "offline"
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._handlers: list[tuple[str, Callable[[Message], bool]]] = []  # other parts' topics
        self._result_ack: Callable[[Ack], None] | None = None

    def add_handler(self, topic_name: str, handler: Callable[[Message], bool]) -> None:
        """Subscribe to one more topic of this gateway (before start); ``handler`` gets its
        messages on the loop and returns True when it took one (edge_agent.remote)."""
        self._handlers.append((topic_name, handler))

    def on_result_ack(self, handler: Callable[[Ack], None]) -> None:
        """Verified hub acks of lane ``results`` (a command result's, batch id = cmd_id) go to
        ``handler`` on the loop (edge_agent.remote); the uplink verifies them as any ack."""
        self._result_ack = handler
        if self.uplink is not None:
            self.uplink.on_result_ack = handler

    def _on_other(self, message: Message) -> bool:
        if self.renewer is not None and self.renewer.offer(message):
            return True
        return any(handler(message) for name, handler in self._handlers if name == message.topic)

    # -- what the agent reads --------------------------------------------------------------------
    @property
    def synced(self) -> int:
        """Readings the hub acknowledged in this run."""
        return 0 if self.uplink is None else self.uplink.counters.synced

    @property
    def state(self) -> str:
        """connected | connecting (first attempt) | offline (retrying after a failure or a lost
        link, or stopped) | auth_refused (retrying, but an operator must act)."""
        link = self.link
        if link is None:
            return "auth_refused" if self.material_error is not None else "offline"
        if link.state is LinkState.CONNECTED:
            return "auth_refused" if self.uplink is not None and self.uplink.refused else "connected"
        if link.state is LinkState.AUTH_REFUSED or isinstance(link.last_error, AuthRefused):
            return "auth_refused"
        if link.state is LinkState.CONNECTING and link.last_error is None:
            return "connecting"
        return "offline"

    def _track(self) -> str:
        """The reported state, and since when it has been that (not every retry)."""
        state = self.state
        if state != self._reported:
            self._reported = state
            self.since = self.clock()
        return state

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Never fails for sync trouble: the station works offline; status says why."""
        loop = asyncio.get_running_loop()
        self._unsubscribe = self.events.subscribe(self._on_event)
        try:
            material = await loop.run_in_executor(None, self._load_material)
        except AuthRefused as exc:
            self._material_failed(exc)
            self._tasks.append(loop.create_task(self._retry_material(), name="sync-material"))
            return
        self._begin(material)

    def _load_material(self) -> Material:
        return load_material(self.sync, self.config.gateway.id, self.config.state_dir, self.clock())

    def _material_failed(self, exc: AuthRefused) -> None:
        self.material_error = exc
        self._track()
        log.error("event=sync_unavailable reason=%s detail=%r action=operator_must_act", exc.reason, exc.detail)

    async def _retry_material(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.backoff.next_delay())
            try:
                material = await loop.run_in_executor(None, self._load_material)
            except AuthRefused as exc:
                if str(exc) != str(self.material_error):
                    self._material_failed(exc)
                continue
            self.backoff.reset()
            log.info("event=sync_material_loaded")
            self.material_error = None
            self._begin(material)
            return

    def _begin(self, material: Material) -> None:
        loop = asyncio.get_running_loop()
        cfg, sync = self.config, self.sync
        gw = cfg.gateway
        self.link = MqttLink(
            LinkSettings(
                host=sync.host,
                port=sync.port,
                client_id=gw.id,
                ca=sync.ca,
                cert=material.cert_path or sync.cert,
                key=material.key_path or sync.key,
                keepalive_s=sync.keepalive_s,
                session_expiry_s=sync.session_expiry_s,
                will=Will(self.status_topic, OFFLINE_WILL, qos=1, retain=True),
                subscriptions=(topic(gw.province, gw.id, "ack"),)
                + ((topic(gw.province, gw.id, "renew/cert"),) if sync.renew_before_days > 0 else ())
                + tuple(name for name, _ in self._handlers),
                max_queued=sync.in_flight + 4,  # reading batches, an alert batch, heartbeats
            ),
            backoff=self.backoff,
            clock=self.clock,
        )
        self.uplink = Uplink(
            store=self._store(),
            link=self.link,
            gateway=material.gateway,
            hub=material.hub,
            settings=UplinkSettings(
                gateway_id=gw.id,
                province=gw.province,
                batch_max=sync.batch_max,
                batch_max_age_s=sync.batch_max_age_s,
                in_flight=sync.in_flight,
                ack_timeout_s=self.ack_timeout_s,
            ),
            clock=self.clock,
            clock_monitor=self.clock_monitor,
            stall_backoff=self.stall_backoff,
        )
        self.not_after = material.gateway.cert.not_valid_after_utc
        self.serial = material.gateway.cert.serial_number
        if sync.renew_before_days > 0:
            uplink = self.uplink
            self.renewer = Renewer(
                link=self.link,
                province=gw.province,
                gateway_id=gw.id,
                before_days=sync.renew_before_days,
                ca_path=sync.ca,
                hub_signing=material.hub.signing,
                state_dir=cfg.state_dir,
                current=lambda: uplink.gateway,
                renewed=self._renewed,
                clock=self.clock,
            )
        self.uplink.on_other = self._on_other
        self.uplink.on_result_ack = self._result_ack
        self.heartbeat = Heartbeat(
            link=self.link,
            topic=self.status_topic,
            build=self.status,
            interval_s=sync.heartbeat_s,
            clock=self.clock,
            clock_monitor=self.clock_monitor,
            certificate=self._certificate,
            state_dir=cfg.state_dir,
        )
        self.link.add_listener(self._on_link)
        self._tasks.append(loop.create_task(self._start_link(), name="sync-link-start"))
        self._tasks.append(loop.create_task(self.uplink.run(), name="sync-uplink-run"))
        self._tasks.append(loop.create_task(self.heartbeat.run(), name="sync-heartbeat"))
        if self.renewer is not None:
            self._tasks.append(loop.create_task(self._renew_after_connect(), name="sync-renewal-first"))

    async def _start_link(self) -> None:
        assert self.link is not None
        await self.link.start()

    async def _renew_after_connect(self) -> None:
        """The first renewal check as soon as the link is up (the job then checks hourly)."""
        assert self.link is not None
        await self.link.wait_connected()
        await self.renew()

    async def renew(self) -> None:
        """The renewal job: renew the certificate through the hub when it is due."""
        if self.renewer is not None:
            await self.renewer.run_once()

    def _renewed(self, gateway: CertifiedKey, path: Path) -> None:
        """A renewed certificate: seal with it, report it, reconnect with it."""
        self.use_identity(gateway, path, None)

    def use_identity(self, gateway: CertifiedKey, path: Path, key_path: Path | None) -> None:
        """A renewed certificate (and, after a key rotation, its new key at ``key_path``): seal
        and sign with it, report it, reconnect with it."""
        if self.uplink is not None:
            self.uplink.gateway = gateway
        self.not_after = gateway.cert.not_valid_after_utc
        self.serial = gateway.cert.serial_number
        if self.link is not None:
            self.link.use_certificate(path, key_path)
        if self.heartbeat is not None:
            self.heartbeat.poke()

    def _certificate(self) -> dict[str, object]:
        if self.not_after is None:
            return {}
        days = (self.not_after - self.clock()).total_seconds() / 86400
        doc: dict[str, object] = {"not_after": self.not_after.isoformat(), "days_left": round(days, 1)}
        if self.serial is not None:
            doc["serial"] = format(self.serial, "x")
        if self.renewer is not None:
            doc["renewal"] = self.renewer.as_dict()
        return doc

    def _on_link(self, event: LinkEvent) -> None:
        self._track()
        if self.heartbeat is not None:
            self.heartbeat.poke()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ReadingsStored | AlertChanged) and self.uplink is not None:
            self.uplink.wake()
        if isinstance(event, DeviceStateChanged | ReadingsDropped) and self.heartbeat is not None:
            self.heartbeat.poke()

    async def final_sync(self, timeout_s: float) -> bool:
        """Send what is pending and wait for the acks, for at most ``timeout_s``; True if nothing is left."""
        if self.uplink is None or self.link is None or not self.link.connected:
            return False
        return await self.uplink.drain(timeout_s)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.final_drain_s > 0:
            try:
                done = await self.final_sync(self.final_drain_s)
            except Exception as exc:  # the last sync is a courtesy: the store still holds everything
                log.warning("event=sync_final_sync_failed error=%r", exc)
            else:
                if self.uplink is not None:
                    log.info("event=sync_final_sync complete=%s synced=%d", done, self.synced)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in stuck:  # never hold the agent's shutdown: say so and go on
                log.error("event=sync_task_did_not_stop task=%s", task.get_name())
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("event=sync_task_failed task=%s error=%r", task.get_name(), task.exception())
        self._tasks.clear()
        if self.link is not None:
            final = None
            if self.heartbeat is not None:
                try:
                    final = (self.status_topic, self.heartbeat.payload(online=False), 1, True)
                except Exception as exc:
                    log.warning("event=heartbeat_build_failed error=%r", exc)
                    final = (self.status_topic, OFFLINE_WILL, 1, True)
            await self.link.stop(final=final)

    def jobs(self) -> Sequence[Job]:
        if self.sync.renew_before_days <= 0:
            return []
        return [Job("sync-renewal", CHECK_INTERVAL_S, self.renew)]

    # -- status ----------------------------------------------------------------------------------
    def report(self) -> Mapping[str, object]:
        link, uplink = self.link, self.uplink
        state = self._track()
        last_error: str | None = None
        if self.material_error is not None:
            last_error = str(self.material_error)
        elif link is not None:
            error: SyncError | None = uplink.refused if uplink is not None and uplink.refused else link.last_error
            last_error = None if error is None else str(error)
        counters = uplink.counters if uplink is not None else None
        last_ack = counters.last_ack_at if counters is not None else None
        doc: dict[str, object] = {
            "configured": True,
            "state": state,
            "since": self.since,
            "attempting": link is not None and link.state is LinkState.CONNECTING,
            "broker": self.sync.broker,
            "last_ack_at": last_ack,
            "last_sync_at": last_ack,
            "batches_in_flight": uplink.readings_in_flight if uplink is not None else 0,
            "synced": self.synced,
            "rejected_batches": counters.rejected_batches if counters is not None else 0,
            "last_error": last_error,
            "connection": link.connection if link is not None else 0,
            "clock": self.clock_monitor.as_dict(),
        }
        if link is not None:
            doc["link"] = link.counters.as_dict()
        if uplink is not None:
            doc["uplink"] = uplink.as_dict()
        if self.heartbeat is not None:
            doc["heartbeats"] = self.heartbeat.published
        if self.not_after is not None:
            doc["certificate"] = self._certificate()
        return {"sync": doc}


__all__ = ["FINAL_DRAIN_S", "STATES", "Material", "SyncPart", "load_material"]
