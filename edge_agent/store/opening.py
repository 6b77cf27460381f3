"""Opening and closing the database file: create it 0600, connect, migrate, integrity check
after an unclean shutdown, the gateway check, the key check, the clean-shutdown flag, the
in-memory counters and the outbox's leases loaded from the rows; and moving a corrupt file aside
(quarantine)."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_agent.store import codec
from edge_agent.store.acked import PENDING, AckedRanges
from edge_agent.store.connection import (
    SQLITE_SUFFIXES,
    connect_writer,
    create_private,
    open_error,
    restrict_mode,
)
from edge_agent.store.errors import StoreCorruptError, StoreError
from edge_agent.store.indexes import DeferredIndex
from edge_agent.store.keys import KeyManager
from edge_agent.store.leases import Lease, decode_seqs
from edge_agent.store.schema import migrate
from edge_agent.store.space import persist_max_seq
from edge_agent.store.state import BufferState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    w: sqlite3.Connection  # the writer's connection
    page_size: int
    integrity_checked: bool  # the last shutdown was unclean, so integrity_check ran (and passed)
    state: BufferState
    indexed_upto: int
    leases: list[Lease]  # batches leased before this open: none in flight now, re-sent first
    acked: tuple[tuple[int, int], ...]  # the acknowledged seq ranges (edge_agent.store.acked)


def open_database(
    path: Path,
    *,
    gateway_id: str,
    keys: KeyManager,
    page_size: int,
    synchronous: str,
    max_db_bytes: int | None,
    clock: Callable[[], datetime],
) -> Opened:
    """Open (or create) and migrate the database; raises StoreCorruptError, StoreError,
    KeystoreError or SchemaError, with the connection closed."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    create_private(path)  # 0600 whatever the umask; SQLite gives its -wal and -shm the same mode
    for suffix in SQLITE_SUFFIXES:  # files an older agent left readable by others
        restrict_mode(Path(f"{path}{suffix}"))
    try:
        w = connect_writer(path, page_size=page_size, synchronous=synchronous)
    except sqlite3.DatabaseError as exc:
        raise open_error(path, exc) from exc
    for suffix in SQLITE_SUFFIXES[1:]:
        restrict_mode(Path(f"{path}{suffix}"))
    try:
        return _setup(w, path, gateway_id=gateway_id, keys=keys, max_db_bytes=max_db_bytes, clock=clock)
    except sqlite3.DatabaseError as exc:
        w.close()
        raise open_error(path, exc) from exc
    except BaseException:
        w.close()
        raise


def _setup(
    w: sqlite3.Connection,
    path: Path,
    *,
    gateway_id: str,
    keys: KeyManager,
    max_db_bytes: int | None,
    clock: Callable[[], datetime],
) -> Opened:
    migrate(w, now=clock())
    meta = dict(w.execute("SELECT key, value FROM meta").fetchall())
    page_size = int(w.execute("PRAGMA page_size").fetchone()[0])
    if max_db_bytes is not None:
        w.execute(f"PRAGMA max_page_count = {max(16, max_db_bytes // page_size)}")

    # Integrity check after an unclean shutdown (the flag is '0' while a store is open).
    integrity_checked = meta.get("clean_shutdown") == "0"
    if integrity_checked:
        try:
            problems = [row[0] for row in w.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            log.error("event=store_integrity_failed path=%s problems=%d", path, len(problems))
            raise StoreCorruptError(str(path), problems)
        log.warning("event=store_unclean_shutdown path=%s integrity=ok", path)

    gw = meta.get("gateway_id")
    if gw is not None and gw != gateway_id:
        raise StoreError(f"{path}: database belongs to gateway {gw!r}, not {gateway_id!r}")

    keys.check(w)
    now_us = codec.to_us(clock())
    w.execute("BEGIN IMMEDIATE")
    w.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [("gateway_id", gateway_id), ("clean_shutdown", "0"), ("opened_us", str(now_us))],
    )
    w.execute("COMMIT")
    keys.maybe_rotate(w)
    acked = AckedRanges.merged(w.execute("SELECT lo, hi FROM acked").fetchall())
    return Opened(
        w,
        page_size,
        integrity_checked,
        load_state(w, meta),
        int(meta.get("indexed_upto", "0")),
        load_leases(w),
        acked,
    )


def load_state(w: sqlite3.Connection, meta: dict[str, str]) -> BufferState:
    """The in-memory counters, from the rows and meta."""
    max_seq_meta = int(meta.get("max_seq", "0"))
    row = w.execute(
        "SELECT COALESCE(MAX(seq), 0), COUNT(*), "
        f"COALESCE(SUM(CASE WHEN {PENDING} THEN 1 ELSE 0 END), 0), MIN(CASE WHEN {PENDING} THEN seq END), "
        "COALESCE(SUM(synced = 2), 0) FROM readings r"
    ).fetchone()
    dropped: dict[str, Counter[str]] = {}
    for vital, reason, count in w.execute("SELECT vital, reason, count FROM drop_counts"):
        dropped.setdefault(reason, Counter())[vital] += count
    alerts = w.execute(
        "SELECT COALESCE(SUM(synced_us IS NULL AND dead_us IS NULL), 0), COALESCE(SUM(dead_us IS NOT NULL), 0) "
        "FROM alerts"
    ).fetchone()
    return BufferState(
        last_seq=max(max_seq_meta, int(row[0])),
        persisted_max_seq=max_seq_meta,
        stored_total=int(row[1]),
        pending=int(row[2]),
        low_wm=row[3],
        dead_letter=int(row[4]),
        pending_alerts=int(alerts[0]),
        dead_letter_alerts=int(alerts[1]),
        dropped=dropped,
    )


def load_leases(w: sqlite3.Connection) -> list[Lease]:
    """The batches leased before this open, oldest first; none is in flight any more (a batch
    with unreadable seqs is skipped and reported: its readings are leased again in a new batch)."""
    out = []
    for batch_id, leased_us, attempt, seqs in w.execute(
        "SELECT batch_id, leased_us, attempt, seqs FROM batches ORDER BY n"
    ).fetchall():
        try:
            out.append(Lease(str(batch_id), decode_seqs(str(seqs)), int(leased_us), int(attempt), in_flight=False))
        except ValueError:
            log.error("event=store_batch_unreadable batch=%r", str(batch_id)[:64])
    return out


def finish(w: sqlite3.Connection, index: DeferredIndex, state: BufferState) -> None:
    """Writer thread, at close: index the tail, record max_seq and a clean shutdown, checkpoint."""
    try:
        w.execute("BEGIN IMMEDIATE")
        index.tail_if_due(state.last_seq, force=True)
        persist_max_seq(w, state)
        w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean_shutdown', '1')")
        w.execute("COMMIT")
        w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        if w.in_transaction:
            w.execute("ROLLBACK")
        log.warning("event=store_close_incomplete error=%s", exc)


def quarantine(path: Path, now: datetime) -> Path:
    """Move a database (and its WAL and shared-memory files) aside as ``<name>.corrupt-<UTC time>``."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm", ""):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{target}{suffix}"))
            restrict_mode(Path(f"{target}{suffix}"))  # the copy holds sealed data too: 0600
    log.error("event=store_quarantined path=%s moved_to=%s", path, target)
    return target
