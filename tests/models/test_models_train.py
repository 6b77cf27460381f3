"""The training path on a SYNTHETIC data set (models.synthetic): CSV → scikit-learn → signed ONNX."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from device_drivers.records import Reading, Vital
from edge_agent.scoring import ModelRejected, ScoringSettings, build_scorer
from edge_agent.scoring.registry import ModelRegistry, trusted_keys
from edge_agent.scoring.runtime import load_runtime
from models import manifest, signing, synthetic, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, train.Dataset, object]:
    d = tmp_path_factory.mktemp("train")
    synthetic.write_csv(d / "synthetic.csv", synthetic.generate(600, seed=1))
    data = train.read_csv(d / "synthetic.csv")
    model = train.fit(data)
    path = train.export(model, data, d / "out", signing.dev_private_key(), model_id="deterioration_lr",
                        version="0.1.0", source="synthetic test data")  # fmt: skip
    return path, data, model


def test_onnx_matches_scikit_learn(trained: tuple[Path, train.Dataset, object]) -> None:
    path, data, model = trained
    m = manifest.parse(manifest.read(path))
    sess = ort.InferenceSession(str(path.parent / m.model_file), providers=["CPUExecutionProvider"])
    fresh = synthetic.generate(200, seed=99)
    x = np.array([[r[c] for c in data.columns] for r in fresh], dtype=np.float32)
    onnx_p = sess.run(["probabilities"], {"vitals": x})[0]
    sk_p = model.predict_proba(x)  # type: ignore[attr-defined]
    np.testing.assert_allclose(onnx_p, sk_p, atol=1e-4)
    # it learned something from the synthetic rule (AUC well above chance), computed by hand
    y = np.array([r["outcome"] for r in fresh])
    pos, neg = onnx_p[y == 1, 1], onnx_p[y == 0, 1]
    auc = float(np.mean(pos[:, None] > neg[None, :]))
    assert auc > 0.75


def test_trained_model_is_signed_and_loads_on_the_gateway(
    trained: tuple[Path, train.Dataset, object],
) -> None:
    path, _, _ = trained
    reg = ModelRegistry(runtime=load_runtime(probe=False), trusted=trusted_keys((), allow_dev_key=True))
    loaded = reg.install_file(path)
    assert loaded.manifest.role == "risk" and loaded.manifest.input_dtype == "float32"
    assert [c.unit for c in loaded.manifest.columns][:2] == ["/min", "%"]
    untrusting = ModelRegistry(runtime=load_runtime(probe=False), trusted=trusted_keys((), allow_dev_key=False))
    with pytest.raises(ModelRejected):
        untrusting.install_file(path)


def test_pushed_trained_model_is_reported_in_scores(
    trained: tuple[Path, train.Dataset, object], tmp_path: Path
) -> None:
    path, _, _ = trained
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    scorer = build_scorer(models_dir=None, store=None, clock=lambda: t0, settings=ScoringSettings(probe_runtime=False))
    scorer.push_model(path.read_bytes(), (path.parent / "deterioration_lr.onnx").read_bytes())
    r = Reading("gw:1", 1, Vital.HEART_RATE, 130.0, "/min", t0, t0, "oxi-1", "test", False)
    scorer.on_readings([r], t0)
    (score,) = scorer.scores()
    ((ref, p),) = score.risks
    assert ref == "deterioration_lr@0.1.0" and 0.0 <= p <= 1.0


def test_csv_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("pulse,outcome\n80,0\n90,1\n")
    with pytest.raises(train.TrainingDataError, match="unknown input"):
        train.read_csv(bad)
    bad.write_text("heart_rate,outcome\n80,0\n90,0\n")
    with pytest.raises(train.TrainingDataError, match="both outcomes"):
        train.read_csv(bad)
