"""The retained ``status`` heartbeat (DESIGN §5): what the hub's fleet view knows about a gateway.

Published (QoS 1, retained) on every connection, every ``heartbeat_s``, and soon after a change
(a device's state, the sync state, the disk filling, the clock's NTP state, the models); at a
clean stop one last time with ``online: false``; the broker's copy of the last will says the
same when the gateway vanishes.

The document is built from the agent's own status snapshot (a callable, the one behind
``status.json``) by **copying named fields only**: counts, states, versions, times, sizes. A
heartbeat is not sealed, so nothing patient-related may reach it, and an allow-list keeps it
that way when the status snapshot grows (a patient id, an alert's inputs, a device's last value
are never copied). Encoded with ``wire.messages.encode_heartbeat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.sync.clock import ClockMonitor
from edge_agent.sync.mqtt import MqttLink, NotConnected, SyncError
from wire.errors import WireError
from wire.messages import encode_heartbeat

log = logging.getLogger(__name__)

DEBOUNCE_S = 1.0  # changes that come together make one heartbeat
MAX_TEXT = 200
MAX_DEVICES = 64

_Scalar = str | int | float | bool | None


def _scalar(value: object) -> _Scalar:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if value is None or isinstance(value, bool | int | float):
        return value
    return None


def _pick(source: object, keys: tuple[str, ...]) -> dict[str, _Scalar]:
    if not isinstance(source, Mapping):
        return {}
    return {k: _scalar(source[k]) for k in keys if k in source}


def _counts(source: object) -> dict[str, int]:
    """A mapping of names to counts (per vital, per reason), nothing else."""
    if not isinstance(source, Mapping):
        return {}
    return {str(k)[:64]: int(v) for k, v in source.items() if isinstance(v, int) and not isinstance(v, bool)}


def _nested_counts(source: object) -> dict[str, dict[str, int]]:
    if not isinstance(source, Mapping):
        return {}
    return {str(k)[:64]: _counts(v) for k, v in source.items()}


DEVICE_KEYS = (
    "id",
    "format",
    "transport",
    "state",
    "since",
    "last_data_at",
    "measurements",
    "reconnects",
    "parser_errors",
)
STORE_KEYS = ("bytes_on_disk", "disk_full", "space_level", "cipher", "decrypt_failures", "integrity_ok", "queued")
BACKLOG_KEYS = ("pending", "oldest_pending_age_s", "dead_letter")
PIPELINE_KEYS = ("received", "invalid", "device_clock_rejected", "stored", "dropped", "store_errors", "alerts")
SCORING_KEYS = ("available", "error", "safety_net", "open_alerts", "dev_key_trusted")
SYNC_KEYS = ("state", "since", "last_ack_at", "batches_in_flight", "synced", "rejected_batches", "last_error")
MODEL_KEYS = ("id", "version", "sha256", "origin")


def heartbeat_document(
    status: Mapping[str, Any],
    *,
    online: bool,
    sent_at: datetime,
    clock: Mapping[str, object] | None = None,
    certificate: Mapping[str, object] | None = None,
    disk: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The heartbeat for a status snapshot: an allow-list of its fields (see the module doc)."""
    store = status.get("store", {})
    scoring = status.get("scoring", {})
    devices = status.get("devices", [])
    doc: dict[str, object] = {
        "online": online,
        "sent_at": sent_at.isoformat(),
        "gateway_id": _scalar(status.get("gateway_id")),
        "province": _scalar(status.get("province")),
        "agent_version": _scalar(status.get("version")),
        "started_at": _scalar(status.get("started_at")),
        "backlog": _pick(status.get("backlog"), BACKLOG_KEYS),
        "store": {
            **_pick(store, STORE_KEYS),
            "pending_alerts": _scalar(store.get("pending_alerts")) if isinstance(store, Mapping) else None,
            "quarantined": bool(store.get("quarantined")) if isinstance(store, Mapping) else False,
            "dropped": _counts(store.get("dropped") if isinstance(store, Mapping) else None),
            "dropped_by_reason": _nested_counts(store.get("dropped_by_reason") if isinstance(store, Mapping) else None),
        },
        "disk": dict(disk or {}),
        "devices": [_pick(d, DEVICE_KEYS) for d in devices[:MAX_DEVICES]] if isinstance(devices, list) else [],
        "pipeline": _pick(status.get("pipeline"), PIPELINE_KEYS),
        "scoring": {
            **_pick(scoring, SCORING_KEYS),
            "models": [
                _pick(m, MODEL_KEYS) for m in (scoring.get("models", []) if isinstance(scoring, Mapping) else [])
            ][:32],
        },
        "sync": _pick(status.get("sync"), SYNC_KEYS),
        "clock": dict(clock or {}),
        "certificate": dict(certificate or {}),
    }
    return doc


