"""``edge-provision decommission``: retire a gateway so that nothing it holds can be read again.

Destroys the gateway's private key (its identity) and the buffer's keystore (the data keys):
every sealed row left in the buffer is then ciphertext nobody can open, wherever copies of it
survive on the SD card. The buffer files are removed afterwards. Refused while the agent runs
(it holds the keys in memory and would write them back), and while readings or alerts are still
pending sync, unless ``force`` (the technician accepts losing them).

Each file is overwritten with zeros and fsynced before it is unlinked. On flash the old blocks
may survive the overwrite (wear levelling); the keys are small and the data was sealed with
them, which is why destroying the keys, not the data, is what makes the data unreadable.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import Refused

__all__ = ["Decommissioned", "Pending", "count_pending", "decommission", "shred"]


@dataclass(frozen=True, slots=True)
class Pending:
    readings: int
    alerts: int

    @property
    def any(self) -> bool:
        return bool(self.readings or self.alerts)


@dataclass(frozen=True, slots=True)
class Decommissioned:
    destroyed: tuple[Path, ...]
    removed: tuple[Path, ...]
    pending_lost: Pending


# The buffer's schema (edge_agent/store/schema.py) is the contract read here, without importing the
# agent. From store version 6 the hub's acks are kept as seq ranges in ``acked`` (the record; older
# agents folded them into ``readings.synced`` in bulk: edge_agent/store/acked.py), so a reading is
# pending when it is not synced and no range holds its seq; before version 6, ``synced = 0`` alone.
_UNSYNCED_READINGS = "SELECT count(*) FROM readings WHERE synced = 0"
_PENDING_READINGS = (
    "SELECT count(*) FROM readings r WHERE r.synced = 0 AND NOT "
    "COALESCE((SELECT a.hi FROM acked a WHERE a.lo <= r.seq ORDER BY a.lo DESC LIMIT 1), 0) >= r.seq"
)


def _has_acked(con: sqlite3.Connection) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'acked'").fetchone() is not None


def count_pending(db: Path) -> Pending:
    """Readings and alerts not yet acknowledged by the hub, read-only (the agent is stopped)."""
    if not db.exists():
        return Pending(0, 0)
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise Refused("store_unreadable", f"{db}: {exc}", "pass --force to destroy the keys anyway") from None
    try:
        readings = con.execute(_PENDING_READINGS if _has_acked(con) else _UNSYNCED_READINGS).fetchone()[0]
        alerts = con.execute("SELECT count(*) FROM alerts WHERE synced_us IS NULL").fetchone()[0]
    except sqlite3.Error as exc:
        raise Refused("store_unreadable", f"{db}: {exc}", "pass --force to destroy the keys anyway") from None
    finally:
        con.close()
    return Pending(int(readings), int(alerts))


def shred(path: Path) -> bool:
    """Overwrite with zeros, fsync, unlink; False when there was no such file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def decommission(
    *,
    key_path: Path,
    keystore: Path,
    db: Path,
    pid_alive: bool,
    force: bool = False,
    extra_secrets: tuple[Path, ...] = (),
) -> Decommissioned:
    if pid_alive:
        raise Refused(
            "agent_running",
            "the agent is running",
            "systemctl disable --now station-edge (or stop edge-agent run), then decommission",
        )
    pending = Pending(0, 0)
    try:
        pending = count_pending(db)
    except Refused:
        if not force:
            raise
    if pending.any and not force:
        raise Refused(
            "pending",
            f"{pending.readings} readings and {pending.alerts} alerts are not yet acknowledged by the hub",
            "let the gateway sync (edge-agent status shows the backlog), or pass --force to lose them",
        )
    destroyed = tuple(p for p in (key_path, keystore, *extra_secrets) if shred(p))
    removed = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = db.with_name(db.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return Decommissioned(destroyed=destroyed, removed=tuple(removed), pending_lost=pending)
