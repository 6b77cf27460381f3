"""Readings/s through the agent's pipeline vs raw sqlite3 inserts of the same rows (issue 2).

The pipeline path is the real one: Measurement -> validate -> Reading -> encrypted store with
group commit -> ONNX scoring (NEWS2, BP, event detectors) and alerts -> events, on an asyncio
loop, into a fresh SQLite file. The baselines,
measured in the same run on the same disk, insert the same rows (plaintext JSON) with the
stdlib sqlite3 module: (a) one transaction per device line of 3 readings, as a naive agent would,
and (b) in transactions of the same size the group commit produced.

Run: .venv/bin/python benchmarks/bench_pipeline.py [--readings N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_drivers.records import Measurement, Reading, Vital
from edge_agent.config import StoreConfig
from edge_agent.events import EventHub
from edge_agent.pipeline import Pipeline
from edge_agent.scoring import ScoringSettings, build_scorer
from edge_agent.store import BufferStore

LINE = [
    Measurement(Vital.SPO2, 97.0, "%", "masimo-ascii"),
    Measurement(Vital.HEART_RATE, 72.0, "/min", "masimo-ascii"),
    Measurement(Vital.PERFUSION_INDEX, 2.4, "%", "masimo-ascii"),
]


def rows(n: int) -> list[Reading]:
    now = datetime.now(UTC)
    return [
        Reading.from_measurement(LINE[i % 3], gateway_id="bench", seq=i + 1, device_id="ox-1", received_at=now)
        for i in range(n)
    ]


def bench_pipeline(n: int, directory: Path) -> tuple[float, int]:
    store = BufferStore.open(
        directory / "agent.sqlite3", gateway_id="bench", keystore_path=directory / "keys.json", config=StoreConfig()
    )
    scorer = build_scorer(models_dir=None, store=store, settings=ScoringSettings(probe_runtime=False))
    pipeline = Pipeline(gateway_id="bench", store=store, scorer=scorer, events=EventHub())
    now = datetime.now(UTC)

    async def feed() -> None:
        # Backpressure: at most 1,000 device lines (3,000 readings) waiting for their commit, so
        # the store's bounded queue never overflows (an open loop would measure its counted
        # drop path instead of sustained throughput).
        for _ in range(n // 3):
            pipeline.submit("ox-1", LINE, now)
            while pipeline.inflight >= 1000:
                await asyncio.sleep(0.001)
        await pipeline.drain()

    start = time.perf_counter()
    asyncio.run(feed())
    elapsed = time.perf_counter() - start
    stored = pipeline.counters.stored
    store.close()
    return stored / elapsed, stored


def bench_raw(readings: list[Reading], path: Path, batch: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE r (seq INTEGER PRIMARY KEY, uid TEXT, vital TEXT, at TEXT, payload TEXT)")
    data = [(r.seq, r.uid, str(r.vital), r.measured_at.isoformat(), json.dumps(r.to_json())) for r in readings]
    start = time.perf_counter()
    for i in range(0, len(data), batch):
        db.execute("BEGIN")
        db.executemany("INSERT INTO r VALUES (?,?,?,?,?)", data[i : i + batch])
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return len(data) / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=30_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pipe_rate, stored = bench_pipeline(args.readings, d)
        readings = rows(stored)
        raw_line = bench_raw(readings, d / "raw-line.sqlite3", 3)
        raw_big = bench_raw(readings, d / "raw-big.sqlite3", 500)
    print(f"pipeline (encrypted store, group commit, ONNX):     {pipe_rate:10.0f} readings/s  ({stored} readings)")
    print(
        f"raw sqlite3, 1 transaction per 3-reading line:     {raw_line:10.0f} readings/s  "
        f"ratio {pipe_rate / raw_line:.2f}"
    )
    print(
        f"raw sqlite3, 500-reading transactions:             {raw_big:10.0f} readings/s  "
        f"ratio {pipe_rate / raw_big:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
