"""A SYNTHETIC data set of vital sets with outcomes, for exercising the training path only.

Nothing here is clinical data or clinical knowledge: vitals are drawn from simple
distributions (a "well" and an "unwell" mixture, with some values missing as they are at a
commune station), and the outcome is a coin flip whose probability rises with the NEWS2 total
of the row (``models.news2``). A model trained on it learns NEWS2 back, roughly; it proves the
pipeline (CSV → scikit-learn → ONNX → signed manifest → gateway), never a clinical claim.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

from models import news2

COLUMNS = ("resp_rate", "spo2", "on_oxygen", "bp_systolic", "heart_rate", "consciousness", "body_temp")
OUTCOME = "outcome"


def _row(rng: random.Random) -> dict[str, float]:
    unwell = rng.random() < 0.3
    row = {
        "resp_rate": rng.gauss(24 if unwell else 16, 4),
        "spo2": min(100.0, rng.gauss(91 if unwell else 97, 3)),
        "on_oxygen": 1.0 if unwell and rng.random() < 0.3 else 0.0,
        "bp_systolic": rng.gauss(105 if unwell else 125, 18),
        "heart_rate": rng.gauss(108 if unwell else 78, 15),
        "consciousness": float(rng.choice([1, 2, 3, 4])) if unwell and rng.random() < 0.15 else 0.0,
        "body_temp": rng.gauss(38.4 if unwell else 36.9, 0.8),
    }
    for name in ("resp_rate", "consciousness"):  # often not entered by the nurse
        if rng.random() < 0.2:
            row[name] = math.nan
    return row


def generate(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        row = _row(rng)
        score = news2.news2(
            resp_rate=None if math.isnan(row["resp_rate"]) else row["resp_rate"],
            spo2=row["spo2"],
            on_oxygen=row["on_oxygen"] > 0.5,
            bp_systolic=row["bp_systolic"],
            heart_rate=row["heart_rate"],
            consciousness=None if math.isnan(row["consciousness"]) else int(row["consciousness"]),
            body_temp=row["body_temp"],
        ).total
        p = 1.0 / (1.0 + math.exp(-(score - 5.0) / 1.5))
        row[OUTCOME] = 1.0 if rng.random() < p else 0.0
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=[*COLUMNS, OUTCOME])
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if math.isnan(v) else f"{v:.2f}") for k, v in row.items()})


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m models.synthetic", description="write a SYNTHETIC training CSV")
    parser.add_argument("out", type=Path)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_csv(args.out, generate(args.n, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
