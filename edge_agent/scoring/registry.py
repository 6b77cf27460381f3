"""Signed models, loaded through their manifests and kept warm.

A model is run only after all of these hold (else :class:`ModelRejected`, and it is never run):
its manifest parses; its Ed25519 signature verifies against a trusted key; the model bytes
match the manifest's sha256; every input column is a known vital or observation in the unit the
gateway uses (DESIGN §3); the session's input and outputs match the manifest; and the model
reproduces every self-test vector of its manifest.

Swaps are atomic: a new version is fully validated (session created, self-tests passed) before
it replaces the old one in a single assignment; if anything fails the last good model stays.
Models pushed by the hub are written to ``pushed_dir/<id>/<version>/`` (a fresh directory renamed
into place) and ``pushed_dir/active.json`` (replaced atomically) names the version to load at
start; a pushed model that fails at start is reported and the shipped one is used (rollback).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device_drivers.records import UNITS
from edge_agent.scoring.errors import ModelRejected, TrustedKeyError
from edge_agent.scoring.runtime import RuntimeInfo
from models import manifest as mf
from models import signing
from models.news2 import PARAMETERS as NEWS2_PARAMETERS
from models.pews import PARAMETERS as PEWS_PARAMETERS
from models.vitals import OBSERVATION_UNITS

log = logging.getLogger(__name__)

# A NEWS2 or PEWS model must say how complete its score is (partial, missing_count), so a model
# whose total or level could be read as "normal" for an empty or partial set is refused.
REQUIRED_OUTPUTS: dict[str, frozenset[str]] = {
    "news2": frozenset({"subscores", "total", "red", "risk", "partial", "missing_count"}),
    "bp_category": frozenset({"category", "crisis"}),
    "pews": frozenset({"subscores", "total", "escalation", "partial", "missing_count", "sepsis"}),
    "risk": frozenset(),
}
_SUBSCORE_COLUMNS: dict[str, tuple[str, ...]] = {"news2": NEWS2_PARAMETERS, "pews": PEWS_PARAMETERS}
_ORT_DTYPES = {"float64": "tensor(double)", "float32": "tensor(float)"}
_GATEWAY_UNITS: dict[str, str] = {**{str(v): u for v, u in UNITS.items()}, **OBSERVATION_UNITS}
ACTIVE_FILE = "active.json"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    manifest: mf.Manifest
    session: Any  # onnxruntime.InferenceSession
    key_id: str
    origin: str  # "shipped" | "pushed"
    loaded_at: datetime

    @property
    def ref(self) -> str:
        return self.manifest.ref

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.manifest.columns)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run on rows ``x`` [N, K] (NaN = missing); returns the manifest's outputs by name."""
        dtype = np.float64 if self.manifest.input_dtype == "float64" else np.float32
        names = list(self.manifest.outputs)
        outs = self.session.run(names, {self.manifest.input_name: np.ascontiguousarray(x, dtype=dtype)})
        return dict(zip(names, outs, strict=True))

    def summary(self) -> dict[str, object]:
        return {
            "id": self.manifest.id,
            "version": self.manifest.version,
            "role": self.manifest.role,
            "sha256": self.manifest.sha256[:12],
            "key_id": self.key_id,
            "origin": self.origin,
        }


def trusted_keys(paths: tuple[Path, ...], *, allow_dev_key: bool) -> dict[str, Ed25519PublicKey]:
    """Key id → public key: the development key if allowed, plus each PEM in ``paths``.

    Raises :class:`TrustedKeyError` naming the file that cannot be used."""
    keys: dict[str, Ed25519PublicKey] = {}
    if allow_dev_key:
        dev = signing.dev_public_key()
        keys[signing.key_id(dev)] = dev
    for p in paths:
        try:
            k = signing.load_public_key(p)
        except (OSError, ValueError, TypeError) as exc:
            raise TrustedKeyError(p, str(exc)) from exc
        keys[signing.key_id(k)] = k
    return keys


