"""Fixtures for the sync tests: a real buffer, and SyncPart running against the real broker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from device_drivers.backoff import Backoff
from device_drivers.records import utcnow
from edge_agent.config import AgentConfig
from edge_agent.events import EventHub
from edge_agent.store import BufferStore
from edge_agent.sync.component import SyncPart
from tests.edge_agent.sync.support import GW
from tests.fixtures import real_store

FAST = {"backoff": lambda: Backoff(base=0.05, cap=0.5), "stall_backoff": lambda: Backoff(base=0.05, cap=0.3)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BufferStore]:
    with real_store(tmp_path / "state", gateway_id=GW) as s:
        yield s


def status_of(store: BufferStore) -> Callable[[], Mapping[str, Any]]:
    """A stand-in for Agent.status: the figures a heartbeat copies (and a patient id it must not)."""

    def build() -> Mapping[str, Any]:
        stats = store.stats()
        return {
            "version": "test",
            "gateway_id": GW,
            "province": "p1",
            "backlog": {"pending": stats.pending, "oldest_pending_age_s": stats.oldest_pending_age_s},
            "store": {"bytes_on_disk": stats.bytes_on_disk, "disk_full": stats.disk_full},
            "devices": [{"id": "oxi-1", "state": "streaming", "patient_id": "P-SECRET-0042", "last_value": 97}],
            "alerts": [{"patient_id": "P-SECRET-0042"}],
        }

    return build


@contextlib.asynccontextmanager
async def running_sync(
    config: AgentConfig,
    store: BufferStore,
    *,
    events: EventHub | None = None,
    status: Callable[[], Mapping[str, Any]] | None = None,
    **kw: Any,
) -> AsyncIterator[SyncPart]:
    """SyncPart started on ``store`` with fast backoffs and no final drain (unless given)."""
    options: dict[str, Any] = {
        "backoff": FAST["backoff"](),
        "stall_backoff": FAST["stall_backoff"](),
        "final_drain_s": 0.0,
    }
    options.update(kw)
    part = SyncPart(config, lambda: store, events or EventHub(), status or status_of(store), utcnow, **options)
    await part.start()
    try:
        yield part
    finally:
        await part.stop()
