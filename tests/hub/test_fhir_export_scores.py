"""`edge-hub export --fhir` exports the NEWS2 / PEWS scores of the alerts the hub received, on both
engines: a partial score as a lower bound (comparator >=, status preliminary, missing parameters
named), never as a complete value. Also the store's paged ``iter_alerts``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

from edge_agent.alerts import Alert, AlertLevel, AlertState
from hub.cli import main
from hub.fhir import SCORE_KINDS, ExportStats, score_observations
from hub.store import PAGE_SIZE, HubStore, StoredAlert, open_store
from tests.hub.helpers import T0, reading

GW = "gw-0001"


@dataclass(frozen=True)
class Rev:
    alert_id: str
    rev: int
    payload: dict[str, object]


def payload(alert_id: str, **kw: Any) -> dict[str, object]:
    base: dict[str, Any] = dict(
        alert_id=alert_id, subject="079203001234", kind="news2", level=AlertLevel.LOW_MEDIUM,
        state=AlertState.RAISED, message="m", raised_at=T0, score=3.0, partial=True,
        missing=("resp_rate", "consciousness"), inputs=(("spo2", 91.0, f"{GW}:7"), ("on_oxygen", 0.0, "manual")),
        model="news2@2.0.0", updated_at=T0,
    )  # fmt: skip
    base.update(kw)
    return Alert(**base).to_json()


def _fill(spec: str) -> None:
    with open_store(spec) as s:
        s.ingest(GW, "b1", [reading(GW, 1)], now=T0)
        s.ingest_alerts(
            GW,
            "a1",
            [
                Rev("al-news2", 1, payload("al-news2")),
                Rev("al-fever", 1, payload("al-fever", kind="fever", score=None, partial=False, missing=())),
                Rev("al-device", 1, payload("al-device", subject="device:spo2-1")),
            ],
            now=T0,
        )
        complete = payload(
            "al-pews", kind="pews", model="pews@1.0.0", score=5.0, partial=False, missing=(), level=AlertLevel.MEDIUM
        )
        s.ingest_alerts(GW, "a2", [Rev("al-pews", 2, complete)], now=T0 + timedelta(days=1))


def test_export_carries_scores_partial_as_lower_bound(store_spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(store_spec)
    assert main(["export", "--fhir", "--store", store_spec, "--json"]) == 0
    out, err = capsys.readouterr()
    docs = [json.loads(line) for line in out.splitlines()]
    for d in docs:
        Observation.model_validate(d)
    scores = [d for d in docs if d["category"][0]["coding"][0]["code"] == "survey"]
    assert len(docs) == 3 and len(scores) == 2  # one reading; fever is no score; device alert has no patient
    by_code = {d["code"]["text"]: d for d in scores}
    news2 = by_code["NEWS2 total score"]
    assert news2["status"] == "preliminary"
    assert news2["valueQuantity"]["comparator"] == ">=" and news2["valueQuantity"]["value"] == 3.0
    assert "partial score, a lower bound; missing: resp_rate, consciousness" in [n["text"] for n in news2["note"]]
    assert news2["subject"]["identifier"]["value"] == "079203001234"
    assert news2["issued"].startswith(T0.date().isoformat())
    pews = next(d for d in scores if "PEWS" in d["code"]["text"])
    assert pews["status"] == "final" and "comparator" not in pews["valueQuantity"]
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["observations"] == 3 and summary["by_category"]["survey"] == 2
    assert (summary["score_alerts"], summary["scores"], summary["partial_scores"]) == (3, 2, 1)
    assert summary["scores_skipped_unassigned"] == 1


def test_since_applies_to_alerts_and_bundle_holds_scores(store_spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(store_spec)
    since = (T0 + timedelta(hours=1)).isoformat()
    assert main(["export", "--fhir", "--store", store_spec, "--since", since, "--format", "bundle"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    Bundle.model_validate(doc)
    [entry] = doc["entry"]  # only the PEWS revision came after `since`; the reading and NEWS2 before
    assert "PEWS" in entry["resource"]["code"]["text"]
    assert entry["request"]["ifNoneExist"].endswith("|alert:al-pews@" + T0.isoformat())
    assert "1 NEWS2/PEWS scores (0 partial, as lower bounds)" in err


def test_iter_alerts_pages_filters_and_keeps_newest_revision(store: HubStore) -> None:
    n = PAGE_SIZE + 3
    store.ingest_alerts(GW, "a1", [Rev(f"al-{i:05d}", 1, {"kind": "news2"}) for i in range(n)], now=T0)
    store.ingest_alerts(GW, "a2", [Rev("al-00001", 2, {"kind": "fever"})], now=T0 + timedelta(days=1))
    ids = [a.alert_id for a in store.iter_alerts()]
    assert ids == sorted(ids) and len(ids) == n
    assert [a.alert_id for a in store.iter_alerts(since=T0 + timedelta(hours=1))] == ["al-00001"]
    news2 = list(store.iter_alerts(kinds=SCORE_KINDS))
    assert len(news2) == n - 1 and "al-00001" not in {a.alert_id for a in news2}  # its newest rev is a fever
    assert list(store.iter_alerts(kinds=())) == []
    [fever] = store.iter_alerts(kinds=["fever"])
    assert (fever.rev, fever.batch_id) == (2, "a2")


def test_score_observations_ignores_other_kinds_and_counts() -> None:
    alerts = [
        StoredAlert("x", GW, 1, payload("x", kind="desaturation", score=None), "b", T0),
        StoredAlert("y", GW, 1, payload("y", score=float("nan"), partial=True), "b", T0),
    ]
    stats = ExportStats()
    [obs] = score_observations(alerts, stats=stats)
    Observation.model_validate(obs)
    assert "dataAbsentReason" in obs and "valueQuantity" not in obs and obs["status"] == "preliminary"
    assert (stats.score_alerts, stats.scores, stats.partial_scores) == (1, 1, 1)
