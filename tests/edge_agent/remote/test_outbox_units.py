"""The result outbox on a real directory: order, bounds (count and bytes, the oldest dropped with a
counted reason, the newest kept), what a restart reads back, unreadable and stray files, a disk
that refuses the write; the eviction rule as a property."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.remote.outbox import ResultOutbox, to_evict


def test_results_are_kept_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    box = ResultOutbox(tmp_path / "outbox")
    assert box.load() == [] and box.depth == 0
    a = box.add("c-1", b"sealed-1")
    b = box.add("c-2", b"sealed-22")
    assert [e.cmd_id for e in box.pending()] == ["c-1", "c-2"] and a.number < b.number
    mode = stat.S_IMODE(os.stat(tmp_path / "outbox" / a.name).st_mode)
    assert mode == 0o600 and stat.S_IMODE(os.stat(tmp_path / "outbox").st_mode) == 0o700
    assert box.as_dict()["bytes"] == 17
    again = ResultOutbox(tmp_path / "outbox")  # the next start
    assert [(e.cmd_id, e.payload) for e in again.load()] == [("c-1", b"sealed-1"), ("c-2", b"sealed-22")]
    c = again.add("c-3", b"x")
    assert c.number > b.number  # numbering goes on after what was left
    again.remove(again.pending()[0])
    again.remove(again.pending()[0])
    again.remove(a)  # no longer there: nothing happens
    assert [e.cmd_id for e in ResultOutbox(tmp_path / "outbox").load()] == ["c-3"]
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == [c.name]


def test_a_full_outbox_drops_the_oldest_counted_and_keeps_the_newest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = ResultOutbox(tmp_path / "o", max_results=3, max_bytes=100)
    for i in range(4):
        box.add(f"c-{i}", b"x" * 10)
    assert [e.cmd_id for e in box.pending()] == ["c-1", "c-2", "c-3"]
    assert box.dropped["full"] == 1
    big = box.add("c-big", b"y" * 95)  # bytes: everything older has to go
    assert box.pending() == [big] and box.dropped["full"] == 4
    huge = box.add("c-huge", b"z" * 500)  # larger than the bound alone: still kept (the newest)
    assert box.pending() == [huge] and box.as_dict()["dropped"] == {"full": 5}
    assert len(list((tmp_path / "o").iterdir())) == 1
    assert "event=command_result_dropped reason=outbox_full cmd_id=c-0" in caplog.text
    # smaller bounds at the next start: the newest that fit stay
    for i in range(3):
        box.add(f"d-{i}", b"d" * 10)
    smaller = ResultOutbox(tmp_path / "o", max_results=2, max_bytes=100)
    assert [e.cmd_id for e in smaller.load()] == ["d-1", "d-2"] and smaller.dropped["full"] == 1
    with pytest.raises(ValueError, match="at least one"):
        ResultOutbox(tmp_path / "o", max_results=0)


def test_unreadable_and_stray_files_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    d = tmp_path / "o"
    d.mkdir()
    (d / "000000000001-c-1.result").write_bytes(b"")  # empty: a torn write from elsewhere
    (d / "000000000002-c-2.result").mkdir()  # cannot be read as a file
    (d / "000000000003-c-3.result").write_bytes(b"ok")
    (d / ".000000000004-c-4.result.tmp-99").write_bytes(b"partial")  # write_atomic's temporary file
    (d / "notes.txt").write_text("?")
    box = ResultOutbox(d)
    assert [e.cmd_id for e in box.load()] == ["c-3"]
    assert box.dropped == {"unreadable": 2}
    assert "event=command_outbox_stray_file" in caplog.text
    assert not (d / "000000000001-c-1.result").exists()
    assert box.load() == box.pending()  # loaded once


def test_a_disk_that_refuses_the_write_keeps_the_result_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("not a directory")
    box = ResultOutbox(tmp_path / "file" / "outbox")
    entry = box.add("c-1", b"sealed")
    assert not entry.persisted and box.pending() == [entry] and box.write_failures == 1
    assert "event=command_result_unwritable" in caplog.text
    box.remove(entry)
    assert box.depth == 0


@given(
    st.lists(st.integers(1, 300), max_size=20),
    st.integers(1, 300),
    st.integers(1, 10),
    st.integers(1, 1000),
)
def test_eviction_rule(sizes: list[int], new: int, max_results: int, max_bytes: int) -> None:
    drop = to_evict(sizes, new, max_results=max_results, max_bytes=max_bytes)
    kept = sizes[drop:]
    assert 0 <= drop <= len(sizes)
    if kept:  # whatever is kept fits with the new one, and dropping one fewer would not
        assert len(kept) + 1 <= max_results and sum(kept) + new <= max_bytes
    if drop:
        before = sizes[drop - 1 :]
        assert len(before) + 1 > max_results or sum(before) + new > max_bytes
