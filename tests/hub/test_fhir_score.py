"""A NEWS2 or PEWS alert's score as a FHIR Observation: a partial score is exported as a lower
bound (comparator >=, missing parameters named), never as a complete value. Validated with
fhir.resources (R4B models)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.observation import Observation

from edge_agent.alerts import Alert, AlertLevel, AlertState
from hub.fhir import score_observation

T = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _alert(**kw: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        alert_id="a1", subject="local:DEMO-001", kind="news2", level=AlertLevel.LOW_MEDIUM, state=AlertState.RAISED,
        message="m", raised_at=T, score=3.0, partial=True, missing=("resp_rate", "consciousness"),
        inputs=(("spo2", 91.0, "gw:7"), ("on_oxygen", 0.0, "manual")), model="news2@2.0.0", updated_at=T,
    )  # fmt: skip
    base.update(kw)
    return Alert(**base).to_json()  # type: ignore[arg-type]


def test_partial_score_is_a_lower_bound() -> None:
    obs = score_observation(_alert(), "gw-1")
    Observation.model_validate(obs)
    q = obs["valueQuantity"]
    assert q == {
        "value": 3.0,
        "comparator": ">=",
        "unit": "score",
        "system": "http://unitsofmeasure.org",
        "code": "{ScoreOf}",
    }
    assert obs["status"] == "preliminary"
    notes = [n["text"] for n in obs["note"]]  # type: ignore[union-attr]
    assert "partial score, a lower bound; missing: resp_rate, consciousness" in notes
    assert obs["derivedFrom"] == [{"identifier": {"system": obs["identifier"][0]["system"], "value": "gw:7"}}]  # type: ignore[index]


def test_complete_score_has_no_comparator() -> None:
    obs = score_observation(_alert(partial=False, missing=(), score=0.0), "gw-1")
    Observation.model_validate(obs)
    assert "comparator" not in obs["valueQuantity"] and obs["status"] == "final"  # type: ignore[operator]
    assert obs["code"]["coding"][0]["code"] == "1104051000000101"  # type: ignore[index]


def test_pews_and_non_score_alerts() -> None:
    obs = score_observation(_alert(kind="pews", model="pews@1.0.0"), "gw-1")
    Observation.model_validate(obs)
    assert "PEWS" in obs["code"]["text"]  # type: ignore[index]
    with pytest.raises(ValueError):
        score_observation(_alert(kind="fever"), "gw-1")
