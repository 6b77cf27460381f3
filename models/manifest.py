"""The model manifest: what a model is, what it eats, what it returns, and who vouches for it.

One JSON file per model, ``<id>.manifest.json`` next to ``<model_file>`` (docs/models.md has a
full example). Members:

``format`` (1), ``id``, ``version``, ``role`` (``news2`` | ``bp_category`` | ``pews`` | ``risk``),
``model_file``, ``sha256`` (of the model file), ``source`` (citation), ``input``
(``name``, ``dtype`` float64|float32, ``columns``: ``[{name, unit}]`` in column order; a missing
value is NaN), ``outputs`` (``[{name, columns?, description}]``), ``self_test``
(``[{input: [numbers|null], expect: {output: [numbers|null]}}]``, null = NaN), ``tolerance``,
and ``signature`` (``{alg: ed25519, key_id, value}``, see ``models.signing``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
ROLES = ("news2", "bp_category", "pews", "risk")
DTYPES = ("float64", "float32")
MANIFEST_SUFFIX = ".manifest.json"


class ManifestFormatError(ValueError):
    """The manifest is not valid JSON of the expected shape; ``key`` names the member."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    unit: str


@dataclass(frozen=True, slots=True)
class SelfTest:
    input: tuple[float, ...]  # NaN for null
    expect: tuple[tuple[str, tuple[float, ...]], ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    id: str
    version: str
    role: str
    model_file: str
    sha256: str
    source: str
    input_name: str
    input_dtype: str
    columns: tuple[Column, ...]
    outputs: tuple[str, ...]
    self_test: tuple[SelfTest, ...]
    tolerance: float
    raw: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _num(v: object, key: str) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ManifestFormatError(key, f"must be a number or null, got {type(v).__name__}")
    return float(v)


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise ManifestFormatError(key, "missing or not a non-empty string")
    return v


def parse(raw: dict[str, Any]) -> Manifest:
    """Check the shape of a manifest dict (not its signature: see ``models.signing.verify``)."""
    if raw.get("format") != FORMAT:
        raise ManifestFormatError("format", f"unsupported manifest format {raw.get('format')!r}")
    role = _str(raw, "role")
    if role not in ROLES:
        raise ManifestFormatError("role", f"must be one of {', '.join(ROLES)}")
    model_file = _str(raw, "model_file")
    if "/" in model_file or "\\" in model_file or model_file.startswith("."):
        raise ManifestFormatError("model_file", "must be a plain file name")
    inp = raw.get("input")
    if not isinstance(inp, dict):
        raise ManifestFormatError("input", "missing")
    dtype = inp.get("dtype")
    if dtype not in DTYPES:
        raise ManifestFormatError("input.dtype", f"must be one of {', '.join(DTYPES)}")
    cols_raw = inp.get("columns")
    if not isinstance(cols_raw, list) or not cols_raw:
        raise ManifestFormatError("input.columns", "missing or empty")
    columns = []
    for i, c in enumerate(cols_raw):
        if not isinstance(c, dict):
            raise ManifestFormatError(f"input.columns[{i}]", "must be an object")
        columns.append(Column(_str(c, "name"), _str(c, "unit")))
    outs = raw.get("outputs")
    if not isinstance(outs, list) or not outs:
        raise ManifestFormatError("outputs", "missing or empty")
    out_names = tuple(_str(o, "name") if isinstance(o, dict) else "" for o in outs)
    tests = []
    for i, t in enumerate(raw.get("self_test") or []):
        key = f"self_test[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("input"), list) or not isinstance(t.get("expect"), dict):
            raise ManifestFormatError(key, "must be {input: [...], expect: {...}}")
        x = tuple(_num(v, f"{key}.input") for v in t["input"])
        if len(x) != len(columns):
            raise ManifestFormatError(f"{key}.input", f"has {len(x)} values for {len(columns)} columns")
        expect = tuple(
            (str(name), tuple(_num(v, f"{key}.expect.{name}") for v in vals))
            for name, vals in sorted(t["expect"].items())
            if isinstance(vals, list)
        )
        tests.append(SelfTest(x, expect))
    if not tests:
        raise ManifestFormatError("self_test", "a manifest must carry self-test vectors")
    sha = _str(raw, "sha256")
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise ManifestFormatError("sha256", "must be 64 lowercase hex digits")
    return Manifest(
        id=_str(raw, "id"),
        version=_str(raw, "version"),
        role=role,
        model_file=model_file,
        sha256=sha,
        source=_str(raw, "source"),
        input_name=_str(inp, "name"),
        input_dtype=str(dtype),
        columns=tuple(columns),
        outputs=out_names,
        self_test=tuple(tests),
        tolerance=_num(raw.get("tolerance", 1e-9), "tolerance"),
        raw=raw,
    )


def read(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestFormatError("", f"{path.name}: cannot read manifest: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestFormatError("", f"{path.name}: not a JSON object")
    return raw


def dumps(raw: dict[str, Any]) -> str:
    return json.dumps(raw, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def json_number(x: float) -> float | None:
    """A float for JSON, with NaN as null."""
    return None if math.isnan(x) else float(x)
