"""The store's files: created 0600 whatever the umask (database, WAL, shared memory, emergency
reserve, keystore, quarantined copies); the injected clock is the only time source; ``stats()``
keeps answering when the disk is full or a query fails."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.config import StoreConfig
from edge_agent.store import BufferStore, StoreError, codec

from .conftest import Clock, OpenStore, make_reading, spot


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o002], indirect=True)
def test_files_are_created_0600_whatever_the_umask(open_store: OpenStore, tmp_path: Path, umask: int) -> None:
    s = open_store(path=tmp_path / "state" / "buffer.sqlite3", keystore=tmp_path / "state" / "keystore.json")
    s.submit([make_reading(i) for i in range(1, 20)]).result(5)
    s.save_alert("a1", {"alert_id": "a1", "state": "raised"}, updated_at=datetime(2030, 1, 1, tzinfo=UTC))
    files = {p.name: _mode(p) for p in (tmp_path / "state").iterdir()}
    assert {"buffer.sqlite3", "buffer.sqlite3-wal", "buffer.sqlite3-reserve"} <= set(files)
    assert "buffer.sqlite3-shm" not in files  # the WAL index is in memory (unix-excl VFS)
    assert files == dict.fromkeys(files, 0o600), files
    assert _mode(tmp_path / "state") & 0o077 == 0  # a state dir the store made is private too
    s.close()
    assert _mode(s.path) == 0o600


def test_files_an_older_agent_left_readable_are_tightened(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = open_store()
    s.submit([make_reading(1)]).result(5)
    s.close()
    os.chmod(s.path, 0o644)
    os.chmod(tmp_path / "buffer.sqlite3-reserve", 0o644)
    with caplog.at_level(logging.WARNING, logger="edge_agent.store"):
        s = open_store()
    assert _mode(s.path) == 0o600 and _mode(tmp_path / "buffer.sqlite3-reserve") == 0o600
    assert _mode(tmp_path / "buffer.sqlite3-wal") == 0o600
    assert "event=store_file_mode_fixed file=buffer.sqlite3 was=0644 now=0600" in caplog.text
    assert [r.seq for r in s.pending_batch(5)] == [1]


@pytest.mark.parametrize("umask", [0o022, 0o000], indirect=True)
def test_quarantined_copies_are_0600(open_store: OpenStore, tmp_path: Path, umask: int) -> None:
    s = open_store()
    s.submit([make_reading(1)]).result(5)
    s.close()
    os.chmod(s.path, 0o644)  # e.g. a file from before this agent kept its files private
    for suffix in ("-wal", "-shm"):  # left by a crash
        fd = os.open(f"{s.path}{suffix}", os.O_WRONLY | os.O_CREAT, 0o666)
        os.close(fd)
    moved = BufferStore.quarantine(s.path, datetime(2031, 2, 3, tzinfo=UTC))
    for suffix in ("", "-wal", "-shm"):
        assert _mode(Path(f"{moved}{suffix}")) == 0o600, suffix
        assert not Path(f"{s.path}{suffix}").exists()


_OTHER_PROCESS_READS = """
import sqlite3, sys
try:
    n = sqlite3.connect(sys.argv[1], timeout=0.2).execute("SELECT count(*) FROM readings").fetchone()[0]
    print("read", n)
except sqlite3.OperationalError as exc:
    print("refused:", exc)
"""


def _read_from_another_process(path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS_READS, str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_buffer_is_this_process_s_alone_while_open_and_its_wal_index_in_memory(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """unix-excl (store/connection.py): no -shm file whose pages the kernel writes back every half
    a minute; the writer and the reader side by side; another process refused until close."""
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 4)]).result(5)
    assert [r.seq for r in s.pending_batch(5)] == [1, 2, 3]  # the reader connection sees the commit
    assert not (tmp_path / "buffer.sqlite3-shm").exists()
    assert _read_from_another_process(s.path) == "refused: database is locked"
    s.close()
    assert _read_from_another_process(s.path) == "read 3"


# --- the injected clock ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when", [datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC), datetime(2041, 3, 4, 5, 6, 7, tzinfo=UTC)]
)
def test_the_injected_clock_is_the_only_time_source(open_store: OpenStore, tmp_path: Path, when: datetime) -> None:
    clock = Clock(when)
    s = open_store(clock=clock, key_rotation_days=1)
    s.submit([make_reading(i, at=when) for i in range(1, 4)]).result(5)
    b = s.lease(10)
    s.save_alert("a1", {"alert_id": "a1", "state": "raised"}, updated_at=when)
    s.mark_alerts_synced([("a1", 1)])
    assert s.stats().oldest_pending_age_s == 0.0
    s.close()
    us = codec.to_us(when)
    conn = sqlite3.connect(s.path)
    applied = [r[0] for r in conn.execute("SELECT applied_at FROM schema_migrations")]
    assert applied and all(datetime.fromisoformat(a) == when for a in applied)
    assert conn.execute("SELECT value FROM meta WHERE key = 'opened_us'").fetchone()[0] == str(us)
    assert conn.execute("SELECT key_id, created_us FROM data_keys").fetchall() == [(1, us)]  # no rotation
    assert conn.execute("SELECT batch_id, leased_us FROM batches").fetchall() == [(b.id, us)]
    assert conn.execute("SELECT synced_us FROM alerts").fetchall() == [(us,)]
    conn.close()
    doc = json.loads((tmp_path / "keystore.json").read_text())
    assert list(doc["keys"]) == ["1"] and datetime.fromisoformat(doc["keys"]["1"]["created"]) == when


# --- stats ---------------------------------------------------------------------------------------


def test_stats_report_a_full_disk_and_never_fail(open_store: OpenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    s = open_store(config=StoreConfig(group_commit_ms=1, quota_mb=1024), max_db_bytes=200 * 1024)
    seq = dropped = 0
    while dropped < 50:
        res = s.submit([spot(seq + i) for i in range(1, 51)]).result(10)
        seq += 50
        dropped += len(res.dropped)
    st = s.stats()
    assert st.disk_full and st.dropped == {"bp_systolic": dropped} and st.oldest_pending_age_s is not None

    def failing(_fn: object) -> object:  # fault injection: the query connection fails as on a broken disk
        raise StoreError("query failed: disk I/O error")

    monkeypatch.setattr(s._reader, "read", failing)
    st = s.stats()  # still answers, with what it knows
    assert st.disk_full and st.dropped == {"bp_systolic": dropped} and st.oldest_pending_age_s is None
    assert st.pending == seq - dropped
    monkeypatch.undo()
    s.close()
    assert s.stats().pending == seq - dropped  # and after close
