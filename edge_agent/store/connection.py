"""SQLite connections and SQLite error classification: the writer's connection (WAL,
``synchronous``, ``secure_delete``), the read-only query connection, disk-full and corruption
tests on ``sqlite3.Error``, the files' size on disk, and their mode (0600, whatever the umask)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge_agent.store.errors import StoreCorruptError, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

_FULL_CODES = {13}  # SQLITE_FULL
PRIVATE_MODE = 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm")
# Page cache per connection, KiB (issue 14): SQLite's default (2 MiB) filled slowly as the
# database grew, so the agent's RSS crept up for a long time; bounded low, it stops at once. The
# writer touches the right edge of the tables; the reader's queries walk an index range. The
# writer's 1 MiB (about 1.4 MiB of heap with 512 B pages) still filled for ~8 minutes; 256 KiB
# halved the agent's RSS growth over minutes 1-7 with no loss of ingest speed (bench_store A/B).
# The reader's 1 MiB filled with the new pages the outbox reads for about half an hour at the
# demo's load; at 256 KiB the dashboard's hour of one patient among a million rows still reads
# in about 15 ms (bench_store).
WRITER_CACHE_KIB = 256
READER_CACHE_KIB = 256
# WAL checkpoints in large, rare steps (issue 14): a page rewritten by many commits (the right
# edge of the readings table, the meta row) is copied into the database once per checkpoint.
CHECKPOINT_WAL_BYTES = 8 * 1024 * 1024


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 when it does not exist, whatever the process umask.

    SQLite gives the WAL and shared-memory files it creates the mode of the database file, so a
    database file made here first keeps all three private."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the buffer: {exc.strerror}") from exc
    try:
        os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)


def restrict_mode(path: Path) -> None:
    """Take every group and other permission bit off ``path`` if it exists (a file an older agent
    left 0644, a file SQLite made); logs when it changed one, and when it could not."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if not mode & 0o077:
        return
    try:
        os.chmod(path, mode & 0o700)
    except OSError as exc:
        log.warning("event=store_file_mode_unsafe file=%s mode=%04o error=%s", path.name, mode, exc.strerror)
        return
    log.warning("event=store_file_mode_fixed file=%s was=%04o now=%04o", path.name, mode, mode & 0o700)


def is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _FULL_CODES:
        return True
    if code is not None and (code & 0xFF) == 10:  # SQLITE_IOERR_*: ENOSPC surfaces here on some paths
        return True
    msg = str(exc).lower()
    return "full" in msg or "disk i/o error" in msg


def is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB
        return True
    msg = str(exc).lower()
    return "malformed" in msg or "not a database" in msg


def open_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """The error to raise when opening fails on ``exc``: corrupt (operator must act) or not."""
    if is_corrupt(exc):
        return StoreCorruptError(str(path), [str(exc)])
    return StoreError(f"{path}: cannot open the buffer: {exc}")


def _exclusive_uri(path: Path) -> str:
    """``path`` as a URI for SQLite's ``unix-excl`` VFS (issue 14). Its first lock is a POSIX
    write lock on the whole database, held by this process until its last connection closes, and
    with it the WAL index lives in this process's memory, shared by its connections, instead of
    in a ``-shm`` file: SQLite changes the index at every commit, so the kernel wrote its pages
    back to the SD card every half a minute, and each change after that counted as a new page
    written (about 90 B per stored reading at the demo's load, bench_station). The writer and the
    reader still run side by side as with any WAL database (SQLite's locks between connections of
    one process); another process cannot open the buffer while the agent runs (``database is
    locked``): nothing needs to, ``edge-agent status`` reads ``status.json``. After a crash the
    next open rebuilds the index from the WAL, as it would after a lost ``-shm``."""
    return "file:" + urllib.parse.quote(str(path)) + "?vfs=unix-excl"


def connect_writer(path: Path, *, page_size: int, synchronous: str) -> sqlite3.Connection:
    """The write connection: WAL, ``synchronous`` (FULL: the WAL is fsynced at every commit),
    ``secure_delete=FAST``; ``page_size`` applies to a new database only."""
    conn = sqlite3.connect(_exclusive_uri(path), uri=True, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot enable WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA secure_delete = FAST")
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        psize = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint = {max(256, CHECKPOINT_WAL_BYTES // psize)}")
    except BaseException:
        conn.close()
        raise
    return conn


def fsyncs_every_commit(synchronous: str) -> bool:
    """True when ``synchronous`` (FULL, EXTRA) fsyncs the WAL at every commit in WAL mode."""
    return synchronous.upper() in ("FULL", "EXTRA", "2", "3")


def without_own_fsync(conn: sqlite3.Connection, fn: Callable[[], T], synchronous: str) -> T:
    """Run ``fn`` (its own transactions) with ``synchronous=NORMAL``: in WAL mode its commit is
    not fsynced by itself but by the next ``FULL`` commit (a reading commit, at most one window
    later), whose pages it shares; an SD card sees one small write instead of two (issue 14).
    For bookkeeping that a power cut may lose without losing data: the hub's acks and leases
    (a lost one means readings are sent again, and the hub keeps each uid once)."""
    if conn.in_transaction or not fsyncs_every_commit(synchronous):
        return fn()
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        return fn()
    finally:
        if not conn.in_transaction:
            conn.execute(f"PRAGMA synchronous = {synchronous}")


def fsync_wal(path: Path) -> None:
    """fsync the database's WAL file (the writer's deferred fsync: commits made with
    ``without_own_fsync`` become durable against a power cut). No WAL file: nothing to sync."""
    try:
        fd = os.open(f"{path}-wal", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)  # as SQLite syncs its WAL: the data and the file's size, not its times
    finally:
        os.close(fd)


def connect_reader(path: Path) -> sqlite3.Connection:
    """The query connection (read-only; WAL lets it read while the writer commits)."""
    conn = sqlite3.connect(_exclusive_uri(path), uri=True, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA query_only = ON")
    conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
    return conn


def db_has_keys(path: Path) -> bool:
    """True when ``path`` is a database that already holds data keys (opened read-only)."""
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


def files_size(path: Path) -> int:
    """Bytes of the database, its WAL and its shared-memory file."""
    size = 0
    for suffix in SQLITE_SUFFIXES:
        with contextlib.suppress(OSError):
            size += os.stat(f"{path}{suffix}").st_size
    return size
