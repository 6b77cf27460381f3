"""Tampering is detected and reported: flipped bytes, swapped/replayed/truncated rows, wrong keys."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.store import BufferStore, KeystoreError, StoreCorruptError, StoreError

from .conftest import GW, T0, OpenStore, make_reading


def _filled(open_store: OpenStore, n: int = 4) -> Path:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, n + 1)]).result(5)
    s.save_alert("al-1", {"alert_id": "al-1", "state": "raised"}, updated_at=T0)
    s.close()  # checkpoints: every page is in the main file
    return s.path


def _edit(path: Path, *sql: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for q in sql:
            conn.execute(q)
    conn.close()


def test_flipped_byte_in_file_is_reported_not_returned(open_store: OpenStore, caplog: pytest.LogCaptureFixture) -> None:
    path = _filled(open_store)
    conn = sqlite3.connect(path)
    payload = conn.execute("SELECT payload FROM readings WHERE seq = 2").fetchone()[0]
    conn.close()
    raw = bytearray(path.read_bytes())
    at = raw.find(payload)
    assert at > 0 and raw.find(payload, at + 1) == -1
    raw[at + len(payload) // 2] ^= 0x01  # one bit in the ciphertext, in the file itself
    path.write_bytes(bytes(raw))
    s = open_store()
    with caplog.at_level(logging.ERROR, logger="edge_agent.store"):
        got = s.pending_batch(10)
    assert [r.seq for r in got] == [1, 3, 4]
    assert s.stats().decrypt_failures == 1
    assert "event=store_decrypt_failed table=readings row=2 reason=authentication failed" in caplog.text
    assert [r.seq for r in s.recent(since=T0)] == [1, 3, 4]


def test_swapped_rows_fail(open_store: OpenStore) -> None:
    path = _filled(open_store)
    _edit(
        path,
        "UPDATE readings SET payload = (SELECT payload FROM readings WHERE seq = 1) || x'' WHERE seq = 3",
        "UPDATE readings SET payload = (SELECT payload FROM readings WHERE seq = 2) WHERE seq = 1",
    )
    s = open_store()
    assert [r.seq for r in s.pending_batch(10)] == [2, 4]
    assert s.stats().decrypt_failures == 2


def test_replayed_row_fails(open_store: OpenStore) -> None:
    path = _filled(open_store)
    _edit(
        path,
        "INSERT INTO readings (seq, measured_us, received_delta_us, vital, device_id, pidx, key_id, cipher, payload) "
        "SELECT 99, measured_us, received_delta_us, vital, device_id, pidx, key_id, cipher, payload "
        "FROM readings WHERE seq = 1",
    )
    s = open_store()
    assert [r.seq for r in s.pending_batch(10)] == [1, 2, 3, 4]
    assert s.stats().decrypt_failures == 1


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE readings SET payload = substr(payload, 1, length(payload) - 1) WHERE seq = 2",  # truncated
        "UPDATE readings SET payload = substr(payload, 1, 5) WHERE seq = 2",  # shorter than a nonce
        "UPDATE readings SET vital = 1 WHERE seq = 2",  # clear column edited: it is in the additional data
        "UPDATE readings SET measured_us = measured_us - 3600000000 WHERE seq = 2",
        "UPDATE readings SET received_delta_us = 5 WHERE seq = 2",
        "UPDATE readings SET device_id = 'other' WHERE seq = 2",
        "UPDATE readings SET cipher = 2 WHERE seq = 2",
        "UPDATE readings SET key_id = 77 WHERE seq = 2",  # unknown key
    ],
)
def test_edited_row_fails(open_store: OpenStore, sql: str) -> None:
    path = _filled(open_store)
    _edit(path, sql)
    s = open_store()
    assert [r.seq for r in s.pending_batch(10)] == [1, 3, 4]
    assert s.stats().decrypt_failures == 1


def test_moved_patient_index_is_not_trusted(open_store: OpenStore) -> None:
    s = open_store()
    s.submit([make_reading(1, patient_id="P-A"), make_reading(2, patient_id="P-B")]).result(5)
    s.close()
    _edit(s.path, "UPDATE readings SET pidx = (SELECT pidx FROM readings WHERE seq = 1) WHERE seq = 2")
    s = open_store()
    assert [r.seq for r in s.recent(since=T0, patient_id="P-A")] == [1]
    assert s.recent(since=T0, patient_id="P-B") == []  # row 2 is found, but its patient index is bound
    assert s.stats().decrypt_failures == 1
    assert [r.seq for r in s.pending_batch(10)] == [1]


def test_tampered_alert_is_skipped(open_store: OpenStore) -> None:
    path = _filled(open_store)
    _edit(path, "UPDATE alerts SET is_open = 0")  # pretend it was cleared: bound by the additional data
    s = open_store()
    assert s.load_alerts() == [] and s.stats().decrypt_failures == 1


def test_wrong_keystore_is_refused(open_store: OpenStore, tmp_path: Path) -> None:
    _filled(open_store)
    other = tmp_path / "other"
    other.mkdir()
    o = open_store(path=other / "b.sqlite3", keystore=other / "ks.json")
    o.close()
    shutil.copy(other / "ks.json", tmp_path / "keystore.json")  # same key ids, other bytes
    with pytest.raises(KeystoreError, match="does not match this database"):
        open_store()


def test_missing_keystore_is_refused(open_store: OpenStore, tmp_path: Path) -> None:
    _filled(open_store)
    (tmp_path / "keystore.json").unlink()
    with pytest.raises(KeystoreError, match="missing"):
        open_store()
    assert not (tmp_path / "keystore.json").exists()  # no new keystore was made over sealed data


def test_altered_key_bytes_are_refused(open_store: OpenStore, tmp_path: Path) -> None:
    _filled(open_store)
    ks = tmp_path / "keystore.json"
    doc = json.loads(ks.read_text())
    key = doc["keys"]["1"]["key"]
    doc["keys"]["1"]["key"] = ("B" if key[0] != "B" else "C") + key[1:]
    ks.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="key 1"):
        open_store()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_keystore_readable_by_others_is_refused(open_store: OpenStore, tmp_path: Path, mode: int) -> None:
    _filled(open_store)
    os.chmod(tmp_path / "keystore.json", mode)
    with pytest.raises(KeystoreError, match="chmod 600"):
        open_store()


def test_keystore_created_0600(open_store: OpenStore, tmp_path: Path) -> None:
    open_store()
    assert (tmp_path / "keystore.json").stat().st_mode & 0o777 == 0o600


def test_database_of_another_gateway_is_refused(open_store: OpenStore) -> None:
    _filled(open_store)
    with pytest.raises(StoreError, match="belongs to gateway"):
        open_store(gateway_id="gw-other")
    assert GW != "gw-other"


def test_corrupt_file_after_crash_is_refused_then_quarantined(open_store: OpenStore, tmp_path: Path) -> None:
    s = open_store()
    s.submit([make_reading(i) for i in range(1, 200)]).result(5)
    s.close()
    _edit(s.path, "UPDATE meta SET value = '0' WHERE key = 'clean_shutdown'")  # as if the agent died
    raw = bytearray(s.path.read_bytes())
    page = 512
    for at in range(3 * page, len(raw) - page, 7 * page):  # wreck b-tree pages
        raw[at : at + 64] = os.urandom(64)
    s.path.write_bytes(bytes(raw))
    with pytest.raises(StoreCorruptError):
        open_store()
    moved = BufferStore.quarantine(s.path, datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC))
    assert moved.name.endswith(".corrupt-20310203T040506Z")
    assert moved.exists() and not s.path.exists()
    fresh = open_store()
    assert fresh.last_seq == 0 and fresh.stats().stored_total == 0


def test_not_a_database_is_reported_as_corrupt(open_store: OpenStore, tmp_path: Path) -> None:
    (tmp_path / "buffer.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreCorruptError):
        open_store()
