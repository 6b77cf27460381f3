"""Unit tests for the store's internal modules: the pure row and SQL helpers and the counters."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edge_agent.store
from device_drivers.records import Reading
from edge_agent.store import codec
from edge_agent.store.alerts import alert_acks
from edge_agent.store.dashboard import recent_query
from edge_agent.store.envelope import NONCE_LEN, Cipher, Sealer, patient_index, reading_aad
from edge_agent.store.leases import Lease, LeaseBook, decode_seqs, encode_seqs
from edge_agent.store.outbox import ack_chunks
from edge_agent.store.policy import Level
from edge_agent.store.rows import Row, open_reading, seal_readings, seq_of
from edge_agent.store.state import BufferState

from .conftest import GW, T0, make_reading, spot

KEY = bytes(range(32))


def _sealed(readings: list[Reading], cipher: Cipher = Cipher.AES_256_GCM) -> tuple[Sealer, list[Row]]:
    sealer = Sealer()
    sealer.set_keys({7: KEY})
    rows = seal_readings(
        readings,
        gateway_id=GW,
        key_id=7,
        cipher=cipher,
        encrypt=sealer.aead(7, cipher).encrypt,
        pidx=lambda p: patient_index(b"i" * 32, p),
        nonces=os.urandom(NONCE_LEN * len(readings)),
    )
    return sealer, rows


def test_sealed_rows_open_to_the_same_readings_with_the_documented_aad() -> None:
    late = dataclasses.replace(make_reading(4), received_at=T0 + timedelta(hours=1))
    readings = [make_reading(1), make_reading(2, patient_id=None), spot(3), late, make_reading(5)]
    for cipher in Cipher:
        sealer, rows = _sealed(readings, cipher)
        for r, row in zip(readings, rows, strict=True):
            assert len(row) == 9
            seq, mus, delta, vital, device_id, pidx, key_id, c, payload = row
            assert (seq, mus, mus + delta) == (r.seq, codec.to_us(r.measured_at), codec.to_us(r.received_at))
            assert (pidx is None) == (r.patient_id is None) and (key_id, c) == (7, int(cipher))
            ad = reading_aad(GW, seq, vital, mus, mus + delta, device_id, pidx, key_id, c)  # the inlined AAD agrees
            assert sealer.aead(7, cipher).decrypt(payload[:NONCE_LEN], payload[NONCE_LEN:], ad)
            assert open_reading(row, sealer, GW) == r


def test_seal_needs_one_nonce_per_reading() -> None:
    import pytest

    with pytest.raises(ValueError, match="nonce"):
        seal_readings(
            [make_reading(1)],
            gateway_id=GW,
            key_id=1,
            cipher=Cipher.AES_256_GCM,
            encrypt=Sealer().aead,  # type: ignore[arg-type]  # never called
            pidx=lambda p: b"",
            nonces=b"",
        )


def test_ack_chunks_and_seq_of() -> None:
    uids = [f"{GW}:5", f"{GW}:3", f"{GW}:5", "other-gw:4", f"{GW}:x", f"{GW}:1", f"{GW}:9"]
    assert ack_chunks(uids, GW, 2) == [[1, 3], [5, 9]]
    assert seq_of(f"{GW}:12", GW) == 12 and seq_of("a:b:12", "a:b") == 12 and seq_of("12", GW) is None


def test_recent_query_arguments_line_up() -> None:
    sql, args = recent_query(since_us=10, upto=99, pidx=b"p" * 8, device_id="d", vital_code=2, limit=5)
    assert sql.count("?") == len(args) and args[-1] == 5 and "ix_patient" in sql
    sql, args = recent_query(since_us=10, upto=99, pidx=None, device_id=None, vital_code=None, limit=5)
    assert sql.count("?") == len(args) == 4 and "ix_time" in sql


def test_state_counts_only_what_was_committed() -> None:
    st = BufferState(last_seq=4, persisted_max_seq=4)
    st.count_unrecorded([(make_reading(9), "queue_full")])
    assert st.seen_last_seq() == 9 and st.snapshot().dropped_by_reason == {"queue_full": {"spo2": 1}}
    recorded, top = st.take_unrecorded()
    counts = Counter({("spo2", "downsampled"): 2}) + recorded
    st.readings_committed(counts, recorded, max(top, 7), [5, 6, 7])
    snap = st.snapshot()
    assert (snap.stored_total, snap.pending, snap.low_wm, snap.last_seq, snap.commits) == (3, 3, 5, 9, 1)
    assert snap.dropped_by_reason == {"queue_full": {"spo2": 1}, "downsampled": {"spo2": 2}}
    assert st.persisted_max_seq == 9 and not st.unpersisted
    st.space_seen(Level.NORMAL, hit_full=True)
    assert st.disk_full and st.level is Level.FULL and st.short_of_space


def test_state_lock_is_private_and_every_change_is_a_method() -> None:
    state = BufferState(pending=5, low_wm=3, last_seq=9, stored_total=7, pending_alerts=1)
    assert not hasattr(state, "lock")
    assert state.left_pending(2) == 3 and state.snapshot().pending == 3
    state.advance_low_wm(4, 6)  # not the current mark: ignored
    assert state.low_watermark() == 3
    state.advance_low_wm(3, 6)
    assert state.low_watermark() == 6
    assert state.left_pending(1, dead_letter=True) == 6
    snap = state.snapshot()
    assert (snap.pending, snap.dead_letter) == (2, 1)
    state.purged(4)
    assert state.snapshot().stored_total == 3 and state.persisted_max_seq == 9
    state.alerts_changed(pending=-1, dead_letter=1)
    assert (state.snapshot().pending_alerts, state.snapshot().dead_letter_alerts) == (0, 1)
    state.mark_disk_full()
    assert state.space() == (Level.NORMAL, True) and state.short_of_space and state.level_name() == "normal"


def test_no_module_reaches_into_the_state_lock() -> None:
    pkg = Path(edge_agent.store.__file__).parent
    offenders = [p.name for p in sorted(pkg.glob("*.py")) if p.name != "state.py" and "state.lock" in p.read_text()]
    offenders += [p.name for p in sorted(pkg.glob("*.py")) if "_state._lock" in p.read_text()]
    assert offenders == []


@given(st.sets(st.integers(min_value=0, max_value=10**12), max_size=60))
def test_seq_ranges_round_trip(seqs: set[int]) -> None:
    text = encode_seqs(seqs)
    if seqs:
        assert decode_seqs(text) == tuple(sorted(seqs))
    else:
        assert text == ""


def test_seq_ranges_are_compact() -> None:
    assert encode_seqs([10, 9, 7, 1, 2, 3, 2]) == "1-3,7,9-10" and decode_seqs("1-3,7,9-10") == (1, 2, 3, 7, 9, 10)
    with pytest.raises(ValueError):
        decode_seqs("1-2000000", max_len=1000)


@pytest.mark.parametrize("bad", ["", "3-1", "1,1", "5,2", "1-", "a", "1;2", "-1", "1--2", "1-3,2", " 1"])
def test_seq_ranges_refuse_anything_else(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_seqs(bad)


def test_lease_book_keeps_order_seqs_and_in_flight() -> None:
    book = LeaseBook([Lease("old", (1, 2), 10, 1, in_flight=False)])
    book.put(Lease("new", (5, 6, 7), 20, 1, in_flight=True))
    assert book.leased_seqs() == {1, 2, 5, 6, 7} and book.in_flight() == (1, 3)
    first = book.next_resend()
    assert first is not None and first.batch_id == "old"
    book.put(dataclasses.replace(first, in_flight=True, attempt=2, leased_us=30))
    assert book.next_resend() is None and book.in_flight() == (2, 5)
    assert book.release(25) == 1  # only "new" was leased at or before 25
    assert book.batch_ids() == ("old", "new")  # re-leasing kept the creation order
    nxt = book.next_resend()
    assert nxt is not None and nxt.batch_id == "new"
    assert book.release() == 1 and book.remove("old") is not None and book.remove("old") is None
    assert book.leased_seqs() == {5, 6, 7}


def test_alert_acks_are_pairs() -> None:
    assert alert_acks([("a", 1), ["b", 2]]) == [("a", 1), ("b", 2)]
    for bad in (["a"], [("a", "1")], [("a", 1, 2)], [("a", True)]):
        with pytest.raises(TypeError, match="pairs"):
            alert_acks(bad)
