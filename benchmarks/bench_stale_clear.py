"""Stale-alert clearing in Scorer.tick: the time of one tick with many open alerts.

    .venv/bin/python benchmarks/bench_stale_clear.py [--n 15000] [--old-n 3000 15000]

Baseline (same run): the previous tick loop (issue 13: for every subject with open alerts it
scanned all open alerts for the newest one, and ``clear_subject`` scanned them all again:
quadratic), reproduced below on the same AlertBook. The subjects have no recent state (as after a
restart that restored their alerts), the worst case of the old loop. Two cases: nothing stale
(every subject checked, none cleared) and everything stale (all cleared). Prints seconds and
ratios; asserts nothing (DESIGN section 7).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.alerts import Alert, AlertLevel, AlertState
from edge_agent.scoring import Scorer, ScoringSettings
from edge_agent.scoring.lifecycle import AlertBook
from edge_agent.scoring.registry import ModelRegistry, trusted_keys
from edge_agent.scoring.runtime import RuntimeInfo

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def scorer_with(n: int) -> Scorer:
    runtime = RuntimeInfo(None, "", "not needed")
    reg = ModelRegistry(runtime=runtime, trusted=trusted_keys((), allow_dev_key=True))
    scorer = Scorer(registry=reg, runtime=runtime, store=None, clock=lambda: T0, settings=ScoringSettings())
    scorer.book.restore(
        Alert(f"a{i}", f"P-{i}", "news2", AlertLevel.LOW, AlertState.RAISED, "m", T0, updated_at=T0, acknowledged=True)
        for i in range(n)
    )
    return scorer


def old_tick(scorer: Scorer, now: datetime) -> int:
    """The loop before issue 13, on the same book (its clear_subject scanned every open alert)."""
    book: AlertBook = scorer.book
    stale_before = now.timestamp() - scorer.settings.stale_clear_s
    cleared = 0
    for subject in {a.subject for a in book.open_alerts()}:
        st = scorer.obs.subjects.get(subject)
        last = (
            st.last_seen
            if st
            else max((a.updated_at or a.raised_at).timestamp() for a in book.open_alerts() if a.subject == subject)
        )
        if last < stale_before:
            for (s, _), a in list(book._open.items()):  # the old clear_subject: a full scan
                if s == subject:
                    book._close(a, now, "stale", None)
                    cleared += 1
    return cleared


def timed(n: int, now: datetime, *, old: bool) -> float:
    """Seconds of one tick (the book is built before the clock starts)."""
    scorer = scorer_with(n)
    t0 = time.perf_counter()
    if old:
        old_tick(scorer, now)
    else:
        scorer.tick(now)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=15000)
    ap.add_argument("--old-n", type=int, nargs="*", default=[3000, 15000])
    args = ap.parse_args()
    fresh = T0 + timedelta(seconds=60)  # nothing stale yet
    late = T0 + timedelta(hours=2)  # everything stale
    print(f"open alerts, one per subject, subjects without state; new tick at n={args.n}")
    for case, now in (("nothing stale", fresh), ("all stale", late)):
        new_s = timed(args.n, now, old=False)
        print(f"  new  {case:<14} n={args.n:>6}: {new_s:8.3f} s")
        for m in args.old_n:
            old_s = timed(m, now, old=True)
            new_m = timed(m, now, old=False)
            print(
                f"  old  {case:<14} n={m:>6}: {old_s:8.3f} s; new at n={m}: {new_m:.4f} s; "
                f"ratio old/new {old_s / max(new_m, 1e-9):,.0f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
