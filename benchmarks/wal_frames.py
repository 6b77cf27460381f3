"""Where an agent's SQLite writes go: the frames a window appended to the WAL, by b-tree.

Pure parsing of the WAL format (https://www.sqlite.org/fileformat2.html#walformat: a 32-byte
header with the page size and two salts, then frames of a 24-byte header and one page; a frame
belongs to the current WAL only while its salts equal the header's) plus one read-only query of
``dbstat`` on a copy, which names the b-tree (table or index) each page belongs to. Used by
bench_station.py; by hand::

    .venv/bin/python benchmarks/wal_frames.py state/buffer.sqlite3
"""

from __future__ import annotations

import collections
import shutil
import sqlite3
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24


@dataclass(frozen=True)
class WalMark:
    """How far the WAL went at one moment: its salts and how many valid frames it held."""

    salts: tuple[int, int]
    frames: int


@dataclass(frozen=True)
class Frame:
    page: int
    commit: bool  # the frame that ends a transaction


def parse_wal(data: bytes) -> tuple[int, tuple[int, int], list[Frame]]:
    """(page size, salts, the valid frames in order) of a WAL file's bytes; (0, (0, 0), []) for
    an empty or headerless one. Frames stop at the first one whose salts differ (left from before
    the last checkpoint restarted the WAL)."""
    if len(data) < WAL_HEADER:
        return 0, (0, 0), []
    _magic, _version, page_size, _ckpt, salt1, salt2, _c1, _c2 = struct.unpack(">8I", data[:WAL_HEADER])
    frames: list[Frame] = []
    size = FRAME_HEADER + page_size
    off = WAL_HEADER
    while page_size and off + size <= len(data):
        page, db_size, s1, s2 = struct.unpack(">4I", data[off : off + 16])
        if (s1, s2) != (salt1, salt2):
            break
        frames.append(Frame(page, db_size != 0))
        off += size
    return page_size, (salt1, salt2), frames


def mark(db: Path) -> WalMark:
    """The WAL's position now (read while the agent runs: a torn last frame is simply not counted)."""
    try:
        _, salts, frames = parse_wal((db.parent / (db.name + "-wal")).read_bytes())
    except FileNotFoundError:
        return WalMark((0, 0), 0)
    return WalMark(salts, len(frames))


@dataclass(frozen=True)
class WalWindow:
    page_size: int
    frames: int
    commits: int
    by_btree: collections.Counter[str]  # frames per table or index ("page 1" for the header page)
    restarted: bool  # a checkpoint restarted the WAL in the window: only frames since then counted


def window(db: Path, since: WalMark) -> WalWindow:
    """The frames appended to ``db``'s WAL since ``since``, by b-tree (a copy is opened read-only
    to map pages to names; the agent's files are not touched)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.sqlite3"
        shutil.copyfile(db, copy)
        wal = db.parent / (db.name + "-wal")
        data = wal.read_bytes() if wal.exists() else b""
        (Path(tmp) / "copy.sqlite3-wal").write_bytes(data)
        page_size, salts, frames = parse_wal(data)
        restarted = salts != since.salts
        new = frames if restarted else frames[since.frames :]
        conn = sqlite3.connect(copy)
        try:
            names = dict(conn.execute("SELECT pageno, name FROM dbstat"))
        except sqlite3.Error:  # a build without dbstat: frames still counted, not named
            names = {}
        finally:
            conn.close()
    by = collections.Counter("page 1" if f.page == 1 else names.get(f.page, "free or new") for f in new)
    return WalWindow(page_size, len(new), sum(f.commit for f in new), by, restarted)


def grouped(by: collections.Counter[str]) -> collections.Counter[str]:
    """Frames by what the agent does with them: readings, their deferred indexes, alerts (table and
    indexes), the sync's bookkeeping (batches, acked), page 1, the rest."""
    groups = {"readings": "readings", "ix_time": "deferred indexes", "ix_patient": "deferred indexes"}
    groups |= {"batches": "leases and acks", "acked": "leases and acks", "page 1": "page 1"}
    out: collections.Counter[str] = collections.Counter()
    for name, n in by.items():
        out["alerts" if name.startswith(("alerts", "sqlite_autoindex_alerts")) else groups.get(name, "other")] += n
    return out


if __name__ == "__main__":
    w = window(Path(sys.argv[1]), WalMark((0, 0), 0))
    print(f"{w.frames} frames of {w.page_size + FRAME_HEADER} B in {w.commits} commits")
    for name, n in grouped(w.by_btree).most_common():
        print(f"  {n:6d}  {100 * n / max(1, w.frames):5.1f} %  {name}")
