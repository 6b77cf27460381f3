"""What the store hands out and reports: ``Batch`` (a leased outbox batch), ``PendingAlert``,
``StoreStats`` (status) and ``RetentionResult``. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from device_drivers.records import Reading


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings leased to the sync under one id, until ``BufferStore.ack(id)`` (the hub committed
    them) or the lease is released. ``attempt`` is 1 the first time the batch is handed out and
    grows on every re-send (after a release, a lease timeout or a restart), with the same id.
    An empty batch (``id == ""``, no readings) means there is nothing to lease right now."""

    id: str
    readings: tuple[Reading, ...]
    leased_at: datetime
    attempt: int = 1

    @property
    def uids(self) -> tuple[str, ...]:
        return tuple(r.uid for r in self.readings)


@dataclass(frozen=True, slots=True)
class PendingAlert:
    """An alert revision not yet acknowledged by the hub; acknowledge it with ``(alert_id, rev)``."""

    alert_id: str
    rev: int
    updated_at: datetime
    payload: dict[str, object]


@dataclass(frozen=True, slots=True)
class StoreStats:
    stored_total: int  # readings held in the buffer now (dead letters included)
    pending: int  # readings not yet acknowledged by the hub (dead letters excluded)
    oldest_pending_age_s: float | None
    bytes_on_disk: int  # database + WAL + shared-memory files
    dropped: dict[str, int]  # per vital, every reason summed (see dropped_by_reason)
    disk_full: bool
    integrity_checked_at_start: bool
    integrity_ok: bool
    cipher: str  # cipher used for new records
    decrypt_failures: int = 0  # rows that failed to decrypt since open (tampered, wrong key): reported, never returned
    dropped_by_reason: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> vital -> count
    space_level: str = "normal"  # normal | pressure | full | critical
    queued: int = 0  # readings submitted, not yet committed
    pending_alerts: int = 0
    last_seq: int = 0
    commits: int = 0  # reading transactions committed since open (group commit: << readings)
    dead_letter: int = 0  # readings that failed to open, out of the outbox for good (synced = 2)
    dead_letter_alerts: int = 0  # alert revisions that failed to open, out of the alert outbox
    batches_in_flight: int = 0  # leased batches not yet acknowledged or released
    leased: int = 0  # readings in those batches


@dataclass(frozen=True, slots=True)
class RetentionResult:
    readings_deleted: int
    alerts_deleted: int
    keys_destroyed: tuple[int, ...]
