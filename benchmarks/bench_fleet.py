"""Fleet benchmark: N simulated gateways (``edge-hub simulate``) against a real Mosquitto (TLS +
ACL, a fresh one on a free port per configuration) and 1, 2 and 4 ``edge-hub serve`` workers on
the shared subscription, on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/bench_fleet.py [--gateways 1000] [--duration 40] [--quick]

Two loads per configuration:

* **station**: the realistic load (a few devices per station, 0.5 readings/s per gateway,
  a batch when the oldest reading is 5 s old, heartbeats every 30 s). Reported: readings/s
  stored (in all and per worker), the end-to-end ingest lag (batch published -> signed ack
  received, p50/p99, from the simulator), and how long a heartbeat takes to show in the fleet
  registry (its ``sent_at`` to the moment a poll of the store, every 0.25 s, sees it: p50/p99).
* **saturation**: the same gateways sending ``--sat-rate`` readings/s each (20) in half-second
  batches (2,000 batches/s from 1,000 gateways), more than the workers take: the readings/s
  the store grows by in the middle of the run is what they carry here.

Baseline, same run, same machine: the store alone ingesting batches of the station load's size
(``HubStore.ingest`` in a loop, one process: what one worker's database round trips allow) and
bench_hub's raw insert of the same rows. Ratios are printed against it.

The broker is the tests' Mosquitto (provisioning.broker's configuration) plus
``max_queued_messages 100000`` (``--broker-queue``; 0 keeps Mosquitto's 1000, beyond which it
drops what it would queue for a worker that is behind, and the gateways re-send after their
60-s ack timeout: docs/deployment.md).

PostgreSQL: ``STATION_EDGE_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres); a
throwaway database is created and dropped. Without a server that part is skipped and says so.
The simulator, the broker, the workers and the database share this machine's cores: read the
figures as a lower bound of what a hub node carries, and see the load line printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_hub import raw_postgres, raw_sqlite  # noqa: E402

from hub.simulate import gateway_ids, load_identities, percentile  # noqa: E402
from hub.store import open_store, parse_time  # noqa: E402
from provisioning.pki import load_certified_key  # noqa: E402
from tests.fixtures.mosquitto import MosquittoBroker  # noqa: E402
from tests.fixtures.pki import Pki, kernel_now  # noqa: E402
from tests.hub.helpers import new_schema, pg_available, readings, throwaway_database  # noqa: E402
from tests.hub.mqtt_helpers import ServeProcess  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
HUBS = ("hub-1", "hub-2", "hub-3", "hub-4")
POLL_S = 0.25


@dataclass(slots=True)
class Run:
    engine: str
    workers: int
    load: str
    sim: dict[str, object]
    per_worker: list[int]
    heartbeat_s: list[float] = field(default_factory=list)
    steady_per_s: float = 0.0  # the store's growth over the middle of the run (no ramp, no drain)

    @property
    def stored_per_s(self) -> float:
        elapsed = float(self.sim["elapsed_s"])  # type: ignore[arg-type]
        return sum(self.per_worker) / elapsed if elapsed else 0.0


class RegistryWatch:
    """Polls the fleet registry and records, for each new heartbeat, its ``sent_at`` to the
    poll that first saw it."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.delays: list[float] = []
        self.counts: list[tuple[float, int]] = []  # (monotonic, readings in the store), about every second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seen: dict[str, str] = {}
        with open_store(self.spec) as store:
            last_count = 0.0
            while not self._stop.wait(POLL_S):
                if time.monotonic() - last_count >= 1.0:
                    last_count = time.monotonic()
                    self.counts.append((last_count, store.count_readings()))
                at = datetime.now(UTC)
                for g in store.gateways():
                    sent = g.status.get("sent_at")
                    if not isinstance(sent, str) or seen.get(g.gateway_id) == sent:
                        continue
                    first = g.gateway_id not in seen
                    seen[g.gateway_id] = sent
                    t = parse_time(sent)
                    if t is not None and not (first and not g.online):  # an offline row from before: no news
                        self.delays.append((at - t).total_seconds())

    def __enter__(self) -> RegistryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def worker_stored(proc: ServeProcess) -> int:
    for line in reversed(proc.log_text().splitlines()):
        if line.startswith("{"):
            return int(json.loads(line).get("hub_readings_stored_total", 0))
    return 0


