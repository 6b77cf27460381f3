"""Hub ingest per worker, readings/s, SQLite and PostgreSQL, each against a raw insert of the same
rows into the same engine with the same key and indexes, measured in the same run.

    .venv/bin/python benchmarks/bench_hub.py [--readings 100000] [--batch 500]

PostgreSQL: ``STATION_EDGE_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres); a
throwaway database is created and dropped. Without a server that part is skipped and says so.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_drivers.records import Reading  # noqa: E402
from hub.store import open_store  # noqa: E402
from tests.hub.helpers import new_schema, pg_available, readings, throwaway_database  # noqa: E402

GW = "gw-0001"


def row(r: Reading, batch: str) -> tuple[object, ...]:
    return (
        r.uid,
        GW,
        r.seq,
        str(r.vital),
        r.value,
        r.unit,
        r.measured_at.isoformat(),
        r.received_at.isoformat(),
        r.device_id,
        r.source_format,
        r.patient_id,
        json.dumps(sorted(map(str, r.flags))),
        json.dumps(dict(r.extra)),
        int(r.clock_from_device),
        batch,
        r.received_at.isoformat(),
    )


def hub_ingest(spec: str, batches: Sequence[Sequence[Reading]]) -> tuple[float, float]:
    """Seconds to ingest every batch, then to ingest them all again (every reading a duplicate)."""
    store = open_store(spec)
    try:
        t = time.perf_counter()
        for k, b in enumerate(batches):
            store.ingest(GW, f"b{k}", b)
        first = time.perf_counter() - t
        t = time.perf_counter()
        for k, b in enumerate(batches):
            store.ingest(GW, f"b{k}", b)
        return first, time.perf_counter() - t
    finally:
        store.close()


def raw_sqlite(path: Path, batches: Sequence[Sequence[Reading]]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE r (uid TEXT PRIMARY KEY, gateway_id TEXT, seq INTEGER, vital TEXT, value REAL, unit TEXT, "
        "measured_at TEXT, received_at TEXT, device_id TEXT, source_format TEXT, patient_id TEXT, flags TEXT, "
        "extra TEXT, clock INTEGER, batch_id TEXT, ingested_at TEXT) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX r1 ON r (gateway_id, seq, uid)")
    conn.execute("CREATE INDEX r2 ON r (ingested_at)")
    t = time.perf_counter()
    for k, b in enumerate(batches):
        rows = [row(r, f"b{k}") for r in b]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO r VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed


def raw_postgres(spec: str, batches: Sequence[Sequence[Reading]]) -> float:
    import psycopg

    cols = (
        "uid, gateway_id, seq, vital, value, unit, measured_at, received_at, device_id, source_format, "
        "patient_id, flags, extra, clock_from_device, batch_id, ingested_at"
    )
    with psycopg.connect(spec, autocommit=True) as c:
        c.execute("CREATE TABLE r (LIKE readings INCLUDING ALL)")
        t = time.perf_counter()
        for k, b in enumerate(batches):
            with c.transaction(), c.cursor() as cur, cur.copy(f"COPY r ({cols}) FROM STDIN") as cp:
                for r in b:
                    cp.write_row(
                        (
                            r.uid,
                            GW,
                            r.seq,
                            str(r.vital),
                            r.value,
                            r.unit,
                            r.measured_at,
                            r.received_at,
                            r.device_id,
                            r.source_format,
                            r.patient_id,
                            json.dumps(sorted(map(str, r.flags))),
                            json.dumps(dict(r.extra)),
                            r.clock_from_device,
                            f"b{k}",
                            r.received_at,
                        )
                    )
        return time.perf_counter() - t


def report(engine: str, n: int, first: float, dup: float, raw: float, raw_label: str) -> dict[str, float]:
    print(
        f"{engine:<11} hub ingest {n / first:>9,.0f}/s   replay (all duplicates) {n / dup:>9,.0f}/s   "
        f"{raw_label} {n / raw:>9,.0f}/s   ratio {raw / first:.2f}"
    )
    return {f"{engine}_ingest_per_s": round(n / first), f"{engine}_ratio_to_raw": round(raw / first, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args(argv)
    rs = readings(GW, range(args.readings))
    batches = [rs[i : i + args.batch] for i in range(0, len(rs), args.batch)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp_s:
        tmp = Path(tmp_s)
        first, dup = hub_ingest(str(tmp / "hub"), batches)
        raw = raw_sqlite(tmp / "raw.sqlite3", batches)
        out |= report("sqlite", args.readings, first, dup, raw, "raw INSERT, same key+indexes")
    why = pg_available()
    if why:
        print(f"postgresql  skipped: {why}")
    else:
        with throwaway_database() as db:
            spec = new_schema(db)
            first, dup = hub_ingest(spec, batches)
            raw = raw_postgres(spec, batches)
            out |= report("postgresql", args.readings, first, dup, raw, "raw COPY, same key+indexes  ")
    print("ratio = hub ingest throughput / the raw insert of the same rows in the same run (one worker)")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
