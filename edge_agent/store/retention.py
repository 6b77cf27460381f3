"""Retention and key destruction (writer thread): synced readings and synced, cleared alerts
older than ``retention_days`` are deleted, then every data key no row uses any more is
destroyed. Unsynced rows are never deleted."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta

from edge_agent.store import codec
from edge_agent.store.connection import is_full
from edge_agent.store.keys import KeyManager
from edge_agent.store.results import RetentionResult
from edge_agent.store.space import SpaceManager

log = logging.getLogger(__name__)

_PURGE_STEP = 2000


class Retention:
    def __init__(self, w: sqlite3.Connection, *, keys: KeyManager, space: SpaceManager, retention_days: float) -> None:
        self._w = w
        self._keys = keys
        self._space = space
        self._retention = timedelta(days=retention_days)

    def run(self, now: datetime) -> RetentionResult:
        cutoff_us = codec.to_us(now - self._retention)
        w = self._w
        self._keys.maybe_rotate(w)  # so an idle store's old current key can go too
        deleted = 0
        while True:
            n = self._space.purge_synced(limit=_PURGE_STEP, cutoff_us=cutoff_us)
            deleted += n
            if n < _PURGE_STEP:
                break
        before = w.total_changes
        try:
            w.execute("BEGIN IMMEDIATE")
            w.execute("DELETE FROM alerts WHERE synced_us IS NOT NULL AND is_open = 0 AND updated_us < ?", (cutoff_us,))
            alerts_deleted = w.total_changes - before
            w.execute("COMMIT")
        except sqlite3.Error as exc:
            if w.in_transaction:
                w.execute("ROLLBACK")
            if not is_full(exc):
                raise
            alerts_deleted = 0
        destroyed = self._keys.destroy_unused(w, now)
        if deleted or alerts_deleted or destroyed:
            log.info(
                "event=store_retention readings_deleted=%d alerts_deleted=%d keys_destroyed=%s",
                deleted,
                alerts_deleted,
                ",".join(map(str, destroyed)) or "-",
            )
        return RetentionResult(deleted, alerts_deleted, tuple(destroyed))