def run_config(
    tmp: Path, pki: Pki, spec: str, engine: str, workers: int, load: str, sim_args: Sequence[str], queue: int
) -> Run:
    broker = MosquittoBroker(tmp / f"broker-{engine}-{workers}-{load}", pki, persistence=False)
    if queue:  # Mosquitto's default: 1000 queued messages per client, then it drops (QoS 1 included)
        with open(broker.conf_path, "a") as conf:
            conf.write(f"max_queued_messages {queue}\n")
    with broker:
        procs = [
            ServeProcess(
                tmp / "logs" / f"{engine}-{workers}-{load}",
                broker,
                pki,
                spec,
                HUBS[i],
                "--json",
                "--session-expiry",
                "0",
                "--receive-maximum",
                "64",
            )
            for i in range(workers)
        ]
        for p in procs:
            p.start(timeout=60)
        try:
            with RegistryWatch(spec) as watch:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "hub.cli",
                        "--log-level",
                        "WARNING",
                        "simulate",
                        "--broker",
                        f"127.0.0.1:{broker.port}",
                        "--broker-ca",
                        str(pki.ca_path),
                        "--hub-keys",
                        str(pki.hub_public_path),
                        "--ca-key",
                        str(pki.directory / "ca.key.pem"),
                        "--ca-cert",
                        str(pki.directory / "ca.cert.pem"),
                        "--state-dir",
                        str(tmp / "sim"),
                        "--province",
                        "p01",
                        "--province",
                        "p02",
                        "--json",
                        *sim_args,
                    ],
                    capture_output=True,
                    text=True,
                    env=ENV,
                    cwd=ROOT,
                    check=False,
                )
                time.sleep(1.0)
        finally:
            for p in procs:
                p.terminate(timeout=60)
        if not done.stdout.strip():
            raise RuntimeError(f"simulate failed ({done.returncode}):\n{done.stderr[-3000:]}")
        sim = json.loads(done.stdout.strip().splitlines()[-1])
        return Run(
            engine, workers, load, sim, [worker_stored(p) for p in procs], watch.delays, steady(watch.counts, sim_args)
        )


def steady(counts: list[tuple[float, int]], sim_args: Sequence[str]) -> float:
    """Readings/s the store grew by from 3 s after the ramp to 85 % of the run (start ~ first sample)."""
    if len(counts) < 3:
        return 0.0
    opt = dict(zip(sim_args[::2], sim_args[1::2], strict=False))
    t0 = counts[0][0] + 2.0  # the simulator starts a second or two after the watch (imports, identities)
    t1, t2 = t0 + float(opt["--ramp"]) + 3.0, t0 + float(opt["--duration"]) * 0.85
    inside = [(t, n) for t, n in counts if t1 <= t <= t2]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return 0.0
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def baseline(spec: str, engine: str, batch: int, n_readings: int, tmp: Path) -> tuple[float, float]:
    """(store ingest readings/s, raw insert readings/s) for batches of ``batch`` readings."""
    rs = readings("gw-base", range(n_readings))
    batches = [rs[i : i + batch] for i in range(0, len(rs), batch)]
    with open_store(spec) as store:
        t = time.perf_counter()
        for k, b in enumerate(batches):
            store.ingest("gw-base", f"b{k}", b)
        store_s = time.perf_counter() - t
    raw_s = raw_sqlite(tmp / f"raw-{batch}.sqlite3", batches) if engine == "sqlite" else raw_postgres(spec, batches)
    return n_readings / store_s, n_readings / raw_s


