"""Build the shipped models: ONNX graphs from the scoring tables, signed manifests.

    python -m models.build [--out models/built] [--key PRIVATE_KEY.pem]

Without ``--key`` the manifests are signed with the DEVELOPMENT key (``models.signing``); the
hub re-signs with its own key before pushing to production gateways. Needs the ``models`` extra
(``onnx``); the output is deterministic, so a rebuild of unchanged tables changes no bytes.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models import BUILT_DIR, graphs, manifest, reference, signing, tables
from models.news2 import PARAMETERS
from models.pews import PARAMETERS as PEWS_PARAMETERS
from models.vitals import ALL_UNITS

N = math.nan

# 2.0.0: the gap rule of clinical.md section 5 (no rounding) and the partial/missing_count outputs.
NEWS2_VERSION = "2.0.0"
BP_VERSION = "2.0.0"  # 2.0.0: the gap rule (139.5 is grade 1; severe above 179/109)
PEWS_VERSION = "1.0.0"

# Self-test vectors: rows in tables.NEWS2_INPUTS order
# (resp_rate, spo2, on_oxygen, bp_systolic, heart_rate, consciousness, body_temp, spo2_scale).
NEWS2_SELF_TEST: tuple[tuple[float, ...], ...] = (
    (16, 98, 0, 125, 72, 0, 36.8, 1),  # all normal: 0
    (N, N, N, N, N, N, N, 1),  # nothing known
    (N, 85, N, N, 88, N, N, 1),  # desaturation, partial: red score
    (N, 97, N, 128, 96, N, 39.5, 1),  # fever, partial
    (26, 90, 1, 88, 135, 2, 34.9, 1),  # everything deranged: 20
    (18, 97, 1, 120, 80, 0, 37.0, 2),  # scale 2 on oxygen, ≥97: 3
    (18, 95, N, 120, 80, 0, 37.0, 2),  # scale 2, oxygen unknown above 92: unknown
    (20, 91, 0, 110, 91, 0, 38.05, 1),  # boundaries
    (8.5, 95.5, 0, 90.5, 130.5, 0, 35.05, 1),  # in the gaps: the more severe band (3+1+0+3+3+0+3)
    (20.5, 91.5, 1, 219.5, 40.5, 0, 39.05, 2),  # gaps on scale 2 on oxygen
    (N, 92.5, 1, N, 50.5, N, 36.05, 2),  # partial, in gaps
)
BP_SELF_TEST: tuple[tuple[float, ...], ...] = (
    (120, 80),
    (135, 70),
    (150, 95),
    (165, 90),
    (185, 100),
    (170, 112),
    (N, N),
    (182, N),
    (129.5, 84.4),
    (139.5, 89.5),  # gaps: grade 1
    (179.5, 60),  # severe (> 179)
    (120, 109.5),  # severe (> 109)
    (159.5, 99.5),  # grade 2
)
# Rows in tables.PEWS_INPUTS order (age group, rr, distress, spo2, o2 flow, high flow, hr, sbp,
# capillary refill, ACVPU, temperature).
PEWS_SELF_TEST: tuple[tuple[float, ...], ...] = (
    (1, 30, 0, 98, 0, 0, 120, 95, 1, 0, 37.0),  # 1-4 y, all normal: 0
    (N, 30, 0, 98, 0, 0, 120, 95, 1, 0, 37.0),  # no age group: no score
    (1, N, N, N, N, N, N, N, N, N, N),  # nothing known
    (0, 65, 2, 91, 1, 0, 185, 45, 3, 0, 38.5),  # infant, deranged: 2+2+4+1+4+4+2 = 19, sepsis
    (2, 45, N, 93, N, N, 125, N, N, 2, 35.5),  # 5-12 y partial; V escalates to high
    (3, 24.99, 0, 91.005, 0, 1, 129.99, 139.99, 2.5, 4, N),  # edges and gaps; U: emergency
    (1, 39.99, 1, 95, 0.005, 0, 89.99, 79.99, 2, 0, 36.0),  # 1-4 y edges
)


def _columns(names: Sequence[str]) -> list[dict[str, str]]:
    return [{"name": n, "unit": ALL_UNITS[n]} for n in names]


def _self_test(rows: Sequence[Sequence[float]], fn: Callable[[Sequence[float]], dict[str, list[float]]]) -> list[Any]:
    out = []
    for row in rows:
        expect = {k: [manifest.json_number(v) for v in vals] for k, vals in fn(row).items()}
        out.append({"input": [manifest.json_number(float(v)) for v in row], "expect": expect})
    return out


def write_model(out_dir: Path, model_id: str, onnx_bytes: bytes, body: dict[str, Any], key: Ed25519PrivateKey) -> Path:
    """Write ``<id>.onnx`` and its signed ``<id>.manifest.json``; returns the manifest path."""
    model_path = out_dir / f"{model_id}.onnx"
    model_path.write_bytes(onnx_bytes)
    body = {**body, "model_file": model_path.name, "sha256": manifest.sha256_file(model_path)}
    signed = signing.sign(body, key)
    manifest.parse(signed)  # the build never writes a manifest the gateway would refuse
    path = out_dir / f"{model_id}{manifest.MANIFEST_SUFFIX}"
    path.write_text(manifest.dumps(signed), encoding="utf-8")
    return path


def news2_body(version: str = NEWS2_VERSION) -> dict[str, Any]:
    return {
        "format": manifest.FORMAT,
        "id": "news2",
        "version": version,
        "role": "news2",
        "source": "Royal College of Physicians, National Early Warning Score (NEWS) 2, 2017 (chart 1-3)",
        "input": {"name": graphs.INPUT_NAME, "dtype": "float64", "columns": _columns(tables.NEWS2_INPUTS)},
        "outputs": [
            {
                "name": "subscores",
                "columns": list(PARAMETERS),
                "description": "points per parameter, NaN = missing",
            },
            {"name": "total", "description": "sum of the known sub-scores (lower bound when partial); NaN if none"},
            {"name": "red", "description": "1 if a known parameter scored 3"},
            {
                "name": "risk",
                "description": "0 none, 1 low, 2 low-medium, 3 medium, 4 high (lower bound when partial); NaN if none",
            },
            {"name": "partial", "description": "1 if any parameter is missing: total and risk are lower bounds"},
            {"name": "missing_count", "description": "number of missing parameters (0-7)"},
        ],
        "self_test": _self_test(NEWS2_SELF_TEST, reference.news2_row),
        "tolerance": 0.0,
    }


def bp_body(version: str = BP_VERSION) -> dict[str, Any]:
    return {
        "format": manifest.FORMAT,
        "id": "bp_category",
        "version": version,
        "role": "bp_category",
        "source": "ISH 2020 global hypertension guideline (Unger et al., J Hypertens 2020); severe >179/109",
        "input": {"name": graphs.INPUT_NAME, "dtype": "float64", "columns": _columns(tables.BP_INPUTS)},
        "outputs": [
            {
                "name": "category",
                "description": "0 normal, 1 high-normal, 2 grade 1, 3 grade 2; NaN if no BP",
            },
            {"name": "crisis", "description": "1 if SBP > 179 or DBP > 109; NaN if no BP"},
        ],
        "self_test": _self_test(BP_SELF_TEST, reference.bp_row),
        "tolerance": 0.0,
    }


def pews_body(version: str = PEWS_VERSION) -> dict[str, Any]:
    return {
        "format": manifest.FORMAT,
        "id": "pews",
        "version": version,
        "role": "pews",
        "source": "National PEWS (NHS England SPOT NPEWS configuration document, via rcpch/digital-pews "
        "spec/npews-scoring-tables.generated.md, clinician-checked 2026-06-30)",
        "input": {"name": graphs.INPUT_NAME, "dtype": "float64", "columns": _columns(tables.PEWS_INPUTS)},
        "outputs": [
            {
                "name": "subscores",
                "columns": list(PEWS_PARAMETERS),
                "description": "points per parameter (0, 1, 2 or 4), NaN = missing",
            },
            {"name": "total", "description": "sum of the known sub-scores (lower bound when partial); NaN if none"},
            {
                "name": "escalation",
                "description": "0 none, 1 low, 2 medium, 3 high, 4 emergency (total or AVPU; lower bound when partial)",
            },
            {"name": "partial", "description": "1 if a scored parameter or AVPU is missing"},
            {"name": "missing_count", "description": "scored parameters and AVPU missing (0-8)"},
            {"name": "sepsis", "description": "1 if temperature >= 38 or < 36 C (think sepsis); NaN if none"},
        ],
        "self_test": _self_test(PEWS_SELF_TEST, reference.pews_row),
        "tolerance": 0.0,
    }


def build(out_dir: Path, key: Ed25519PrivateKey) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_model(out_dir, "news2", graphs.news2_graph().SerializeToString(), news2_body(), key),
        write_model(out_dir, "bp_category", graphs.bp_graph().SerializeToString(), bp_body(), key),
        write_model(out_dir, "pews", graphs.pews_graph().SerializeToString(), pews_body(), key),
    ]


def write_dev_public_key() -> Path:
    path = signing.DEV_PUBLIC_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(signing.public_pem(signing.dev_private_key().public_key()))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BUILT_DIR, help="output directory (default: models/built)")
    parser.add_argument("--key", type=Path, help="Ed25519 private key (PEM); default: the DEVELOPMENT key")
    args = parser.parse_args(argv)
    if args.key:
        key = signing.load_private_key(args.key)
    else:
        key = signing.dev_private_key()
        print(f"signing with the DEVELOPMENT key {signing.key_id(key.public_key())} (not for production)")
        write_dev_public_key()
    for path in build(args.out, key):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
