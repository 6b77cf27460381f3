"""What the store reports: ``StoreStats`` (status) and ``RetentionResult``. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StoreStats:
    stored_total: int  # readings held in the buffer now
    pending: int  # readings not yet acknowledged by the hub
    oldest_pending_age_s: float | None
    bytes_on_disk: int  # database + WAL + shared-memory files
    dropped: dict[str, int]  # per vital, every reason summed (see dropped_by_reason)
    disk_full: bool
    integrity_checked_at_start: bool
    integrity_ok: bool
    cipher: str  # cipher used for new records
    decrypt_failures: int = 0  # rows that failed to decrypt (tampered, wrong key): reported, never returned
    dropped_by_reason: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> vital -> count
    space_level: str = "normal"  # normal | pressure | full | critical
    queued: int = 0  # readings submitted, not yet committed
    pending_alerts: int = 0
    last_seq: int = 0
    commits: int = 0  # reading transactions committed since open (group commit: << readings)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    readings_deleted: int
    alerts_deleted: int
    keys_destroyed: tuple[int, ...]
