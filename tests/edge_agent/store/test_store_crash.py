"""Crash consistency: a writer process ingesting at full speed is SIGKILLed at random moments.

After every kill the database passes ``PRAGMA integrity_check``, every reading the writer
reported committed is present and decrypts to exactly what was written, and nothing decrypts
wrongly (every row present, reported or not, equals the reading written with its seq).
The default run does 25 kills; ``-m slow`` runs 220.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from device_drivers.records import Reading, Vital
from edge_agent.config import StoreConfig
from edge_agent.store import BufferStore
from edge_agent.store.acked import PENDING
from edge_agent.store.leases import decode_seqs

from .conftest import GW, T0, make_reading


def expected(seq: int) -> Reading:
    """The reading the writer submits for ``seq`` (deterministic, so any row can be checked)."""
    return make_reading(
        seq,
        at=T0 + timedelta(milliseconds=seq),
        patient_id=f"P-{seq % 7}",
        vital=Vital.SPO2 if seq % 3 else Vital.HEART_RATE,
        value=float(seq % 1000) / 7.0,
    )


def _child(db: Path, ks: Path, wfd: int, seed: int) -> None:  # pragma: no cover - runs in the child
    rng = random.Random(seed)
    store = BufferStore.open(
        db,
        gateway_id=GW,
        keystore_path=ks,
        config=StoreConfig(group_commit_ms=rng.choice([0.0, 1.0, 5.0])),
        key_rotation_days=rng.choice([1.0, 0.2 / 86400]),  # sometimes rotate keys every 0.2 s
        index_every=rng.choice([64, 256]),
        max_queued=5000,
    )
    os.write(wfd, b"O\n")
    seq = store.last_seq

    def report(lo: int, hi: int) -> object:
        def cb(fut: object) -> None:
            res = fut.result()  # type: ignore[attr-defined]
            if len(res.stored) == hi - lo + 1:
                os.write(wfd, f"R {lo} {hi}\n".encode())
            else:
                for uid in res.stored:
                    s = uid.rsplit(":", 1)[1]
                    os.write(wfd, f"R {s} {s}\n".encode())

        return cb

    k = 0
    while True:
        n = rng.randint(1, 60)
        batch = [expected(seq + 1 + i) for i in range(n)]
        fut = store.submit(batch)
        fut.add_done_callback(report(seq + 1, seq + n))  # type: ignore[arg-type]
        seq += n
        k += 1
        if k % 40 == 0:
            aid = f"al-{seq}"
            store.save_alert(aid, {"alert_id": aid, "state": "raised", "seq": seq}, updated_at=T0)
            os.write(wfd, f"A {aid}\n".encode())
        if k % 25 == 0:
            pend = store.pending_batch(50)
            store.mark_synced([r.uid for r in pend])
        if k % 10 == 0:  # the outbox as the sync uses it: some batches acknowledged, some left in flight
            leased = store.lease(40)
            if leased.readings and rng.random() < 0.6:
                store.ack(leased.id)
        if store.stats().queued > 3000:
            fut.result()


def _run_and_kill(db: Path, ks: Path, seed: int, rng: random.Random) -> tuple[set[int], set[str], bool]:
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(rfd)
        try:
            _child(db, ks, wfd, seed)
        finally:
            os._exit(0)
    os.close(wfd)
    committed: set[int] = set()
    alerts: set[str] = set()
    buf = b""
    opened = False
    # most kills land during ingest; some during open (migration, integrity check, rotation)
    early = rng.random() < 0.15
    deadline = time.monotonic() + (rng.uniform(0.0, 0.03) if early else 10.0)
    ingest_for = rng.uniform(0.005, 0.1)
    try:
        while True:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            ready, _, _ = select.select([rfd], [], [], timeout)
            if not ready:
                continue
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            buf += chunk
            if not opened and b"O\n" in buf:
                opened = True
                deadline = min(deadline, time.monotonic() + ingest_for)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        # whatever the child wrote before it died is still in the pipe
        while True:
            ready, _, _ = select.select([rfd], [], [], 0)
            chunk = os.read(rfd, 65536) if ready else b""
            if not chunk:
                break
            buf += chunk
        os.close(rfd)
    for line in buf.decode().splitlines():
        parts = line.split()
        if parts and parts[0] == "R":
            committed.update(range(int(parts[1]), int(parts[2]) + 1))
        elif parts and parts[0] == "A":
            alerts.add(parts[1])
    return committed, alerts, opened


def _first_batch_to_resend(db: Path) -> tuple[str, list[int]] | None:
    """(id, pending seqs) of the oldest recorded batch with readings still pending, read directly."""
    conn = sqlite3.connect(db)
    try:
        pending = {row[0] for row in conn.execute(f"SELECT seq FROM readings r WHERE {PENDING}")}
        for batch_id, seqs in conn.execute("SELECT batch_id, seqs FROM batches ORDER BY n"):
            left = [q for q in decode_seqs(seqs) if q in pending]
            if left:
                return batch_id, left
        return None
    finally:
        conn.close()


def _kill_cycles(tmp_path: Path, cycles: int, fresh_every: int = 20) -> None:
    rng = random.Random(4242)
    ks = tmp_path / "keystore.json"
    db = tmp_path / "buffer-0.sqlite3"
    total_committed = 0
    opened_count = 0
    verified_upto = 0  # rows up to this seq were checked in an earlier cycle
    for cycle in range(cycles):
        if cycle and cycle % fresh_every == 0:  # keep each database small so the run stays fast
            db = tmp_path / f"buffer-{cycle}.sqlite3"
            verified_upto = 0
        full_check = cycle % fresh_every == fresh_every - 1 or cycle == cycles - 1
        committed, alerts, opened = _run_and_kill(db, ks, seed=cycle, rng=rng)
        opened_count += opened
        total_committed += len(committed)
        if not db.exists():
            assert not committed
            continue
        # 1. integrity, checked by plain sqlite3 before the store touches the file
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f"cycle {cycle}"
        conn.close()
        # 2. every reported reading is there and decrypts to exactly what was written
        store = BufferStore.open(db, gateway_id=GW, keystore_path=ks, config=StoreConfig())
        try:
            # measured_at grows with seq: check the rows new since the last cycle, and all of them
            # at the end of each database
            since = T0 if full_check else T0 + timedelta(milliseconds=verified_upto + 1)
            rows = store.recent(since=since, limit=10**9)
            got = {r.seq: r for r in rows}
            missing = (
                {c for c in committed if c > verified_upto} - got.keys() if not full_check else committed - got.keys()
            )
            assert not missing, f"cycle {cycle}: {len(missing)} committed readings lost, e.g. {sorted(missing)[:5]}"
            wrong = [s for s, r in got.items() if r != expected(s)]
            assert not wrong, f"cycle {cycle}: readings decrypted to the wrong values: {wrong[:5]}"
            st = store.stats()
            assert st.decrypt_failures == 0 and st.integrity_ok
            if full_check:
                assert st.stored_total == len(got)
            verified_upto = max(got, default=verified_upto)
            assert store.last_seq >= max(committed, default=0)
            have_alerts = {a["alert_id"] for a in store.load_alerts()}
            assert alerts <= have_alerts
            # the oldest batch leased before the kill that still holds pending readings is re-sent
            # first, under its id, with exactly those readings
            first = _first_batch_to_resend(db)
            resent = store.lease(10**6)
            if first is not None:
                assert (resent.id, [r.seq for r in resent.readings]) == first, f"cycle {cycle}"
            assert all(r == expected(r.seq) for r in resent.readings), f"cycle {cycle}"
            assert store.ack(resent.id) == len(resent.readings)
        finally:
            store.close()
    assert opened_count >= cycles // 2, "most children must get far enough to ingest"
    assert total_committed > cycles * 10, "the writers must actually commit readings"


def test_sigkill_during_ingest(tmp_path: Path) -> None:
    _kill_cycles(tmp_path, cycles=25)


@pytest.mark.slow
def test_sigkill_during_ingest_220_times(tmp_path: Path) -> None:
    _kill_cycles(tmp_path, cycles=220)
