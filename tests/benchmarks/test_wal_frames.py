"""benchmarks/wal_frames.py against real SQLite WAL files: it counts the frames SQLite reports,
names their b-trees, and counts only a window's frames, also across a checkpoint's restart."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import wal_frames


def _db(tmp_path: Path) -> tuple[Path, sqlite3.Connection]:
    path = tmp_path / "x.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size = 512")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE readings (seq INTEGER PRIMARY KEY, payload BLOB)")
    conn.execute("CREATE TABLE alerts (alert_id TEXT PRIMARY KEY, payload BLOB)")
    return path, conn


def _sqlite_frames(conn: sqlite3.Connection) -> int:
    """Frames in the WAL as SQLite counts them (a PASSIVE checkpoint's second column)."""
    return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_frames_and_btrees_of_a_window(tmp_path: Path) -> None:
    path, conn = _db(tmp_path)
    conn.execute("INSERT INTO readings (payload) VALUES (zeroblob(100))")
    before = wal_frames.mark(path)
    assert before.frames > 0
    for _ in range(20):  # 20 commits of five readings, one of an alert
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO readings (payload) VALUES (zeroblob(100))", [()] * 5)
        conn.execute("COMMIT")
    conn.execute("INSERT INTO alerts VALUES ('a1', zeroblob(300))")
    w = wal_frames.window(path, before)
    assert before.frames + w.frames == _sqlite_frames(conn)
    assert w.commits == 21 and w.page_size == 512 and not w.restarted
    groups = wal_frames.grouped(w.by_btree)
    assert groups["readings"] >= 20 and groups["alerts"] >= 1 and groups["page 1"] >= 1
    assert sum(groups.values()) == w.frames
    conn.close()


def test_a_checkpoint_restart_counts_the_frames_since(tmp_path: Path) -> None:
    path, conn = _db(tmp_path)
    conn.executemany("INSERT INTO readings (payload) VALUES (zeroblob(100))", [()] * 50)
    before = wal_frames.mark(path)
    conn.execute("PRAGMA wal_checkpoint(RESTART)")
    conn.execute("INSERT INTO readings (payload) VALUES (zeroblob(100))")  # starts the WAL over
    w = wal_frames.window(path, before)
    assert w.restarted and w.commits == 1 and w.frames == _sqlite_frames(conn)
    conn.close()


def test_an_empty_or_missing_wal() -> None:
    assert wal_frames.parse_wal(b"") == (0, (0, 0), [])
    assert wal_frames.mark(Path("/nonexistent/x.sqlite3")) == wal_frames.WalMark((0, 0), 0)
