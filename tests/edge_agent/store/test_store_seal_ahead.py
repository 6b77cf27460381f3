"""Sealing ahead (issue 14): the writer's helper seals the next batch while the writer commits;
a presealed row is stored only if it was sealed with the data key current at its commit."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from device_drivers.records import Reading
from edge_agent.store import BufferStore
from edge_agent.store.writer import GroupCommitWriter

from .conftest import GW, OpenStore, make_reading


def _stored(path: Path) -> list[tuple[int, int, bytes]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT seq, key_id, payload FROM readings ORDER BY seq").fetchall()


def _commit(s: BufferStore, batch: list[Reading], presealed: Sequence[object | None]) -> list[bool]:
    return s._writer.call(lambda: s._ingest.commit_batch(batch, presealed))  # type: ignore[arg-type]


def test_presealed_rows_of_the_current_key_are_stored_as_sealed(open_store: OpenStore, tmp_path: Path) -> None:
    s = open_store()
    batch = [make_reading(i) for i in range(1, 6)]
    rows = s._ingest.preseal(batch)
    assert rows is not None and [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert _commit(s, batch, rows) == [True] * 5
    stored = _stored(tmp_path / "buffer.sqlite3")
    assert [(seq, key, bytes(p)) for seq, key, p in stored] == [(r[0], r[6], r[8]) for r in rows]  # the very bytes
    assert [(r.seq, r.value, r.patient_id) for r in s.pending_batch(10)] == [
        (r.seq, r.value, r.patient_id) for r in batch
    ]


def test_presealed_rows_of_a_rotated_key_are_sealed_again(open_store: OpenStore, tmp_path: Path) -> None:
    s = open_store()
    batch = [make_reading(i) for i in range(1, 4)]
    rows = s._ingest.preseal(batch)
    assert rows is not None
    old = rows[0][6]
    new = s.rotate_data_key()  # between sealing and commit
    assert new != old
    assert _commit(s, batch, rows) == [True] * 3
    stored = _stored(tmp_path / "buffer.sqlite3")
    assert [key for _seq, key, _p in stored] == [new] * 3
    assert all(bytes(p) != r[8] for (_s, _k, p), r in zip(stored, rows, strict=True))
    with sqlite3.connect(tmp_path / "buffer.sqlite3") as conn:  # the key's row exists before its rows
        assert conn.execute("SELECT COUNT(*) FROM data_keys WHERE key_id = ?", (new,)).fetchone() == (1,)
    assert [r.seq for r in s.pending_batch(10)] == [1, 2, 3]


def test_a_presealed_row_that_does_not_match_its_reading_is_sealed_again(open_store: OpenStore, tmp_path: Path) -> None:
    s = open_store()
    batch = [make_reading(1), make_reading(2)]
    rows = s._ingest.preseal(list(reversed(batch)))  # misaligned: seq 2's row at seq 1's place
    assert rows is not None
    assert _commit(s, batch, [rows[0], None]) == [True, True]
    stored = _stored(tmp_path / "buffer.sqlite3")
    assert [seq for seq, _k, _p in stored] == [1, 2]
    assert all(bytes(p) not in (rows[0][8], rows[1][8]) for _s, _k, p in stored)
    assert [(r.seq, r.value) for r in s.pending_batch(10)] == [(1, batch[0].value), (2, batch[1].value)]


def test_bulk_submissions_are_sealed_ahead_and_read_back(open_store: OpenStore) -> None:
    s = open_store(max_batch=50)
    calls: list[int] = []
    preseal = s._ingest.preseal

    def counting(readings: Sequence[Reading]) -> object:
        calls.append(len(readings))
        return preseal(readings)

    s._writer._prepare = counting  # counts the real preseal
    chunks = [[make_reading(i) for i in range(k * 50 + 1, k * 50 + 51)] for k in range(8)]
    futs = [s.submit(c) for c in chunks]
    assert all(len(f.result(10).stored) == 50 for f in futs)
    assert calls  # the queue held chunks while a batch committed: some were sealed ahead
    got = s.pending_batch(400)
    assert [r.seq for r in got] == list(range(1, 401))
    assert [r.value for r in got] == [make_reading(i).value for i in range(1, 401)]


def test_writer_prepares_the_next_batch_only_and_falls_back_to_none() -> None:
    seen: list[tuple[tuple[int, ...], list[object]]] = []
    w: GroupCommitWriter

    def prepare(readings: Sequence[Reading]) -> list[object] | None:
        if readings[0].seq == 7:
            raise RuntimeError("boom")  # the commit seals these itself
        if readings[0].seq == 9:
            return ["short"]  # not one entry per reading: ignored
        return [f"p{r.seq}" for r in readings]

    def commit(batch: list[Reading], prepared: Sequence[object] | None = None) -> list[bool]:
        w.prepare_ahead()  # as the store does just before its COMMIT
        seen.append((tuple(r.seq for r in batch), list(prepared or [])))
        return [True] * len(batch)

    w = GroupCommitWriter(commit, window_s=0.0, max_batch=3, prepare=prepare)
    futs = [w.submit([make_reading(i) for i in c]) for c in ([1, 2], [3], [4, 5], [6], [7], [9, 10], [11])]
    w.start()
    for f in futs:
        assert f.result(5).dropped == ()
    w.stop(5)
    assert seen == [
        ((1, 2, 3), [None, None, None]),  # nothing was committing while these waited
        ((4, 5, 6), ["p4", "p5", "p6"]),  # prepared during the first batch's commit, up to max_batch
        ((7, 9, 10), [None, None, None]),  # a failed and a short preparation are not used
        ((11,), ["p11"]),
    ]
    assert futs[5].result().stored == (f"{GW}:9", f"{GW}:10")