def worker_path(spec: str, pki: Pki, identities: Sequence[object], n_batches: int) -> float:
    """Batches/s through one worker's whole path without MQTT (``Ingestor.process``: open the
    envelope, check, store, sign the ack) for 3-reading batches, on one core."""
    from hub.ingest import Ingestor
    from wire.envelope import seal_batch
    from wire.messages import ReadingBatch
    from wire.topics import topic

    now = datetime.now(UTC)
    sealed = []
    for k in range(n_batches):
        ident = identities[k % len(identities)]
        gid = ident.gateway_id  # type: ignore[attr-defined]
        rs = readings(gid, range(3 * k, 3 * k + 3))
        batch = ReadingBatch(batch_id=f"w{k}", gateway_id=gid, sent_at=now, readings=tuple(rs))
        payload = seal_batch(batch, hub_sealing_public=pki.hub_public.sealing, gateway=ident)  # type: ignore[arg-type]
        sealed.append((topic("p01", gid, "up"), payload))
    with open_store(spec) as store:
        ingestor = Ingestor(store, pki.hub_keys, pki.ca_certs)
        t = time.perf_counter()
        for tp, payload in sealed:
            out = ingestor.process(tp, payload)
            assert out.ack is not None
            ingestor.sign(out.ack)
        return n_batches / (time.perf_counter() - t)