class ModelRegistry:
    def __init__(
        self,
        *,
        runtime: RuntimeInfo,
        trusted: Mapping[str, Ed25519PublicKey],
        pushed_dir: Path | None = None,
        dev_key_id: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.trusted = dict(trusted)
        self.pushed_dir = pushed_dir
        self.dev_key_id = dev_key_id
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()  # serialises writers; readers take the dict reference
        self.errors: list[str] = []  # rejections since start, newest last (bounded)
        self.config_error = ""  # e.g. a configured trusted key that cannot be read

    # -- reading --------------------------------------------------------------------------------
    def get(self, model_id: str) -> LoadedModel | None:
        return self._models.get(model_id)

    def by_role(self, role: str) -> LoadedModel | None:
        for m in self._models.values():
            if m.manifest.role == role:
                return m
        return None

    def models(self) -> list[LoadedModel]:
        return list(self._models.values())

    # -- validation -----------------------------------------------------------------------------
    def validate(self, raw: dict[str, Any], model_bytes: bytes, *, origin: str) -> LoadedModel:
        """All checks, no state change; returns a warm model or raises ModelRejected."""
        name = f"{raw.get('id', '?')}@{raw.get('version', '?')}"
        try:
            man = mf.parse(raw)
        except mf.ManifestFormatError as exc:
            raise ModelRejected(name, "format", str(exc)) from exc
        try:
            kid = signing.verify(raw, self.trusted)
        except signing.SignatureError as exc:
            raise ModelRejected(man.ref, exc.reason, str(exc)) from exc
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != man.sha256:
            raise ModelRejected(man.ref, "hash_mismatch", f"model sha256 {digest[:12]} != manifest {man.sha256[:12]}")
        for col in man.columns:
            expected = _GATEWAY_UNITS.get(col.name)
            if expected is None:
                raise ModelRejected(man.ref, "bad_inputs", f"unknown input {col.name!r}")
            if col.unit != expected:
                raise ModelRejected(
                    man.ref,
                    "bad_inputs",
                    f"input {col.name!r} in {col.unit!r}, the gateway uses {expected!r}",
                )
        if len({c.name for c in man.columns}) != len(man.columns):
            raise ModelRejected(man.ref, "bad_inputs", "duplicate input column")
        missing_out = REQUIRED_OUTPUTS[man.role] - set(man.outputs)
        if missing_out:
            raise ModelRejected(man.ref, "bad_outputs", f"role {man.role} needs outputs {sorted(missing_out)}")
        if man.role in _SUBSCORE_COLUMNS:
            want = _SUBSCORE_COLUMNS[man.role]
            subs = next((o for o in raw["outputs"] if isinstance(o, dict) and o.get("name") == "subscores"), {})
            if tuple(subs.get("columns") or ()) != want:
                raise ModelRejected(man.ref, "bad_outputs", f"subscores columns must be {list(want)}")
        session = self._session(man, model_bytes)
        model = LoadedModel(man, session, kid, origin, datetime.now(UTC))
        self._self_test(model)
        return model

    def _session(self, man: mf.Manifest, model_bytes: bytes) -> Any:
        ort = self.runtime.module
        if ort is None:
            raise ModelRejected(man.ref, "runtime_unavailable", self.runtime.error)
        try:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            session = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelRejected(man.ref, "load_failed", f"{type(exc).__name__}: {exc}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != man.input_name:
            raise ModelRejected(
                man.ref, "bad_inputs", f"model inputs {[i.name for i in inputs]} != [{man.input_name!r}]"
            )
        if inputs[0].type != _ORT_DTYPES[man.input_dtype]:
            raise ModelRejected(man.ref, "bad_inputs", f"model input type {inputs[0].type} != {man.input_dtype}")
        width = inputs[0].shape[-1] if inputs[0].shape else None
        if isinstance(width, int) and width != len(man.columns):
            raise ModelRejected(
                man.ref, "bad_inputs", f"model takes {width} columns, manifest lists {len(man.columns)}"
            )
        out_names = {o.name for o in session.get_outputs()}
        if not set(man.outputs) <= out_names:
            raise ModelRejected(man.ref, "bad_outputs", f"model lacks outputs {sorted(set(man.outputs) - out_names)}")
        return session

    @staticmethod
    def _self_test(model: LoadedModel) -> None:
        man = model.manifest
        x = np.array([t.input for t in man.self_test], dtype=np.float64)
        try:
            outs = model.run(x)
        except Exception as exc:
            raise ModelRejected(man.ref, "self_test_failed", f"run failed: {type(exc).__name__}: {exc}") from exc
        for i, t in enumerate(man.self_test):
            for name, expected in t.expect:
                if name not in outs:
                    raise ModelRejected(man.ref, "self_test_failed", f"vector {i}: no output {name!r}")
                got = np.asarray(outs[name][i], dtype=np.float64).reshape(-1)
                exp = np.asarray(expected, dtype=np.float64)
                if got.shape != exp.shape or not np.allclose(got, exp, rtol=0.0, atol=man.tolerance, equal_nan=True):
                    raise ModelRejected(
                        man.ref,
                        "self_test_failed",
                        f"vector {i}: {name} = {got.tolist()}, expected {exp.tolist()}",
                    )

    # -- installing -----------------------------------------------------------------------------
    def _swap_in(self, model: LoadedModel) -> None:
        with self._lock:
            new = dict(self._models)
            new[model.manifest.id] = model
            self._models = new  # one reference assignment: readers see old or new, never a mix
        log.info("event=model_loaded model=%s key=%s origin=%s", model.ref, model.key_id, model.origin)

    def _record(self, exc: ModelRejected) -> None:
        self.errors = [*self.errors[-19:], str(exc)]
        log.error("event=model_rejected model=%s reason=%s detail=%s", exc.model, exc.reason, exc.detail)

    def install_file(self, manifest_path: Path, *, origin: str = "shipped") -> LoadedModel:
        """Validate the model a manifest file names (next to it) and swap it in."""
        try:
            raw = mf.read(manifest_path)
        except mf.ManifestFormatError as exc:
            rej = ModelRejected(manifest_path.name, "format", str(exc))
            self._record(rej)
            raise rej from exc
        model_file = raw.get("model_file")
        try:
            if not isinstance(model_file, str) or "/" in model_file or model_file.startswith("."):
                raise ModelRejected(manifest_path.name, "format", "model_file: must be a plain file name")
            try:
                model_bytes = (manifest_path.parent / model_file).read_bytes()
            except OSError as exc:
                raise ModelRejected(manifest_path.name, "load_failed", f"cannot read {model_file}: {exc}") from exc
            model = self.validate(raw, model_bytes, origin=origin)
        except ModelRejected as exc:
            self._record(exc)
            raise
        self._swap_in(model)
        return model

    def load_dir(self, directory: Path, *, origin: str = "shipped") -> list[ModelRejected]:
        """Install every ``*.manifest.json`` in ``directory``; returns the rejections."""
        rejected = []
        for path in sorted(directory.glob(f"*{mf.MANIFEST_SUFFIX}")):
            try:
                self.install_file(path, origin=origin)
            except ModelRejected as exc:
                rejected.append(exc)
        return rejected

    def load_pushed(self) -> list[ModelRejected]:
        """At start: load the versions ``active.json`` names; a failure keeps the shipped model."""
        if self.pushed_dir is None or not (self.pushed_dir / ACTIVE_FILE).exists():
            return []
        try:
            active = json.loads((self.pushed_dir / ACTIVE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            rej = ModelRejected(ACTIVE_FILE, "format", f"unreadable: {exc}")
            self._record(rej)
            return [rej]
        rejected = []
        for model_id, version in sorted(active.items()):
            path = self.pushed_dir / _safe(model_id) / _safe(version) / f"{_safe(model_id)}{mf.MANIFEST_SUFFIX}"
            try:
                self.install_file(path, origin="pushed")
            except ModelRejected as exc:
                rejected.append(exc)  # rollback: whatever was loaded before (shipped) stays
        return rejected

    def push(self, manifest_bytes: bytes, model_bytes: bytes) -> LoadedModel:
        """Install a model pushed by the hub: validate fully, persist, then swap atomically.

        On any failure the model in use stays and ModelRejected is raised.
        """
        try:
            try:
                raw = json.loads(manifest_bytes)
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                raise ModelRejected("pushed", "format", f"manifest is not JSON: {exc}") from exc
            model = self.validate(raw, model_bytes, origin="pushed")
            if self.pushed_dir is not None:
                self._persist(model.manifest, manifest_bytes, model_bytes)
        except ModelRejected as exc:
            self._record(exc)
            raise
        self._swap_in(model)
        return model

    def _persist(self, man: mf.Manifest, manifest_bytes: bytes, model_bytes: bytes) -> None:
        assert self.pushed_dir is not None
        base = self.pushed_dir / _safe(man.id)
        final = base / _safe(man.version)
        base.mkdir(parents=True, exist_ok=True)
        if not final.exists():
            tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=base))
            (tmp / man.model_file).write_bytes(model_bytes)
            (tmp / f"{_safe(man.id)}{mf.MANIFEST_SUFFIX}").write_bytes(manifest_bytes)
            _fsync_dir_files(tmp)
            os.replace(tmp, final)
        active_path = self.pushed_dir / ACTIVE_FILE
        try:
            active = json.loads(active_path.read_text(encoding="utf-8")) if active_path.exists() else {}
        except (OSError, ValueError):
            active = {}
        active[man.id] = man.version
        fd, tmp_name = tempfile.mkstemp(prefix=".active-", dir=self.pushed_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(active, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, active_path)

    def status(self) -> dict[str, object]:
        return {
            "models": [m.summary() for m in self._models.values()],
            "dev_key_trusted": self.dev_key_id is not None and self.dev_key_id in self.trusted,
            "rejected": list(self.errors[-5:]),
            "config_error": self.config_error,
        }


def _safe(part: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in str(part))
    return cleaned.lstrip(".") or "_"


def _fsync_dir_files(directory: Path) -> None:
    for p in directory.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
