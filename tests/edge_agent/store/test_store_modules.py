"""Unit tests for the store's internal modules: the pure row and SQL helpers and the counters."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from datetime import timedelta

from device_drivers.records import Reading
from edge_agent.store import codec
from edge_agent.store.dashboard import recent_query
from edge_agent.store.envelope import NONCE_LEN, Cipher, Sealer, patient_index, reading_aad
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
