"""BufferStore: the encrypted offline buffer (readings outbox, alert lane, dashboard queries).

Threads: the group-commit writer thread owns the write connection and runs every write
(readings, sync marks, alerts, retention) in submission order; queries use a second connection
(WAL lets them read while the writer commits). ``submit`` never blocks: it queues and returns a
future that resolves after COMMIT. See docs/storage.md for the schema and the key lifecycle.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag

from device_drivers.records import Reading
from edge_agent.config import StoreConfig
from edge_agent.store import codec, policy
from edge_agent.store.envelope import (
    KEY_CHECK_PLAINTEXT,
    NONCE_LEN,
    Cipher,
    Sealer,
    aad,
    choose_cipher,
    patient_index,
    reading_aad,
)
from edge_agent.store.errors import (
    DecryptError,
    KeystoreError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    TamperError,
)
from edge_agent.store.keystore import Keystore
from edge_agent.store.reserve import EmergencyReserve
from edge_agent.store.schema import migrate
from edge_agent.store.writer import CommitResult, GroupCommitWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

_READING_COLS = "seq, measured_us, received_delta_us, vital, device_id, pidx, key_id, cipher, payload"
_INSERT_READING = f"INSERT INTO readings ({_READING_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# columns as selected: blobs cast, so a row whose storage class was changed still reads (then fails to open)
_SELECT_READING = (
    "r.seq, r.measured_us, r.received_delta_us, r.vital, CAST(r.device_id AS TEXT), CAST(r.pidx AS BLOB), "
    "r.key_id, r.cipher, CAST(r.payload AS BLOB)"
)
_FULL_CODES = {13}  # SQLITE_FULL


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


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _FULL_CODES:
        return True
    if code is not None and (code & 0xFF) == 10:  # SQLITE_IOERR_*: ENOSPC surfaces here on some paths
        return True
    msg = str(exc).lower()
    return "full" in msg or "disk i/o error" in msg


def _db_has_keys(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM data_keys)").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB
        return True
    msg = str(exc).lower()
    return "malformed" in msg or "not a database" in msg


class BufferStore:
    """The offline buffer. Create with :meth:`open`; see the module docstring for threading."""

    def __init__(self) -> None:  # use BufferStore.open
        raise TypeError("use BufferStore.open(...)")

    # ------------------------------------------------------------------------------------------
    # opening
    # ------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        gateway_id: str,
        keystore_path: Path,
        config: StoreConfig,
        cipher: Cipher | str | None = None,
        page_size: int = 512,
        synchronous: str = "FULL",
        max_db_bytes: int | None = None,
        reserve_bytes: int = 8 * 1024 * 1024,
        emergency_reserve_bytes: int = 1024 * 1024,
        downsample_s: float = 60.0,
        key_rotation_days: float = 1.0,
        max_queued: int = 20_000,
        max_batch: int = 2_000,
        index_every: int = 256,
        index_interval_s: float = 30.0,
        clock: Callable[[], datetime] | None = None,
    ) -> BufferStore:
        """Create or open; migrate; integrity_check after an unclean shutdown; create the keystore
        (0600) if absent, refuse one readable by group/other; start the group-commit writer.

        Keyword arguments beyond the contract: ``cipher`` forces the cipher for new records
        (default: AES-256-GCM when the CPU has AES instructions, else ChaCha20-Poly1305);
        ``page_size`` applies to a new database; ``max_db_bytes`` caps the file with SQLite's
        ``max_page_count`` (a hard cap for tests and for filesystems without quotas);
        ``reserve_bytes`` is the free space the store tries to leave on the filesystem;
        ``emergency_reserve_bytes`` is the size of the file the store deletes when the filesystem
        is full, so acknowledgements and purges can still commit (0: none).
        """
        self = object.__new__(cls)
        self._init(
            Path(path),
            gateway_id=gateway_id,
            keystore_path=Path(keystore_path),
            config=config,
            cipher=choose_cipher(cipher),
            page_size=page_size,
            synchronous=synchronous,
            max_db_bytes=max_db_bytes,
            reserve_bytes=reserve_bytes,
            emergency_reserve_bytes=emergency_reserve_bytes,
            downsample_s=downsample_s,
            key_rotation_days=key_rotation_days,
            max_queued=max_queued,
            max_batch=max_batch,
            index_every=index_every,
            index_interval_s=index_interval_s,
            clock=clock or (lambda: datetime.now(UTC)),
        )
        return self

    def _init(
        self,
        path: Path,
        *,
        gateway_id: str,
        keystore_path: Path,
        config: StoreConfig,
        cipher: Cipher,
        page_size: int,
        synchronous: str,
        max_db_bytes: int | None,
        reserve_bytes: int,
        emergency_reserve_bytes: int,
        downsample_s: float,
        key_rotation_days: float,
        max_queued: int,
        max_batch: int,
        index_every: int,
        index_interval_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.config = config
        self._cipher = cipher
        self._clock = clock
        self._closed = False
        self._lock = threading.Lock()  # guards the counters below
        self._read_lock = threading.Lock()  # guards the reader connection
        quota = int(config.quota_mb * 1024 * 1024)
        if max_db_bytes is not None:
            quota = min(quota, max_db_bytes)  # a hard cap is a quota the policy must see coming
        self._space = policy.SpacePolicy(quota_bytes=quota, reserve_bytes=reserve_bytes, downsample_s=downsample_s)
        self._key_rotation = timedelta(days=key_rotation_days)
        self._index_every = index_every
        self._index_interval_us = int(index_interval_s * 1_000_000)
        self._last_kept: dict[tuple[str, str], int] = {}
        self._level = policy.Level.NORMAL
        self._disk_full = False
        self._decrypt_failed: set[tuple[str, str]] = set()
        self._alert_revs_sent: dict[str, int] = {}
        self._unpersisted: Counter[tuple[str, str]] = Counter()  # (vital, reason) counted, not yet written
        self._overflow_max_seq = 0
        self._commits = 0
        self._pidx_cache: dict[str, bytes] = {}
        self._reserve = EmergencyReserve(path.with_name(path.name + "-reserve"), emergency_reserve_bytes)
        self._reserve_released = False

        if not keystore_path.exists() and _db_has_keys(path):
            raise KeystoreError(
                str(keystore_path),
                "keystore is missing but the database holds data sealed with its keys; restore the keystore "
                "(a new one would not open them)",
            )
        self._keystore = Keystore.open(keystore_path)
        self._sealer = Sealer()
        self._sealer.set_keys(self._keystore.key_bytes())

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._w = self._connect(path, page_size=page_size, synchronous=synchronous)
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                raise StoreCorruptError(str(path), [str(exc)]) from exc
            raise StoreError(f"{path}: cannot open the buffer: {exc}") from exc
        try:
            self._setup(max_db_bytes)
        except sqlite3.DatabaseError as exc:
            self._w.close()
            if _is_corrupt(exc):
                raise StoreCorruptError(str(path), [str(exc)]) from exc
            raise StoreError(f"{path}: cannot open the buffer: {exc}") from exc
        except BaseException:
            self._w.close()
            raise
        self._reserve.ensure()
        self._r = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._r.execute("PRAGMA query_only = ON")
        self._writer = GroupCommitWriter(
            self._commit_batch,
            window_s=config.group_commit_ms / 1000.0,
            max_batch=max_batch,
            max_queued=max_queued,
            on_overflow=self._count_overflow,
        )
        self._writer.start()
        log.info(
            "event=store_open path=%s cipher=%s last_seq=%d pending=%d integrity_checked=%s",
            path,
            cipher.label,
            self._last_seq,
            self._pending,
            self._integrity_checked,
        )

    @staticmethod
    def _connect(path: Path, *, page_size: int, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                conn.execute(f"PRAGMA page_size = {int(page_size)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: cannot enable WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA secure_delete = FAST")
            psize = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(256, (2 * 1024 * 1024) // psize)}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _setup(self, max_db_bytes: int | None) -> None:
        w = self._w
        try:
            migrate(w)
            meta = dict(w.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                raise StoreCorruptError(str(self.path), [str(exc)]) from exc
            raise
        self._page_size = int(w.execute("PRAGMA page_size").fetchone()[0])
        if max_db_bytes is not None:
            w.execute(f"PRAGMA max_page_count = {max(16, max_db_bytes // self._page_size)}")

        # Integrity check after an unclean shutdown (the flag is '0' while a store is open).
        self._integrity_checked = meta.get("clean_shutdown") == "0"
        self._integrity_ok = True
        if self._integrity_checked:
            try:
                problems = [row[0] for row in w.execute("PRAGMA integrity_check").fetchall()]
            except sqlite3.DatabaseError as exc:
                problems = [str(exc)]
            if problems != ["ok"]:
                self._integrity_ok = False
                log.error("event=store_integrity_failed path=%s problems=%d", self.path, len(problems))
                raise StoreCorruptError(str(self.path), problems)
            log.warning("event=store_unclean_shutdown path=%s integrity=ok", self.path)

        gw = meta.get("gateway_id")
        if gw is not None and gw != self.gateway_id:
            raise StoreError(f"{self.path}: database belongs to gateway {gw!r}, not {self.gateway_id!r}")

        self._check_keys()
        now_us = codec.to_us(self._clock())
        w.execute("BEGIN IMMEDIATE")
        w.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("gateway_id", self.gateway_id), ("clean_shutdown", "0"), ("opened_us", str(now_us))],
        )
        w.execute("COMMIT")
        self._maybe_rotate()

        max_seq_meta = int(meta.get("max_seq", "0"))
        row = w.execute(
            "SELECT COALESCE(MAX(seq), 0), COUNT(*), "
            "COALESCE(SUM(synced = 0), 0), MIN(CASE WHEN synced = 0 THEN seq END) FROM readings"
        ).fetchone()
        self._last_seq = max(max_seq_meta, int(row[0]))
        self._persisted_max_seq = max_seq_meta
        self._stored_total = int(row[1])
        self._pending = int(row[2])
        self._low_wm: int | None = row[3]
        self._indexed_upto = int(meta.get("indexed_upto", "0"))
        self._last_index_us = now_us
        self._dropped: dict[str, Counter[str]] = {}
        for vital, reason, count in w.execute("SELECT vital, reason, count FROM drop_counts"):
            self._dropped.setdefault(reason, Counter())[vital] += count
        self._pending_alerts = int(w.execute("SELECT COUNT(*) FROM alerts WHERE synced_us IS NULL").fetchone()[0])

    # --- keys -----------------------------------------------------------------------------------

    def _key_check_aad(self, key_id: int, cipher: int) -> bytes:
        return aad("data_keys", self.gateway_id, key_id, (cipher,))

    def _check_keys(self) -> None:
        """Every live key the database knows must be in the keystore with the same bytes."""
        w = self._w
        ks = self._keystore
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
                plain = self._sealer.open(
                    key_id,
                    Cipher(cipher),
                    check,
                    self._key_check_aad(key_id, cipher),
                    table="data_keys",
                    row=str(key_id),
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
                self._insert_key_row(key_id)
            now_us = codec.to_us(self._clock())
            w.executemany("UPDATE data_keys SET destroyed_us = ? WHERE key_id = ?", [(now_us, k) for k in to_mark])
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            raise

    def _insert_key_row(self, key_id: int) -> None:
        c = int(self._cipher)
        check = self._sealer.seal(key_id, self._cipher, KEY_CHECK_PLAINTEXT, self._key_check_aad(key_id, c))
        created = codec.to_us(self._keystore.keys[key_id].created)
        self._w.execute(
            "INSERT OR REPLACE INTO data_keys (key_id, created_us, key_check, cipher) VALUES (?, ?, ?, ?)",
            (key_id, created, check, c),
        )

    def _maybe_rotate(self) -> None:
        """Writer thread (or open): start a new data key when the current one is old enough."""
        if self._clock() - self._keystore.current_key_created < self._key_rotation:
            return
        try:
            new_id = self._keystore.rotate(self._clock())
        except KeystoreError as exc:
            log.error("event=key_rotation_failed reason=%s", exc.reason)
            return
        self._sealer.set_keys(self._keystore.key_bytes())
        try:
            self._w.execute("BEGIN IMMEDIATE")
            self._insert_key_row(new_id)
            self._w.execute("COMMIT")
        except sqlite3.Error:
            if self._w.in_transaction:
                self._w.execute("ROLLBACK")
            # the row is added at the next open (_check_keys); the key is safe in the keystore
        log.info("event=key_rotated key_id=%d", new_id)

    # ------------------------------------------------------------------------------------------
    # writing readings (writer thread)
    # ------------------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Highest Reading.seq ever committed or dropped (0 for a new store)."""
        with self._lock:
            return max(self._last_seq, self._overflow_max_seq)

    def submit(self, readings: Sequence[Reading]) -> Future[CommitResult]:
        """Queue readings for the group-commit writer; the future resolves after COMMIT."""
        if self._closed:
            raise StoreClosedError("store is closed")
        return self._writer.submit(readings)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is committed."""
        if self._closed:
            return
        self._writer.call(lambda: None, timeout)

    def _count_overflow(self, readings: Sequence[Reading]) -> None:
        with self._lock:
            for r in readings:
                self._unpersisted[(str(r.vital), "queue_full")] += 1
                self._overflow_max_seq = max(self._overflow_max_seq, r.seq)
        log.warning("event=store_queue_full dropped=%d", len(readings))

    def _pidx(self, patient_id: str) -> bytes:
        pidx = self._pidx_cache.get(patient_id)
        if pidx is None:
            if len(self._pidx_cache) > 4096:
                self._pidx_cache.clear()
            pidx = self._pidx_cache[patient_id] = patient_index(self._keystore.index_key, patient_id)
        return pidx

    def _seal_rows(self, batch: Sequence[Reading], indexes: Sequence[int], key_id: int) -> dict[int, tuple[Any, ...]]:
        """Writer thread: seal the readings at ``indexes`` into row tuples (one random draw per batch)."""
        gw = self.gateway_id
        c = int(self._cipher)
        encrypt = self._sealer.aead(key_id, self._cipher).encrypt
        nonces = os.urandom(NONCE_LEN * len(indexes))
        out: dict[int, tuple[Any, ...]] = {}
        to_us = codec.to_us
        plaintext = codec.reading_plaintext
        vcodes = codec.VITAL_CODES
        pcache = self._pidx_cache
        for n, i in enumerate(indexes):
            r = batch[i]
            seq = r.seq
            mus = to_us(r.measured_at)
            rus = to_us(r.received_at)
            vital = vcodes[r.vital]
            pid = r.patient_id
            pidx = None if pid is None else (pcache.get(pid) or self._pidx(pid))
            nonce = nonces[n * NONCE_LEN : (n + 1) * NONCE_LEN]
            ad = reading_aad(gw, seq, vital, mus, rus, r.device_id, pidx, key_id, c)
            out[i] = (
                seq,
                mus,
                rus - mus,
                vital,
                r.device_id,
                pidx,
                key_id,
                c,
                nonce + encrypt(nonce, plaintext(r, gw), ad),
            )
        return out

    def _used_bytes(self) -> int:
        pages = self._w.execute("PRAGMA page_count").fetchone()[0]
        free = self._w.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages - free) * self._page_size

    def _fs_free(self) -> int | None:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _space_level(self) -> policy.Level:
        free = self._fs_free()
        if free is not None:
            # pages in the WAL are written a second time into the database at the next checkpoint
            with contextlib.suppress(OSError):
                free -= os.stat(f"{self.path}-wal").st_size
        return self._space.level(self._used_bytes(), free)

    def _commit_batch(self, batch: list[Reading]) -> list[bool]:
        self._maybe_rotate()
        level = self._space_level()
        if level >= policy.Level.PRESSURE and self._purge_synced(limit=max(1000, len(batch))):
            level = self._space_level()
        if self._reserve_released and level is policy.Level.NORMAL and self._reserve.ensure():
            self._reserve_released = False
        key_id = self._keystore.current_id
        saved_kept = dict(self._last_kept)
        plan = policy.plan_batch(batch, level, self._last_kept, self._space.downsample_s)
        sealed = self._seal_rows(batch, plan.keep, key_id)
        drops: list[tuple[int, str]] = [(i, plan.reason) for i in plan.drop]
        keep = list(plan.keep)
        hit_full = False
        purged = False
        for _attempt in range(4):
            try:
                stored, dup = self._write_readings(batch, [sealed[i] for i in keep], keep, drops)
                break
            except sqlite3.Error as exc:
                if not _is_full(exc):
                    self._last_kept = saved_kept
                    if _is_corrupt(exc):
                        raise StoreCorruptError(str(self.path), [str(exc)]) from exc
                    raise
                hit_full = True
                self._last_kept = saved_kept
                spot, cont = policy.spot_only(batch, keep)
                if not purged:  # first make room from history the hub already has
                    purged = True
                    if self._purge_synced(limit=max(1000, 4 * len(batch))):
                        continue
                if cont:  # then continuous streams go, before any spot check
                    keep = spot
                    drops += [(i, "disk_full") for i in cont]
                else:
                    drops += [(i, "disk_full") for i in keep]
                    keep = []
        else:
            # even the drop counts could not be written: keep them in memory, persist later
            stored, dup = [], []
            with self._lock:
                for i, reason in drops:
                    self._unpersisted[(str(batch[i].vital), reason)] += 1
                    self._overflow_max_seq = max(self._overflow_max_seq, batch[i].seq)
            log.warning("event=store_drops_unrecorded dropped=%d reason=disk_full", len(drops))
            drops = []
        with self._lock:
            self._disk_full = hit_full or level >= policy.Level.FULL
            self._level = policy.Level.FULL if hit_full and level < policy.Level.FULL else level
        if self._level is not policy.Level.NORMAL or hit_full:
            self._checkpoint()  # short of space: keep the WAL from holding a second copy
        if hit_full or drops:
            log.warning(
                "event=store_drops level=%s stored=%d dropped=%d disk_full=%s",
                self._level.name.lower(),
                len(stored),
                len(drops) + len(dup),
                hit_full,
            )
        flags = [False] * len(batch)
        for i in stored:
            flags[i] = True
        return flags

    def _write_readings(
        self, batch: list[Reading], rows: list[tuple[Any, ...]], keep: list[int], drops: list[tuple[int, str]]
    ) -> tuple[list[int], list[int]]:
        """One transaction: insert ``rows``, count ``drops``, index the tail when due.

        Returns (indexes stored, indexes dropped as duplicates). Counters change only after COMMIT.
        """
        w = self._w
        with self._lock:
            overflow = Counter(self._unpersisted)
            overflow_max = self._overflow_max_seq
        dup: list[int] = []
        stored = list(keep)
        w.execute("BEGIN IMMEDIATE")
        try:
            try:
                w.executemany(_INSERT_READING, rows)
            except sqlite3.IntegrityError:
                # a seq already in the buffer: start over row by row, store the others, count the duplicates
                w.execute("ROLLBACK")
                w.execute("BEGIN IMMEDIATE")
                stored, dup = [], []
                for i, row in zip(keep, rows, strict=True):
                    cur = w.execute(_INSERT_READING.replace("INSERT", "INSERT OR IGNORE", 1), row)
                    (stored if cur.rowcount == 1 else dup).append(i)
            counts: Counter[tuple[str, str]] = Counter()
            for i, reason in drops:
                counts[(str(batch[i].vital), reason)] += 1
            for i in dup:
                counts[(str(batch[i].vital), "duplicate")] += 1
            counts.update(overflow)
            if counts:
                w.executemany(
                    "INSERT INTO drop_counts (vital, reason, count) VALUES (?, ?, ?) "
                    "ON CONFLICT (vital, reason) DO UPDATE SET count = count + excluded.count",
                    [(v, reason, n) for (v, reason), n in counts.items()],
                )
            max_seq = max(
                [self._last_seq, overflow_max, *(batch[i].seq for i, _ in drops), *(batch[i].seq for i in dup)]
            )
            if counts and max_seq > self._persisted_max_seq:
                w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('max_seq', ?)", (str(max_seq),))
            row_of = dict(zip(keep, rows, strict=True))
            late = [row_of[i] for i in stored if batch[i].seq <= self._indexed_upto]
            if late:
                self._index_rows(late)
            new_upto = self._index_tail_if_due(max([self._last_seq, *(batch[i].seq for i in stored)]))
            w.execute("COMMIT")
        except BaseException:
            if w.in_transaction:
                w.execute("ROLLBACK")
            raise
        # committed: now the counters
        with self._lock:
            self._commits += 1
            for (vital, reason), n in counts.items():
                self._dropped.setdefault(reason, Counter())[vital] += n
            self._unpersisted.subtract(overflow)
            self._unpersisted = +self._unpersisted
            if counts:
                self._persisted_max_seq = max(self._persisted_max_seq, max_seq)
            seqs = [batch[i].seq for i in stored]
            if seqs:
                self._last_seq = max(self._last_seq, *seqs)
                self._stored_total += len(seqs)
                self._pending += len(seqs)
                lo = min(seqs)
                self._low_wm = lo if self._low_wm is None else min(self._low_wm, lo)
            if new_upto is not None:
                self._indexed_upto = new_upto
                self._last_index_us = codec.to_us(self._clock())
        return stored, dup

    def _index_rows(self, rows: list[tuple[Any, ...]]) -> None:
        self._w.executemany(
            "INSERT OR IGNORE INTO ix_patient (pidx, measured_us, seq) VALUES (?, ?, ?)",
            [(r[5], r[1], r[0]) for r in rows if r[5] is not None],
        )
        self._w.executemany(
            "INSERT OR IGNORE INTO ix_time (measured_us, seq) VALUES (?, ?)", [(r[1], r[0]) for r in rows]
        )

    def _index_tail_if_due(self, top: int, *, force: bool = False) -> int | None:
        """Inside a transaction: move readings above ``indexed_upto`` into the index tables when
        enough have gathered (or enough time passed), so single-reading commits stay one page."""
        tail = top - self._indexed_upto
        if tail <= 0:
            return None
        due = force or tail >= self._index_every
        if not due and codec.to_us(self._clock()) - self._last_index_us < self._index_interval_us:
            return None
        w = self._w
        upto = self._indexed_upto
        w.execute(
            "INSERT OR IGNORE INTO ix_patient (pidx, measured_us, seq) "
            "SELECT pidx, measured_us, seq FROM readings WHERE seq > ? AND seq <= ? AND pidx IS NOT NULL",
            (upto, top),
        )
        w.execute(
            "INSERT OR IGNORE INTO ix_time (measured_us, seq) "
            "SELECT measured_us, seq FROM readings WHERE seq > ? AND seq <= ?",
            (upto, top),
        )
        w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('indexed_upto', ?)", (str(top),))
        return top

    def _delete_rows(self, rows: list[tuple[int, int, bytes | None]]) -> None:
        """Inside a transaction: delete readings (seq, measured_us, pidx) and their index entries."""
        w = self._w
        w.executemany("DELETE FROM readings WHERE seq = ?", [(r[0],) for r in rows])
        w.executemany("DELETE FROM ix_time WHERE measured_us = ? AND seq = ?", [(r[1], r[0]) for r in rows])
        w.executemany(
            "DELETE FROM ix_patient WHERE pidx = ? AND measured_us = ? AND seq = ?",
            [(r[2], r[1], r[0]) for r in rows if r[2] is not None],
        )

    def _persist_max_seq_sql(self) -> None:
        top = max(self._last_seq, self._persisted_max_seq)
        if top > self._persisted_max_seq:
            self._w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('max_seq', ?)", (str(top),))

    def _release_reserve(self) -> bool:
        if self._reserve.release():
            self._reserve_released = True
            return True
        return False

    def _txn(self, fn: Callable[[], T], what: str) -> T:
        """Writer thread: run ``fn`` in one write transaction. On a full disk, release the
        emergency reserve and try once more; then raise StoreFullError."""
        w = self._w
        for attempt in range(3):
            try:
                w.execute("BEGIN IMMEDIATE")
                out = fn()
                w.execute("COMMIT")
                if self._level is not policy.Level.NORMAL or self._disk_full:
                    self._checkpoint()  # short of space: keep the WAL from holding a second copy
                return out
            except sqlite3.Error as exc:
                if w.in_transaction:
                    w.execute("ROLLBACK")
                if not _is_full(exc):
                    if _is_corrupt(exc):
                        raise StoreCorruptError(str(self.path), [str(exc)]) from exc
                    raise
                if attempt == 0:
                    self._checkpoint()  # let the WAL start over in the space it already has
                    continue
                if attempt == 1 and self._release_reserve():
                    self._checkpoint()
                    continue
                with self._lock:
                    self._disk_full = True
                raise StoreFullError(f"cannot {what}: disk or quota full") from exc
        raise AssertionError("unreachable")

    def _checkpoint(self) -> None:
        try:
            self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("event=store_checkpoint_failed error=%s", exc)

    def _purge_synced(self, *, limit: int, cutoff_us: int | None = None) -> int:
        """Writer thread: delete up to ``limit`` synced readings, oldest first (older than
        ``cutoff_us`` when given). Returns how many were deleted; never touches unsynced rows."""
        w = self._w
        sql = "SELECT seq, measured_us, pidx FROM readings WHERE synced = 1"
        args: tuple[Any, ...] = ()
        if cutoff_us is not None:
            sql += " AND measured_us + received_delta_us < ?"
            args = (cutoff_us,)
        rows = w.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        if not rows:
            return 0

        def do() -> None:
            self._persist_max_seq_sql()
            self._delete_rows(rows)

        try:
            self._txn(do, "purge synced readings")
        except StoreFullError:
            log.warning("event=store_purge_failed reason=disk_full")
            return 0
        with self._lock:
            self._persisted_max_seq = max(self._persisted_max_seq, self._last_seq)
            self._stored_total -= len(rows)
        if cutoff_us is None:
            log.info("event=store_purged_synced_for_space rows=%d", len(rows))
        return len(rows)

    # ------------------------------------------------------------------------------------------
    # outbox
    # ------------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        if self._closed:
            raise StoreClosedError("store is closed")
        return self._writer.call(fn, timeout)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreClosedError("store is closed")
        with self._read_lock:
            r = self._r
            r.execute("BEGIN")
            try:
                return fn(r)
            except sqlite3.DatabaseError as exc:
                if _is_corrupt(exc):
                    raise StoreCorruptError(str(self.path), [str(exc)]) from exc
                raise StoreError(f"query failed: {exc}") from exc
            finally:
                r.execute("COMMIT")

    def _decode_reading(self, row: Sequence[Any]) -> Reading | None:
        """Open one reading row; a failure is counted and logged, and the row is skipped."""
        seq, mus, delta, vital, device_id, pidx, key_id, cipher, payload = row
        try:
            rus = mus + delta
            try:
                aead = self._sealer.aead(key_id, Cipher(cipher))
            except KeyError:
                raise DecryptError("readings", str(seq), f"unknown or destroyed key {key_id}") from None
            except ValueError:
                raise DecryptError("readings", str(seq), f"unknown cipher {cipher}") from None
            if len(payload) < NONCE_LEN + 16:
                raise TamperError("readings", str(seq), "payload truncated")
            try:
                plain = aead.decrypt(
                    payload[:NONCE_LEN],
                    payload[NONCE_LEN:],
                    reading_aad(self.gateway_id, seq, vital, mus, rus, device_id, pidx, key_id, cipher),
                )
            except InvalidTag:
                raise TamperError("readings", str(seq), "authentication failed") from None
            return codec.reading_from_row(seq, mus, rus, vital, device_id, plain, self.gateway_id)
        except (DecryptError, ValueError, KeyError, TypeError) as exc:
            self._report_decrypt_failure("readings", str(seq), exc)
            return None

    def _report_decrypt_failure(self, table: str, row: str, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, DecryptError) else f"bad payload ({type(exc).__name__})"
        with self._lock:
            first = (table, row) not in self._decrypt_failed
            self._decrypt_failed.add((table, row))
        if first:
            log.error("event=store_decrypt_failed table=%s row=%s reason=%s", table, row, reason)

    def pending_batch(self, limit: int) -> list[Reading]:
        """Oldest-first unsynced readings, decrypted (rows that fail to decrypt are skipped and counted)."""
        if self._closed:
            raise StoreClosedError("store is closed")
        with self._lock:
            wm = self._low_wm
        if wm is None or limit <= 0:
            return []
        rows = self._read(
            lambda r: r.execute(
                f"SELECT {_SELECT_READING} FROM readings r WHERE seq >= ? AND synced = 0 ORDER BY seq LIMIT ?",
                (wm, limit),
            ).fetchall()
        )
        return [x for x in map(self._decode_reading, rows) if x is not None]

    def mark_synced(self, uids: Sequence[str]) -> int:
        """Mark readings acknowledged by the hub; returns how many left the pending state."""
        seqs = sorted({s for s in (self._seq_of(u) for u in uids) if s is not None})
        # small transactions: each needs little WAL space, so acks commit even on a nearly full disk
        step = 1000 if self._level is policy.Level.NORMAL and not self._disk_full else 50
        changed = 0
        for i in range(0, len(seqs), step):
            chunk = seqs[i : i + step]
            changed += self._call(functools.partial(self._mark_synced, chunk))
        return changed

    def _seq_of(self, uid: str) -> int | None:
        gw, _, seq = uid.rpartition(":")
        if gw != self.gateway_id or not seq.isdigit():
            return None
        return int(seq)

    def _mark_synced(self, seqs: list[int]) -> int:
        w = self._w

        def do() -> int:
            before = w.total_changes
            # 0 -> 1 keeps the record the same size (SQLite stores both constants in the header),
            # so an acknowledgement never grows the database, even on a full disk
            w.executemany("UPDATE readings SET synced = 1 WHERE seq = ? AND synced = 0", [(s,) for s in seqs])
            return w.total_changes - before

        changed = self._txn(do, "record the hub's acknowledgement")
        with self._lock:
            self._pending -= changed
            wm = self._low_wm
        if wm is not None and wm in seqs:
            nxt = w.execute("SELECT MIN(seq) FROM readings WHERE seq >= ? AND synced = 0", (wm,)).fetchone()[0]
            with self._lock:
                if self._low_wm == wm:
                    self._low_wm = nxt
        return changed

    # ------------------------------------------------------------------------------------------
    # dashboard / scoring queries
    # ------------------------------------------------------------------------------------------

    def recent(
        self,
        *,
        since: datetime,
        patient_id: str | None = None,
        device_id: str | None = None,
        vital: str | None = None,
        limit: int = 10000,
    ) -> list[Reading]:
        """Readings measured at or after ``since`` (oldest first; the newest ``limit`` when more)."""
        since_us = codec.to_us(since)
        extra = ""
        extra_args: list[Any] = []
        if device_id is not None:
            extra += " AND r.device_id = ?"
            extra_args.append(device_id)
        if vital is not None:
            from device_drivers.records import Vital

            extra += " AND r.vital = ?"
            extra_args.append(codec.VITAL_CODES[Vital(vital)])
        cols = _SELECT_READING
        pidx = patient_index(self._keystore.index_key, patient_id) if patient_id is not None else None

        def q(conn: sqlite3.Connection) -> list[Any]:
            upto = int(conn.execute("SELECT value FROM meta WHERE key = 'indexed_upto'").fetchone()[0])
            if pidx is not None:
                sql = (
                    f"SELECT {cols} FROM ix_patient i JOIN readings r ON r.seq = i.seq "
                    f"WHERE i.pidx = ? AND i.measured_us >= ?{extra} "
                    f"UNION ALL SELECT {cols} FROM readings r "
                    f"WHERE r.seq > ? AND r.pidx = ? AND r.measured_us >= ?{extra} "
                    "ORDER BY 2 DESC, 1 DESC LIMIT ?"
                )
                args = [pidx, since_us, *extra_args, upto, pidx, since_us, *extra_args, limit]
            else:
                sql = (
                    f"SELECT {cols} FROM ix_time i JOIN readings r ON r.seq = i.seq WHERE i.measured_us >= ?{extra} "
                    f"UNION ALL SELECT {cols} FROM readings r WHERE r.seq > ? AND r.measured_us >= ?{extra} "
                    "ORDER BY 2 DESC, 1 DESC LIMIT ?"
                )
                args = [since_us, *extra_args, upto, since_us, *extra_args, limit]
            return conn.execute(sql, args).fetchall()

        rows = self._read(q)
        out = []
        for row in reversed(rows):
            r = self._decode_reading(row)
            if r is None or (patient_id is not None and r.patient_id != patient_id):
                continue
            out.append(r)
        return out

    # ------------------------------------------------------------------------------------------
    # alerts lane
    # ------------------------------------------------------------------------------------------

    def _alert_aad(self, alert_id: str, rev: int, updated_us: int, is_open: int, key_id: int, cipher: int) -> bytes:
        return aad("alerts", self.gateway_id, alert_id, (rev, updated_us, is_open, key_id, cipher))

    def save_alert(self, alert_id: str, payload: dict[str, object], *, updated_at: datetime) -> None:
        """Insert or update an alert (sealed like readings); returns after COMMIT. The alert becomes
        pending again so the hub sees the change. Raises StoreFullError if the disk is full."""
        plain = codec.alert_plaintext(payload)
        is_open = 0 if payload.get("state") in ("cleared",) else 1
        updated_us = codec.to_us(updated_at)

        def write() -> bool:
            w = self._w
            key_id = self._keystore.current_id
            c = int(self._cipher)
            row = w.execute("SELECT rev, synced_us FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            rev = 1 if row is None else row[0] + 1
            sealed = self._sealer.seal(
                key_id, self._cipher, plain, self._alert_aad(alert_id, rev, updated_us, is_open, key_id, c)
            )
            w.execute(
                "INSERT INTO alerts (alert_id, rev, updated_us, is_open, key_id, cipher, synced_us, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (alert_id) DO UPDATE SET rev = excluded.rev, "
                "updated_us = excluded.updated_us, is_open = excluded.is_open, key_id = excluded.key_id, "
                "cipher = excluded.cipher, synced_us = NULL, payload = excluded.payload",
                (alert_id, rev, updated_us, is_open, key_id, c, sealed),
            )
            return row is None or row[1] is not None

        def do() -> None:
            try:
                newly_pending = self._txn(write, "store the alert")
            except StoreFullError:
                if not self._purge_synced(limit=2000):  # alerts go ahead of synced history
                    raise
                newly_pending = self._txn(write, "store the alert")
            if newly_pending:
                with self._lock:
                    self._pending_alerts += 1

        self._call(do)

    def _decode_alert(self, row: Sequence[Any]) -> dict[str, object] | None:
        alert_id, rev, updated_us, is_open, key_id, cipher, payload = row
        try:
            if not self._sealer.has_key(key_id):
                raise DecryptError("alerts", alert_id, f"unknown or destroyed key {key_id}")
            plain = self._sealer.open(
                key_id,
                Cipher(cipher),
                payload,
                self._alert_aad(alert_id, rev, updated_us, is_open, key_id, cipher),
                table="alerts",
                row=alert_id,
            )
            return codec.alert_from_plaintext(plain)
        except (DecryptError, ValueError) as exc:
            self._report_decrypt_failure("alerts", alert_id, exc)
            return None

    _ALERT_COLS = "alert_id, rev, updated_us, is_open, key_id, cipher, CAST(payload AS BLOB)"

    def load_alerts(self, *, open_only: bool = False) -> list[dict[str, object]]:
        """Alerts (payload dicts) ordered by last update; ``open_only``: state is not 'cleared'."""
        where = " WHERE is_open = 1" if open_only else ""
        rows = self._read(
            lambda r: r.execute(f"SELECT {self._ALERT_COLS} FROM alerts{where} ORDER BY updated_us").fetchall()
        )
        return [a for a in map(self._decode_alert, rows) if a is not None]

    def pending_alerts(self, limit: int) -> list[dict[str, object]]:
        rows = self._read(
            lambda r: r.execute(
                f"SELECT {self._ALERT_COLS} FROM alerts WHERE synced_us IS NULL ORDER BY updated_us LIMIT ?", (limit,)
            ).fetchall()
        )
        out = []
        for row in rows:
            a = self._decode_alert(row)
            if a is not None:
                with self._lock:
                    self._alert_revs_sent[row[0]] = row[1]
                out.append(a)
        return out

    def mark_alerts_synced(self, alert_ids: Sequence[str]) -> int:
        """Mark alerts acknowledged; an alert updated after it was handed out by pending_alerts
        stays pending (the hub has not seen the update)."""
        with self._lock:
            revs = {a: self._alert_revs_sent.pop(a, None) for a in alert_ids}

        def write() -> int:
            w = self._w
            now_us = codec.to_us(self._clock())
            before = w.total_changes
            for a, rev in revs.items():
                if rev is None:
                    w.execute("UPDATE alerts SET synced_us = ? WHERE alert_id = ? AND synced_us IS NULL", (now_us, a))
                else:
                    w.execute(
                        "UPDATE alerts SET synced_us = ? WHERE alert_id = ? AND rev = ? AND synced_us IS NULL",
                        (now_us, a, rev),
                    )
            return w.total_changes - before

        def do() -> int:
            changed = self._txn(write, "record the hub's alert acknowledgement")
            with self._lock:
                self._pending_alerts -= changed
            return changed

        return self._call(do)

    # ------------------------------------------------------------------------------------------
    # retention, status, closing
    # ------------------------------------------------------------------------------------------

    def run_retention(self, now: datetime | None = None) -> RetentionResult:
        """Delete synced readings (and synced, cleared alerts) older than ``retention_days``;
        destroy data keys that no row uses any more. Unsynced rows are never deleted."""
        now = now or self._clock()
        cutoff_us = codec.to_us(now - timedelta(days=self.config.retention_days))

        def do() -> RetentionResult:
            self._maybe_rotate()  # so an idle store's old current key can go too
            deleted = 0
            while True:
                n = self._purge_synced(limit=2000, cutoff_us=cutoff_us)
                deleted += n
                if n < 2000:
                    break
            w = self._w
            before = w.total_changes
            try:
                w.execute("BEGIN IMMEDIATE")
                w.execute(
                    "DELETE FROM alerts WHERE synced_us IS NOT NULL AND is_open = 0 AND updated_us < ?", (cutoff_us,)
                )
                alerts_deleted = w.total_changes - before
                w.execute("COMMIT")
            except sqlite3.Error as exc:
                if w.in_transaction:
                    w.execute("ROLLBACK")
                if not _is_full(exc):
                    raise
                alerts_deleted = 0
            destroyed = self._destroy_unused_keys(now)
            if deleted or alerts_deleted or destroyed:
                log.info(
                    "event=store_retention readings_deleted=%d alerts_deleted=%d keys_destroyed=%s",
                    deleted,
                    alerts_deleted,
                    ",".join(map(str, destroyed)) or "-",
                )
            return RetentionResult(deleted, alerts_deleted, tuple(destroyed))

        return self._call(do)

    def _destroy_unused_keys(self, now: datetime) -> list[int]:
        w = self._w
        ks = self._keystore
        unused = [
            k
            for k in ks.keys
            if k != ks.current_id
            and w.execute("SELECT 1 FROM readings WHERE key_id = ? LIMIT 1", (k,)).fetchone() is None
            and w.execute("SELECT 1 FROM alerts WHERE key_id = ? LIMIT 1", (k,)).fetchone() is None
        ]
        if not unused:
            return []
        try:
            gone = ks.destroy(unused, now)  # the keystore first: once it is written the data is shredded
        except KeystoreError as exc:
            log.error("event=key_destroy_failed reason=%s", exc.reason)  # tried again at the next retention
            return []
        self._sealer.set_keys(ks.key_bytes())
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

    def stats(self) -> StoreStats:
        size = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                size += os.stat(f"{self.path}{suffix}").st_size
        with self._lock:
            wm = self._low_wm
            dropped_by_reason = {reason: dict(c) for reason, c in self._dropped.items()}
            for (vital, reason), n in self._unpersisted.items():
                per = dropped_by_reason.setdefault(reason, {})
                per[vital] = per.get(vital, 0) + n
            snapshot = (
                self._stored_total,
                self._pending,
                self._disk_full,
                len(self._decrypt_failed),
                self._level.name.lower(),
                self._pending_alerts,
                max(self._last_seq, self._overflow_max_seq),
                self._commits,
            )
        dropped: Counter[str] = Counter()
        for per_vital in dropped_by_reason.values():
            dropped.update(per_vital)
        age = None
        if wm is not None and not self._closed:
            row = self._read(
                lambda r: r.execute(
                    "SELECT measured_us + received_delta_us FROM readings "
                    "WHERE seq >= ? AND synced = 0 ORDER BY seq LIMIT 1",
                    (wm,),
                ).fetchone()
            )
            if row is not None:
                age = max(0.0, (codec.to_us(self._clock()) - row[0]) / 1e6)
        stored_total, pending, disk_full, failures, level, pending_alerts, last_seq, commits = snapshot
        return StoreStats(
            stored_total=stored_total,
            pending=pending,
            oldest_pending_age_s=age,
            bytes_on_disk=size,
            dropped=dict(dropped),
            disk_full=disk_full,
            integrity_checked_at_start=self._integrity_checked,
            integrity_ok=self._integrity_ok,
            cipher=self._cipher.label,
            decrypt_failures=failures,
            dropped_by_reason=dropped_by_reason,
            space_level=level,
            queued=self._writer.queued_readings,
            pending_alerts=pending_alerts,
            last_seq=last_seq,
            commits=commits,
        )

    def close(self) -> None:
        """Flush, index the tail, record a clean shutdown, stop the writer, close connections."""
        if self._closed:
            return

        def finish() -> None:
            w = self._w
            try:
                w.execute("BEGIN IMMEDIATE")
                self._index_tail_if_due(self._last_seq, force=True)
                self._persist_max_seq_sql()
                w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean_shutdown', '1')")
                w.execute("COMMIT")
                w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                if w.in_transaction:
                    w.execute("ROLLBACK")
                log.warning("event=store_close_incomplete error=%s", exc)

        try:
            self._writer.call(finish)
        finally:
            self._closed = True
            self._writer.stop()
            with self._read_lock:
                self._r.close()
            self._w.close()
        log.info("event=store_closed path=%s", self.path)

    @staticmethod
    def quarantine(path: Path, now: datetime | None = None) -> Path:
        """Move a database that failed its integrity check (and its WAL and shared-memory files)
        aside as ``<name>.corrupt-<UTC time>``, so a fresh store can start; returns the new path.
        The keystore is left alone: it still opens whatever can be recovered from the old file.
        Only for a closed store; the decision to discard the buffer belongs to the caller."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        for suffix in ("-wal", "-shm", ""):
            src = Path(f"{path}{suffix}")
            if src.exists():
                os.replace(src, Path(f"{target}{suffix}"))
        log.error("event=store_quarantined path=%s moved_to=%s", path, target)
        return target

    def __enter__(self) -> BufferStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
