"""Train a small scikit-learn model on a CSV of vital sets and export it as a signed ONNX model.

    python -m models.train DATA.csv --out DIR [--id ID] [--version V] [--key PRIVATE_KEY.pem]

The CSV has one column per input, named as in DESIGN §3 / ``models.vitals`` (units implied by
the name; empty = missing) and a 0/1 ``outcome`` column. The model is a median imputer, a
standard scaler and a logistic regression; it is exported with skl2onnx (float32, opset 17,
ai.onnx.ml 3), given the same kind of signed manifest as the shipped models (role ``risk``) and
self-test vectors computed by scikit-learn itself. Workstation only (``models`` extra).

The shipped default models stay the published scores; a trained model is advisory (the gateway
shows its probability, it raises no alerts) until it has been validated clinically.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from models import manifest, signing
from models.build import write_model
from models.vitals import ALL_UNITS

OUTCOME = "outcome"
INPUT_NAME = "vitals"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


class TrainingDataError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Dataset:
    columns: tuple[str, ...]
    x: np.ndarray  # float64 [N, K], NaN = missing
    y: np.ndarray  # int [N]


def read_csv(path: Path) -> Dataset:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if OUTCOME not in header:
            raise TrainingDataError(f"{path.name}: no {OUTCOME!r} column")
        columns = tuple(c for c in header if c != OUTCOME)
        unknown = [c for c in columns if c not in ALL_UNITS]
        if unknown:
            raise TrainingDataError(f"{path.name}: unknown input columns {unknown} (names: models.vitals)")
        xs, ys = [], []
        for i, rec in enumerate(reader, start=2):
            try:
                xs.append([float(rec[c]) if rec[c] not in ("", None) else math.nan for c in columns])
                y = float(rec[OUTCOME])
            except ValueError as exc:
                raise TrainingDataError(f"{path.name} line {i}: {exc}") from exc
            if y not in (0.0, 1.0):
                raise TrainingDataError(f"{path.name} line {i}: outcome must be 0 or 1")
            ys.append(int(y))
    if len(set(ys)) < 2:
        raise TrainingDataError(f"{path.name}: needs both outcomes")
    return Dataset(columns, np.array(xs, dtype=np.float64), np.array(ys, dtype=np.int64))


def fit(data: Dataset, *, seed: int = 0) -> Pipeline:
    model = make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(max_iter=1000, random_state=seed),
    )
    model.fit(data.x.astype(np.float32), data.y)
    return model


def export(
    model: Pipeline,
    data: Dataset,
    out_dir: Path,
    key: Ed25519PrivateKey,
    *,
    model_id: str,
    version: str,
    source: str,
    n_self_test: int = 8,
) -> Path:
    onx = to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, len(data.columns)]))],
        target_opset=TARGET_OPSET,
        options={id(model.steps[-1][1]): {"zipmap": False}},
    )
    outputs = [o.name for o in onx.graph.output]
    if outputs != ["label", "probabilities"]:
        raise RuntimeError(f"unexpected skl2onnx outputs {outputs}")
    picks = np.linspace(0, len(data.x) - 1, num=min(n_self_test, len(data.x))).astype(int)
    probs = model.predict_proba(data.x[picks].astype(np.float32))
    self_test: list[dict[str, Any]] = [
        {
            "input": [manifest.json_number(float(v)) for v in data.x[i]],
            "expect": {"probabilities": [float(p) for p in probs[j]]},
        }
        for j, i in enumerate(picks)
    ]
    body = {
        "format": manifest.FORMAT,
        "id": model_id,
        "version": version,
        "role": "risk",
        "source": source,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "columns": [{"name": c, "unit": ALL_UNITS[c]} for c in data.columns],
        },
        "outputs": [
            {"name": "label", "description": "predicted outcome (0/1)"},
            {"name": "probabilities", "columns": ["p0", "p1"], "description": "class probabilities"},
        ],
        "self_test": self_test,
        "tolerance": 1e-4,  # float32 ONNX vs float64 scikit-learn
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_model(out_dir, model_id, onx.SerializeToString(), body, key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--id", default="trained_risk")
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument("--source", default="", help="what the data is (default: the CSV file name)")
    parser.add_argument("--key", type=Path, help="Ed25519 private key (PEM); default: the DEVELOPMENT key")
    args = parser.parse_args(argv)
    key = signing.load_private_key(args.key) if args.key else signing.dev_private_key()
    data = read_csv(args.csv)
    model = fit(data)
    path = export(
        model, data, args.out, key, model_id=args.id, version=args.version,
        source=args.source or f"logistic regression trained on {args.csv.name} ({len(data.y)} rows)",
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
