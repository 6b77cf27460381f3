"""Models load only through verified manifests; refusals, hot swap and rollback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import numpy_helper

from edge_agent.scoring import ModelRegistry, ModelRejected
from edge_agent.scoring.registry import trusted_keys
from edge_agent.scoring.runtime import RuntimeInfo, _probe, load_runtime
from models import BUILT_DIR, build, graphs, signing

DEV = signing.dev_private_key()


def _registry(pushed: Path | None = None) -> ModelRegistry:
    return ModelRegistry(
        runtime=load_runtime(probe=False), trusted=trusted_keys((), allow_dev_key=True), pushed_dir=pushed
    )


def _news2_bytes() -> bytes:
    return graphs.news2_graph().SerializeToString()


def _shifted_news2_bytes() -> bytes:
    """A NEWS2 graph whose SpO2 tables are off by one (91 % would score 2, not 3)."""
    model = graphs.news2_graph()
    hits = 0
    for init in model.graph.initializer:
        if numpy_helper.to_array(init).tolist() == [92.0, 94.0, 96.0]:
            init.CopyFrom(numpy_helper.from_array(np.array([91.0, 94.0, 96.0]), init.name))
            hits += 1
    assert hits, "the SpO2 thresholds were not found in the graph"
    return model.SerializeToString()


def _write(tmp: Path, onnx_bytes: bytes, body: dict, key: Ed25519PrivateKey = DEV) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return build.write_model(tmp, "news2", onnx_bytes, body, key)


def _rejected(path: Path) -> ModelRejected:
    reg = _registry()
    with pytest.raises(ModelRejected) as info:
        reg.install_file(path)
    assert reg.by_role("news2") is None, "a refused model must never be loaded"
    return info.value


def test_shipped_models_load_and_pass_self_tests() -> None:
    reg = _registry()
    assert reg.load_dir(BUILT_DIR) == []
    assert {m.manifest.id for m in reg.models()} == {"news2", "bp_category", "pews"}
    status = reg.status()
    assert status["dev_key_trusted"] is False  # no dev key id given to this registry
    assert all(len(str(m["sha256"])) == 12 for m in status["models"])  # type: ignore[union-attr]


def test_tampered_model_bytes_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _news2_bytes(), build.news2_body())
    model_file = tmp_path / "news2.onnx"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    assert _rejected(path).reason == "hash_mismatch"


def test_tampered_manifest_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _news2_bytes(), build.news2_body())
    raw = json.loads(path.read_text())
    raw["self_test"] = raw["self_test"][:1]  # e.g. someone drops the inconvenient vectors
    path.write_text(json.dumps(raw))
    assert _rejected(path).reason == "bad_signature"


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    stranger = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    path = _write(tmp_path, _news2_bytes(), build.news2_body(), key=stranger)
    assert _rejected(path).reason == "unknown_key"


def test_unsigned_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _news2_bytes(), build.news2_body())
    raw = json.loads(path.read_text())
    del raw["signature"]
    path.write_text(json.dumps(raw))
    assert _rejected(path).reason == "unsigned"


@pytest.mark.parametrize(
    ("column", "unit", "name"),
    [("body_temp", "[degF]", None), ("bp_systolic", "kPa", None), ("spo2", "%", "spo2_pct")],
)
def test_wrong_input_units_or_names_are_refused(tmp_path: Path, column: str, unit: str, name: str | None) -> None:
    body = build.news2_body()
    for col in body["input"]["columns"]:
        if col["name"] == column:
            col["unit"] = unit
            if name:
                col["name"] = name
    path = _write(tmp_path, _news2_bytes(), body)  # correctly signed: the units themselves are wrong
    rej = _rejected(path)
    assert rej.reason == "bad_inputs" and (name or column) in rej.detail


def test_news2_outputs_must_name_the_parameters_in_order(tmp_path: Path) -> None:
    body = build.news2_body()
    body["outputs"][0]["columns"] = list(reversed(body["outputs"][0]["columns"]))
    rej = _rejected(_write(tmp_path, _news2_bytes(), body))
    assert rej.reason == "bad_outputs"


def test_model_failing_its_self_test_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _shifted_news2_bytes(), build.news2_body())
    rej = _rejected(path)
    assert rej.reason == "self_test_failed"


def test_model_that_does_not_match_its_manifest_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, graphs.bp_graph().SerializeToString(), build.news2_body())
    assert _rejected(path).reason in ("bad_inputs", "bad_outputs")


def test_refusal_when_runtime_is_missing(tmp_path: Path) -> None:
    reg = ModelRegistry(runtime=RuntimeInfo(None, "", "boom"), trusted=trusted_keys((), allow_dev_key=True))
    with pytest.raises(ModelRejected) as info:
        reg.install_file(Path(BUILT_DIR) / "news2.manifest.json")
    assert info.value.reason == "runtime_unavailable"


def test_dev_key_can_be_distrusted(tmp_path: Path) -> None:
    reg = ModelRegistry(runtime=load_runtime(probe=False), trusted=trusted_keys((), allow_dev_key=False))
    assert reg.load_dir(BUILT_DIR)[0].reason == "unknown_key"
    assert reg.models() == []


def test_production_key_from_pem(tmp_path: Path) -> None:
    hub = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    (tmp_path / "hub.pem").write_bytes(signing.public_pem(hub.public_key()))
    path = _write(tmp_path / "m", _news2_bytes(), build.news2_body(), key=hub)
    reg = ModelRegistry(
        runtime=load_runtime(probe=False), trusted=trusted_keys((tmp_path / "hub.pem",), allow_dev_key=False)
    )
    assert reg.install_file(path).key_id == signing.key_id(hub.public_key())


def _pushable(tmp_path: Path, version: str, onnx_bytes: bytes | None = None) -> tuple[bytes, bytes]:
    d = tmp_path / f"push-{version}"
    path = _write(d, onnx_bytes or _news2_bytes(), build.news2_body(version))
    return path.read_bytes(), (d / "news2.onnx").read_bytes()


def test_hot_swap_then_restart_keeps_the_pushed_version(tmp_path: Path) -> None:
    pushed = tmp_path / "state-models"
    reg = _registry(pushed)
    reg.load_dir(BUILT_DIR)
    before = reg.get("news2")
    assert before is not None and before.manifest.version == build.NEWS2_VERSION
    new = reg.push(*_pushable(tmp_path, "1.0.1"))
    assert new.manifest.version == "1.0.1" and new.origin == "pushed"
    assert reg.get("news2") is new
    # the old session object is untouched (anyone holding it finishes its run)
    assert before.run(np.array([[16, 97, 0, 120, 70, 0, 37.0, 1]], dtype=np.float64))["total"][0, 0] == 0
    restarted = _registry(pushed)
    restarted.load_dir(BUILT_DIR)
    assert restarted.load_pushed() == []
    assert restarted.get("news2").manifest.version == "1.0.1"  # type: ignore[union-attr]


def test_bad_push_keeps_the_last_good_model(tmp_path: Path) -> None:
    pushed = tmp_path / "state-models"
    reg = _registry(pushed)
    reg.load_dir(BUILT_DIR)
    reg.push(*_pushable(tmp_path, "1.0.1"))
    manifest_bytes, model_bytes = _pushable(tmp_path, "1.0.2", _shifted_news2_bytes())
    with pytest.raises(ModelRejected) as info:
        reg.push(manifest_bytes, model_bytes)
    assert info.value.reason == "self_test_failed"
    assert reg.get("news2").manifest.version == "1.0.1"  # type: ignore[union-attr]
    assert not (pushed / "news2" / "1.0.2").exists()
    assert json.loads((pushed / "active.json").read_text()) == {"news2": "1.0.1"}
    with pytest.raises(ModelRejected):
        reg.push(b"{not json", model_bytes)
    m, _ = _pushable(tmp_path, "1.0.3")
    with pytest.raises(ModelRejected) as info:
        reg.push(m, model_bytes + b"x")
    assert info.value.reason == "hash_mismatch"
    assert reg.get("news2").manifest.version == "1.0.1"  # type: ignore[union-attr]
    assert any("1.0.2" in e for e in reg.status()["rejected"])  # type: ignore[union-attr]


def test_pushed_model_broken_on_disk_rolls_back_to_shipped(tmp_path: Path) -> None:
    pushed = tmp_path / "state-models"
    reg = _registry(pushed)
    reg.load_dir(BUILT_DIR)
    reg.push(*_pushable(tmp_path, "1.0.1"))
    (pushed / "news2" / "1.0.1" / "news2.onnx").write_bytes(b"garbage")
    restarted = _registry(pushed)
    restarted.load_dir(BUILT_DIR)
    rejected = restarted.load_pushed()
    assert [r.reason for r in rejected] == ["hash_mismatch"]
    assert restarted.get("news2").manifest.version == build.NEWS2_VERSION  # type: ignore[union-attr]


def test_probe_reports_a_crashing_import() -> None:
    assert _probe() == ""
    msg = _probe("import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    assert "SIGILL" in msg and "illegal instruction" in msg
    assert "failed to import" in _probe("raise ImportError('no such module')")


def test_copying_the_shipped_dir_works(tmp_path: Path) -> None:
    shutil.copytree(BUILT_DIR, tmp_path / "m")
    reg = _registry()
    assert reg.load_dir(tmp_path / "m") == []


def test_unreadable_trusted_key_is_reported(tmp_path: Path) -> None:
    from edge_agent.scoring import ScoringSettings, TrustedKeyError, build_scorer

    (tmp_path / "hub.pem").write_text("not a key")
    with pytest.raises(TrustedKeyError):
        trusted_keys((tmp_path / "hub.pem",), allow_dev_key=False)
    settings = ScoringSettings(probe_runtime=False, trusted_keys=(tmp_path / "hub.pem",), allow_dev_key=False)
    status = build_scorer(models_dir=None, store=None, settings=settings).status()
    assert status["available"] is False and "hub.pem" in str(status["error"])


def test_gateway_runtime_needs_no_build_packages() -> None:
    """The scorer runs with onnx, skl2onnx and scikit-learn absent (only the models extra has them)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('onnx', 'skl2onnx', 'sklearn'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "from edge_agent.scoring import ScoringSettings, build_scorer\n"
        "s = build_scorer(models_dir=None, store=None, settings=ScoringSettings(probe_runtime=False))\n"
        "st = s.status()\n"
        "assert st['available'] and len(st['models']) == 3, st\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("dropped", ["partial", "missing_count"])
def test_news2_model_that_cannot_say_partial_is_refused(tmp_path: Path, dropped: str) -> None:
    """A NEWS2 model without its completeness outputs could let a partial set pass for normal."""
    model = graphs.news2_graph()
    keep = [o for o in model.graph.output if o.name != dropped]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    body = build.news2_body()
    body["outputs"] = [o for o in body["outputs"] if o["name"] != dropped]
    for t in body["self_test"]:
        t["expect"].pop(dropped)
    path = _write(tmp_path, model.SerializeToString(), body)
    rej = _rejected(path)
    assert rej.reason == "bad_outputs" and dropped in rej.detail