def change_signature(doc: Mapping[str, Any]) -> tuple[object, ...]:
    """What makes a heartbeat worth sending before it is due."""
    devices = tuple((d.get("id"), d.get("state")) for d in doc.get("devices", []))
    store = doc.get("store", {})
    scoring = doc.get("scoring", {})
    models = tuple((m.get("id"), m.get("version")) for m in scoring.get("models", []))
    return (
        doc.get("online"),
        doc.get("sync", {}).get("state"),
        devices,
        store.get("disk_full"),
        store.get("space_level"),
        scoring.get("available"),
        models,
        doc.get("clock", {}).get("ntp"),
    )


def disk_figures(path: Path) -> dict[str, object]:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return {}
    return {"free_bytes": usage.free, "total_bytes": usage.total}


class Heartbeat:
    """Publishes the heartbeat while the link is up: see the module doc for when."""

    def __init__(
        self,
        *,
        link: MqttLink,
        topic: str,
        build: Callable[[], Mapping[str, Any]],
        interval_s: float,
        clock: Callable[[], datetime],
        clock_monitor: ClockMonitor | None = None,
        certificate: Callable[[], Mapping[str, object]] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.link = link
        self.topic = topic
        self.build = build
        self.interval_s = interval_s
        self.clock = clock
        self.clock_monitor = clock_monitor
        self.certificate = certificate
        self.state_dir = state_dir
        self.published = 0
        self.failures = 0
        self.last_published_at: datetime | None = None
        self._poke = asyncio.Event()
        self._last_signature: tuple[object, ...] | None = None

    def poke(self) -> None:
        """Something a heartbeat reports may have changed: check soon."""
        self._poke.set()

    def document(self, *, online: bool = True) -> dict[str, object]:
        try:
            status = self.build()
        except Exception as exc:  # a failing part must not stop the heartbeat
            log.error("event=heartbeat_build_failed error=%r", exc)
            status = {}
        return heartbeat_document(
            status,
            online=online,
            sent_at=self.clock(),
            clock=self.clock_monitor.as_dict() if self.clock_monitor is not None else None,
            certificate=self.certificate() if self.certificate is not None else None,
            disk=disk_figures(self.state_dir) if self.state_dir is not None else None,
        )

    def payload(self, *, online: bool = True) -> bytes:
        return encode_heartbeat(self.document(online=online))

    async def _refresh_clock(self) -> None:
        if self.clock_monitor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.clock_monitor.refresh)

    async def _publish(self, doc: dict[str, object]) -> None:
        try:
            await self.link.publish(self.topic, encode_heartbeat(doc), qos=1, retain=True)
        except NotConnected:
            raise
        except (SyncError, WireError) as exc:
            self.failures += 1
            log.warning("event=heartbeat_failed reason=%s", getattr(exc, "reason", type(exc).__name__))
            return
        self.published += 1
        self.last_published_at = self.clock()
        self._last_signature = change_signature(doc)

    async def run(self) -> None:
        while True:
            await self.link.wait_connected()
            with contextlib.suppress(NotConnected):
                await self._connected_loop()

    async def _connected_loop(self) -> None:
        await self._refresh_clock()
        self._poke.clear()
        await self._publish(self.document())
        due = time.monotonic() + self.interval_s
        while self.link.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - time.monotonic())):
                    await self._poke.wait()
            if self._poke.is_set():
                await asyncio.sleep(DEBOUNCE_S)
                self._poke.clear()
            if not self.link.connected:
                return
            is_due = time.monotonic() >= due
            if is_due:
                await self._refresh_clock()
            doc = self.document()
            if is_due or change_signature(doc) != self._last_signature:
                await self._publish(doc)
                due = time.monotonic() + self.interval_s


__all__ = ["Heartbeat", "change_signature", "disk_figures", "heartbeat_document"]
