"""Scoring benchmark: latency per vital set, session load time, RSS added by onnxruntime.

    .venv/bin/python benchmarks/bench_scoring.py [--n 5000]

Baseline (same run): the pure-Python reference scorer (models.reference) on the same vital sets.
Goal (issue 5): p99 < 1 ms per vital set for the ONNX path. Numbers vary by machine; this prints
them, it asserts nothing (DESIGN §7: tests never assert on wall-clock speed).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    arr = np.array(samples_ns, dtype=np.float64) / 1000.0  # µs
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def timed(fn: Callable[[], object], n: int, warmup: int = 200) -> list[int]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


def vital_sets(n: int, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    nan = float("nan")
    rows = []
    for _ in range(n):
        rows.append([
            rng.choice([nan, rng.uniform(6, 35)]), rng.uniform(80, 100), rng.choice([0.0, 1.0, nan]),
            rng.uniform(70, 230), rng.uniform(35, 150), rng.choice([0.0, 0.0, 0.0, 2.0, nan]),
            rng.uniform(34, 41), 1.0,
        ])  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="timed iterations per measurement")
    args = parser.parse_args()
    n = args.n

    # our own modules (cryptography, numpy, ...) first: they import onnxruntime lazily
    from edge_agent.scoring import ScoringSettings, build_scorer
    from edge_agent.scoring.registry import ModelRegistry, trusted_keys
    from edge_agent.scoring.runtime import load_runtime
    from models import BUILT_DIR, reference

    assert "onnxruntime" not in sys.modules
    rss0 = rss_kib()
    t0 = time.perf_counter()
    runtime = load_runtime(probe=False)
    import_s = time.perf_counter() - t0
    rss_import = rss_kib()
    if not runtime.available:
        print(f"onnxruntime unavailable: {runtime.error}")
        return 1

    reg = ModelRegistry(runtime=runtime, trusted=trusted_keys((), allow_dev_key=True))
    load_times = {}
    for name in ("news2", "bp_category"):
        t = time.perf_counter()
        reg.install_file(Path(BUILT_DIR) / f"{name}.manifest.json")
        load_times[name] = (time.perf_counter() - t) * 1000
    rss_loaded = rss_kib()
    news2 = reg.get("news2")
    bp = reg.get("bp_category")
    assert news2 is not None and bp is not None

    rows = vital_sets(n + 200)
    it = iter(range(10**9))

    def onnx_one() -> None:
        i = next(it) % len(rows)
        x = np.array([rows[i]], dtype=np.float64)
        news2.run(x)
        bp.run(x[:, 3:5])

    def ref_one() -> None:
        i = next(it) % len(rows)
        reference.news2_row(rows[i])
        reference.bp_row(rows[i][3:5])

    onnx_p50, onnx_p99 = percentiles(timed(onnx_one, n))
    ref_p50, ref_p99 = percentiles(timed(ref_one, n))

    # batched: 32 subjects in one run (what on_readings does when many subjects change at once)
    batch = np.array(rows[:32], dtype=np.float64)
    b_p50, b_p99 = percentiles(timed(lambda: news2.run(batch), max(n // 10, 100)))

    # end to end through the scorer: one oximeter commit (SpO2 + HR) for one subject
    from device_drivers.records import Reading, Vital

    base = datetime(2026, 1, 1, tzinfo=UTC)
    scorer = build_scorer(models_dir=None, store=None, settings=ScoringSettings(probe_runtime=False))
    seq = iter(range(1, 10**9))

    def commit_one() -> None:
        k = next(seq)
        t = base + timedelta(seconds=k)  # an oximeter sends about once a second
        readings = [
            Reading(f"gw:{k}a", k, Vital.SPO2, 97.0, "%", t, t, "oxi-1", "bench", False),
            Reading(f"gw:{k}b", k, Vital.HEART_RATE, 72.0, "/min", t, t, "oxi-1", "bench", False),
        ]
        scorer.on_readings(readings, t)
        if k % 1000 == 0:
            scorer.tick(t)  # prune, as the agent does periodically

    e2e_p50, e2e_p99 = percentiles(timed(commit_one, n))

    print(f"onnxruntime {runtime.version}, python {sys.version.split()[0]}, pid {os.getpid()}, n={n}")
    print(f"import onnxruntime: {import_s * 1000:.0f} ms, RSS +{(rss_import - rss0) / 1024:.1f} MiB")
    for name, ms in load_times.items():
        print(f"load {name} (verify signature + hash + units, create session, self-test): {ms:.1f} ms")
    print(f"RSS added by onnxruntime with all models loaded: {(rss_loaded - rss0) / 1024:.1f} MiB")
    print("per vital set (NEWS2 + BP category), microseconds:")
    verdict = "met" if onnx_p99 < 1000 else "NOT met"
    print(f"  onnx       p50 {onnx_p50:8.1f}  p99 {onnx_p99:8.1f}   goal p99 < 1000: {verdict}")
    print(f"  reference  p50 {ref_p50:8.1f}  p99 {ref_p99:8.1f}   (pure-Python baseline, same run)")
    print(f"  ratio onnx/reference: p50 {onnx_p50 / ref_p50:.2f}x  p99 {onnx_p99 / ref_p99:.2f}x")
    print(f"  NEWS2 batch of 32 vital sets: p50 {b_p50:.1f}  p99 {b_p99:.1f}  ({b_p50 / 32:.1f} per set)")
    print(f"  scorer.on_readings (one SpO2+HR commit, NEWS2+BP+5 detectors): p50 {e2e_p50:.1f}  p99 {e2e_p99:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
