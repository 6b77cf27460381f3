"""In-process events the nurse-facing views subscribe to (demo terminal now, dashboard later).

Events are published on the asyncio loop thread, after the fact they describe is durable
(a ReadingStored event only after the reading's transaction committed, DESIGN §6).
A subscriber that raises is logged and does not stop the others or the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from device_drivers.records import Reading
from edge_agent.alerts import Alert

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadingsStored:
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class ReadingsDropped:
    """Readings the store could not keep (disk full / quota): counted, never silent."""

    device_id: str
    count: int


@dataclass(frozen=True, slots=True)
class AlertChanged:
    alert: Alert


@dataclass(frozen=True, slots=True)
class DeviceStateChanged:
    device_id: str
    state: str
    detail: str
    at: datetime


Event = ReadingsStored | ReadingsDropped | AlertChanged | DeviceStateChanged
Subscriber = Callable[[Event], None]


class EventHub:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    def publish(self, event: Event) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:  # a broken view must not stop ingest
                log.exception("event=subscriber_failed subscriber=%r", fn)