def fmt(x: object, spec: str = ".3f") -> str:
    return "-" if x is None else format(float(x), spec)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--gateways", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=40.0, help="seconds of load per configuration")
    ap.add_argument("--sat-rate", type=float, default=20.0, help="readings/s per gateway in the saturation load")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--no-saturation", action="store_true")
    ap.add_argument(
        "--broker-queue",
        type=int,
        default=100_000,
        help="Mosquitto max_queued_messages (0: its default, 1000, beyond which it drops and gateways re-send)",
    )
    ap.add_argument("--quick", action="store_true", help="100 gateways, 10 s, 1 and 2 workers: a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.gateways, args.duration, args.workers = 100, 10.0, "1,2"
    workers = [int(w) for w in args.workers.split(",")]
    ramp = min(20.0, max(1.0, args.gateways / 100))
    station = [
        "--gateways", str(args.gateways), "--duration", str(args.duration), "--rate", "0.5",
        "--batch-age", "5", "--heartbeat", "30", "--ramp", str(ramp), "--drain", "60", "--progress", "3600",
    ]  # fmt: skip
    saturation = [
        "--gateways", str(args.gateways), "--duration", str(max(15.0, args.duration * 0.75)), "--rate",
        str(args.sat_rate), "--batch-age", "0.5", "--heartbeat", "60", "--ramp", str(ramp), "--drain", "120",
        "--progress", "3600",
    ]  # fmt: skip
    print(
        f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores; gateways {args.gateways}; "
        f"broker max_queued_messages {args.broker_queue or 'default (1000)'}"
    )
    results: list[Run] = []
    bases: dict[str, tuple[float, float]] = {}
    paths: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp_s:
        tmp = Path(tmp_s)
        pki = Pki(tmp / "pki", now=kernel_now(tmp), hub_users=HUBS)
        pki.ca.write(pki.directory / "ca.key.pem", pki.directory / "ca.cert.pem")
        t = time.perf_counter()
        issuer = load_certified_key(pki.directory / "ca.key.pem", pki.directory / "ca.cert.pem")
        idents = load_identities(gateway_ids("sim", args.gateways), issuer, tmp / "sim" / "gateways", datetime.now(UTC))
        print(f"issued {args.gateways} gateway identities in {time.perf_counter() - t:.1f} s")
        engines = args.engines.split(",")
        why = pg_available() if "postgresql" in engines else None
        for engine in engines:
            if engine == "postgresql" and why:
                print(f"postgresql  skipped: {why}")
                continue
            with contextlib_db(engine) as db:
                base_spec = str(tmp / "base-sqlite") if engine == "sqlite" else new_schema(db)
                bases[engine] = baseline(base_spec, engine, 3, 30_000, tmp)
                paths[engine] = worker_path(
                    str(tmp / "path-sqlite") if engine == "sqlite" else new_schema(db), pki, idents[:50], 3000
                )
                for w in workers:
                    loads = [("station", station)] + ([] if args.no_saturation else [("saturation", saturation)])
                    for load, sim_args in loads:
                        spec = str(tmp / f"hub-{w}-{load}") if engine == "sqlite" else new_schema(db)
                        r = run_config(tmp, pki, spec, engine, w, load, sim_args, args.broker_queue)
                        results.append(r)
                        s = r.sim
                        elapsed = float(s["elapsed_s"])  # type: ignore[arg-type]
                        shares = ", ".join(f"{n / elapsed:,.0f}" for n in r.per_worker)
                        print(
                            f"{engine:<10} workers={w} {load:<10} stored {r.stored_per_s:>7,.0f}/s "
                            f"steady {r.steady_per_s:>7,.0f}/s "
                            f"(per worker {shares}) "
                            f"lag p50 {fmt(s['lag_p50_s'])} s p99 {fmt(s['lag_p99_s'])} s max {fmt(s['lag_max_s'])} s  "
                            f"heartbeat->registry p50 {fmt(percentile(r.heartbeat_s, 0.5))} s "
                            f"p99 {fmt(percentile(r.heartbeat_s, 0.99))} s  unacked {s['readings_unacked']} "
                            f"resent {s['batches_resent']} batches {s['batches_acked']} "
                            f"connected {s['connected']}/{s['gateways']} disconnects {s['disconnects']}  "
                            f"simulator cpu {s['cpu_s']} s rss {s['rss_mib']} MiB",
                            flush=True,
                        )
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")
    out: dict[str, object] = {}
    for engine, (store_rate, raw_rate) in bases.items():
        print(
            f"{engine:<10} baseline: store.ingest of 3-reading batches {store_rate:>7,.0f}/s, "
            f"raw insert of the same rows {raw_rate:>7,.0f}/s"
        )
        out[f"{engine}_baseline_store_per_s"] = round(store_rate)
        out[f"{engine}_worker_path_batches_per_s"] = round(paths[engine])
        print(
            f"{engine:<10} one worker's path without MQTT (open, check, store, sign the ack), 3-reading batches: "
            f"{paths[engine]:>6,.0f} batches/s = {3 * paths[engine]:>6,.0f} readings/s on one core"
        )
        for r in (x for x in results if x.engine == engine):
            key = f"{engine}_{r.workers}w_{r.load}"
            out[f"{key}_stored_per_s"] = round(r.stored_per_s)
            out[f"{key}_steady_per_s"] = round(r.steady_per_s)
            out[f"{key}_ratio_to_store"] = round(r.steady_per_s / store_rate, 3)
            out[f"{key}_lag_p50_s"] = r.sim["lag_p50_s"]
            out[f"{key}_lag_p99_s"] = r.sim["lag_p99_s"]
            out[f"{key}_heartbeat_p99_s"] = percentile(r.heartbeat_s, 0.99)
            out[f"{key}_unacked"] = r.sim["readings_unacked"]
            print(
                f"{engine:<10} workers={r.workers} {r.load:<10} ratio to the store baseline "
                f"{r.steady_per_s / store_rate:.2f}"
            )
    print("ratio = steady readings/s all workers stored / one process ingesting 3-reading batches into the same engine")
    print(json.dumps(out))
    ok = all(r.sim["readings_unacked"] == 0 for r in results if r.load == "station")
    return 0 if ok else 1


class contextlib_db:
    """A throwaway PostgreSQL database for ``postgresql``, nothing for SQLite."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self._cm = throwaway_database() if engine == "postgresql" else None

    def __enter__(self) -> str:
        return self._cm.__enter__() if self._cm is not None else ""

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
