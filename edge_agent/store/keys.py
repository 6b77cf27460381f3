"""Data keys as the database sees them: the keystore opened and checked against ``data_keys``,
rotation, destruction of keys no row uses, the AEAD sealer and the patient-index hash.

Every method that writes takes the writer's connection and runs on the writer thread (or during
open); ``sealer`` and ``pidx`` are also used by queries on callers' threads.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from edge_agent.store import codec
from edge_agent.store.connection import db_has_keys
from edge_agent.store.envelope import KEY_CHECK_PLAINTEXT, Cipher, Sealer, aad, patient_index
from edge_agent.store.errors import DecryptError, KeystoreError
from edge_agent.store.keystore import Keystore

log = logging.getLogger(__name__)

_PIDX_CACHE_MAX = 4096


def open_keystore(keystore_path: Path, db_path: Path, *, now: datetime) -> Keystore:
    """Open (or create, 0600) the keystore; refuse to create a new one next to a database that
    holds data sealed with the keys of a lost one."""
    if not keystore_path.exists() and db_has_keys(db_path):
        raise KeystoreError(
            str(keystore_path),
            "keystore is missing but the database holds data sealed with its keys; restore the keystore "
            "(a new one would not open them)",
        )
    return Keystore.open(keystore_path, now=now)


class KeyManager:
    def __init__(
        self,
        keystore: Keystore,
        *,
        gateway_id: str,
        cipher: Cipher,
        rotation: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.keystore = keystore
        self.gateway_id = gateway_id
        self.cipher = cipher
        self.sealer = Sealer()
        self.sealer.set_keys(keystore.key_bytes())
        self._rotation = rotation
        self._clock = clock
        self._pidx_cache: dict[str, bytes] = {}

    @property
    def current_id(self) -> int:
        return self.keystore.current_id

    def pidx(self, patient_id: str) -> bytes:
        """The patient index of ``patient_id`` (cached)."""
        pidx = self._pidx_cache.get(patient_id)
        if pidx is None:
            if len(self._pidx_cache) > _PIDX_CACHE_MAX:
                self._pidx_cache.clear()
            pidx = self._pidx_cache[patient_id] = patient_index(self.keystore.index_key, patient_id)
        return pidx

    def query_pidx(self, patient_id: str) -> bytes:
        """The patient index for a query on a caller's thread (not cached: the cache is the writer's)."""
        return patient_index(self.keystore.index_key, patient_id)

    def _check_aad(self, key_id: int, cipher: int) -> bytes:
        return aad("data_keys", self.gateway_id, key_id, (cipher,))

    def check(self, w: sqlite3.Connection) -> None:
        """At open: every live key the database knows must be in the keystore with the same bytes;
        keys new to the database get their row; keys destroyed in the keystore only are marked."""
        ks = self.keystore
        rows = w.execute("SELECT key_id, key_check, cipher, destroyed_us FROM data_keys").fetchall()
        known = set()
        to_mark = []
        for key_id, check, cipher, destroyed_us in rows:
            known.add(key_id)
            if destroyed_us is not None:
                continue
            if key_id not in ks.keys:
                if key_id in ks.destroyed:
                    to_mark.append(key_id)  # destroyed in the keystore, crash before the database knew
                    continue
                raise KeystoreError(str(ks.path), f"key {key_id} used by this database is missing from the keystore")
            try:
                plain = self.sealer.open(
                    key_id, Cipher(cipher), check, self._check_aad(key_id, cipher), table="data_keys", row=str(key_id)
                )
            except DecryptError:
                plain = b""
            if plain != KEY_CHECK_PLAINTEXT:
                raise KeystoreError(str(ks.path), f"key {key_id} does not match this database (wrong keystore?)")
        new = [k for k in ks.keys if k not in known]
        if not new and not to_mark:
            return
        w.execute("BEGIN IMMEDIATE")
        try:
            for key_id in new:
                self._insert_key_row(w, key_id)
            now_us = codec.to_us(self._clock())
            w.executemany("UPDATE data_keys SET destroyed_us = ? WHERE key_id = ?", [(now_us, k) for k in to_mark])
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            raise

    def _insert_key_row(self, w: sqlite3.Connection, key_id: int) -> None:
        c = int(self.cipher)
        check = self.sealer.seal(key_id, self.cipher, KEY_CHECK_PLAINTEXT, self._check_aad(key_id, c))
        created = codec.to_us(self.keystore.keys[key_id].created)
        w.execute(
            "INSERT OR REPLACE INTO data_keys (key_id, created_us, key_check, cipher) VALUES (?, ?, ?, ?)",
            (key_id, created, check, c),
        )

    def maybe_rotate(self, w: sqlite3.Connection) -> None:
        """Start a new data key when the current one is old enough (keystore written first)."""
        if self._clock() - self.keystore.current_key_created < self._rotation:
            return
        try:
            self.rotate_now(w)
        except KeystoreError as exc:
            log.error("event=key_rotation_failed reason=%s", exc.reason)

    def rotate_now(self, w: sqlite3.Connection) -> int:
        """Start a new data key whatever the current one's age (a remote ``rotate-keys``); returns
        its id. :class:`KeystoreError` when the keystore cannot be written (the current key stays)."""
        new_id = self.keystore.rotate(self._clock())
        self.sealer.set_keys(self.keystore.key_bytes())
        try:
            w.execute("BEGIN IMMEDIATE")
            self._insert_key_row(w, new_id)
            w.execute("COMMIT")
        except sqlite3.Error:
            if w.in_transaction:
                w.execute("ROLLBACK")
            # the row is added at the next open (check); the key is safe in the keystore
        log.info("event=key_rotated key_id=%d", new_id)
        return new_id

    def destroy_unused(self, w: sqlite3.Connection, now: datetime) -> list[int]:
        """Destroy every non-current key that no reading or alert uses; returns their ids."""
        ks = self.keystore
        unused = [
            k
            for k in ks.keys
            if k != ks.current_id
            and w.execute("SELECT 1 FROM readings WHERE key_id = ? LIMIT 1", (k,)).fetchone() is None
            and w.execute("SELECT 1 FROM alerts WHERE key_id = ? LIMIT 1", (k,)).fetchone() is None
            and w.execute("SELECT 1 FROM visits WHERE key_id = ? LIMIT 1", (k,)).fetchone() is None
        ]
        if not unused:
            return []
        try:
            gone = ks.destroy(unused, now)  # the keystore first: once it is written the data is shredded
        except KeystoreError as exc:
            log.error("event=key_destroy_failed reason=%s", exc.reason)  # tried again at the next retention
            return []
        self.sealer.set_keys(ks.key_bytes())
        try:
            w.execute("BEGIN IMMEDIATE")
            w.executemany(
                "UPDATE data_keys SET destroyed_us = ?, key_check = x'' WHERE key_id = ?",
                [(codec.to_us(now), k) for k in gone],
            )
            w.execute("COMMIT")
        except sqlite3.Error:
            if w.in_transaction:
                w.execute("ROLLBACK")  # reconciled at the next open
        return gone
