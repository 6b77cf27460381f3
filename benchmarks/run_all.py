"""Run every benchmark in this folder, one after another: .venv/bin/python benchmarks/run_all.py

Each benchmark prints its figures as ratios against a baseline measured in the same run.
bench_fleet.py (1,000 simulated gateways against 1, 2 and 4 hub workers) takes about 12 minutes;
alone, ``benchmarks/bench_fleet.py --quick`` is a one-minute smoke run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for bench in sorted(HERE.glob("bench_*.py")):
        print(f"\n=== {bench.name}", flush=True)
        if subprocess.run([sys.executable, str(bench)], check=False).returncode != 0:
            failed.append(bench.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
