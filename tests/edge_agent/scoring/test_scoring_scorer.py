"""The scorer end to end: scenarios, partial scores, manual observations, alerts, the store."""

from __future__ import annotations

from typing import Any

import pytest
from scoring_helpers import T0, MakeReading, MakeScorer, at

from device_drivers.records import Quality, Vital
from edge_agent.alerts import Alert, AlertLevel, AlertState
from edge_agent.scoring import ManualObservationError, Scorer
from edge_agent.scoring.registry import ModelRegistry, trusted_keys
from edge_agent.scoring.runtime import RuntimeInfo
from edge_agent.scoring.settings import ScoringSettings
from edge_agent.store import BufferStore


def _kinds(events: list[Alert]) -> dict[str, Alert]:
    return {e.kind: e for e in events}


def _oximeter(
    scorer: Scorer, make: MakeReading, spo2: float, hr: float, seconds: range, **kw: Any
) -> list[list[Alert]]:
    """One on_readings call per second, as the pipeline does after each commit."""
    return [
        scorer.on_readings([make(Vital.SPO2, spo2, s, **kw), make(Vital.HEART_RATE, hr, s, **kw)], at(s))
        for s in seconds
    ]


def test_desaturation_scenario(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    cycles = _oximeter(scorer, make_reading, 85, 88, range(15))
    first = _kinds(cycles[0])
    # NEWS2 within the very first scoring cycle: SpO2 85 on scale 1 = 3 points, a red score.
    assert first["news2"].state == AlertState.RAISED and first["news2"].level is AlertLevel.LOW_MEDIUM
    assert first["news2"].partial and "resp_rate" in first["news2"].missing
    # the sustained event once SpO2 < 90 has lasted its 10 s
    raised_at = [i for i, c in enumerate(cycles) if "desaturation" in _kinds(c)]
    assert raised_at == [10]
    desat = _kinds(cycles[10])["desaturation"]
    assert desat.level is AlertLevel.LOW_MEDIUM and desat.state == AlertState.RAISED
    # raised once: no repeats in the other cycles
    assert sum(len(c) for c in cycles) == 2


def test_fever_scenario(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    events = _kinds(scorer.on_readings([make_reading(Vital.BODY_TEMP, 39.5, 0, device="thermo-1")], at(0)))
    assert events["fever"].level is AlertLevel.LOW and events["fever"].state == AlertState.RAISED
    assert events["news2"].level is AlertLevel.LOW and events["news2"].score == 2  # 39.5 >= 39.1: 2 points
    assert events["news2"].partial


def test_partial_score_is_never_shown_as_normal(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    assert scorer.on_readings([make_reading(Vital.HEART_RATE, 70, 0)], at(0)) == []
    (score,) = scorer.scores()
    assert score.news2_total == 0 and score.news2_partial
    assert set(score.news2_missing) == {
        "resp_rate",
        "spo2",
        "air_oxygen",
        "bp_systolic",
        "consciousness",
        "body_temp",
    }
    assert score.to_json()["news2_partial"] is True


def test_full_set_with_manual_observations_escalates(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    subject = "P-17"
    first = _kinds(_oximeter(scorer, make_reading, 85, 88, range(1), patient=subject)[0])
    assert first["news2"].subject == subject and first["news2"].level is AlertLevel.LOW_MEDIUM
    scorer.set_manual(subject, resp_rate=26, consciousness="V", on_oxygen=True)
    events = _kinds(scorer.tick(at(2)))
    news2 = events["news2"]
    # 3 (SpO2 85) + 3 (RR 26) + 2 (oxygen) + 3 (V) + 0 (HR 88) = 11, still missing SBP and temp
    assert news2.state == AlertState.ESCALATED and news2.level is AlertLevel.HIGH and news2.score == 11
    assert news2.alert_id == first["news2"].alert_id
    assert set(news2.missing) == {"bp_systolic", "body_temp"}
    assert ("consciousness", 2.0, "manual") in news2.inputs


def test_spo2_scale_2_is_only_used_when_set(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scale1 = make_scorer()
    assert "news2" in _kinds(scale1.on_readings([make_reading(Vital.SPO2, 89, 0)], at(0)))
    scale2 = make_scorer()
    scale2.set_manual("device:oxi-1", spo2_scale=2, on_oxygen=False)
    events = _kinds(scale2.on_readings([make_reading(Vital.SPO2, 89, 0)], at(0)))
    assert "news2" not in events  # 88–92 % scores 0 on scale 2; on air 0 too
    assert scale2.scores()[0].news2_total == 0


@pytest.mark.parametrize(
    ("obs", "key"),
    [({"consciousness": "X"}, "consciousness"), ({"resp_rate": 500}, "resp_rate"), ({"spo2_scale": 3}, "spo2_scale"),
     ({"on_oxygen": "yes"}, "on_oxygen"), ({"pulse": 80}, "pulse")],
)  # fmt: skip
def test_manual_observations_are_validated(make_scorer: MakeScorer, obs: dict[str, Any], key: str) -> None:
    with pytest.raises(ManualObservationError) as info:
        make_scorer().set_manual("P-1", **obs)
    assert info.value.key == key


def test_alert_lifecycle_through_the_scorer(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer(renotify_s=60)
    p = "P-9"
    (raised,) = scorer.on_readings([make_reading(Vital.SPO2, 85, 0, patient=p)], at(0))
    assert scorer.tick(at(30)) == []
    (renotified,) = scorer.tick(at(61))
    assert renotified.state == AlertState.RENOTIFIED and renotified.alert_id == raised.alert_id
    acked = scorer.acknowledge(raised.alert_id, "nurse Lan", at(70))
    assert acked.state == AlertState.ACKNOWLEDGED and acked.acks[0].who == "nurse Lan" and acked.acks[0].at == at(70)
    assert scorer.tick(at(200)) == []  # acknowledged: no more re-notifications
    # worse: SBP 85 adds 3 → total 6 = medium: escalates and needs a new acknowledgement
    (esc,) = scorer.on_readings([make_reading(Vital.BP_SYSTOLIC, 85, 210, device="bp-1", patient=p)], at(210))
    assert esc.alert_id == raised.alert_id
    assert esc.state == AlertState.ESCALATED and esc.level is AlertLevel.MEDIUM and not esc.acknowledged
    (again,) = scorer.tick(at(271))
    assert again.state == AlertState.RENOTIFIED
    # recovered values: cleared only once SpO2 and SBP are both re-measured
    assert scorer.on_readings([make_reading(Vital.SPO2, 97, 280, patient=p)], at(280)) == []
    (cleared,) = scorer.on_readings([make_reading(Vital.BP_SYSTOLIC, 125, 281, device="bp-1", patient=p)], at(281))
    assert cleared.state == AlertState.CLEARED and cleared.clear_reason == "resolved"
    assert cleared.acks == acked.acks  # the trail is kept
    assert scorer.status()["open_alerts"] == 0
    assert scorer.tick(at(1000)) == []


def test_missing_values_do_not_clear_an_alert(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer(window_s=120, stale_clear_s=3600)
    scorer.on_readings([make_reading(Vital.SPO2, 85, 0), make_reading(Vital.HEART_RATE, 80, 0)], at(0))
    # the oximeter stops sending SpO2; only heart rate keeps coming (normal): not resolved
    for s in range(200, 400, 50):
        scorer.on_readings([make_reading(Vital.HEART_RATE, 80, s)], at(s))
    assert scorer.status()["open_alerts"] == 1
    # nothing at all for longer than stale_clear_s: cleared as stale
    events = scorer.tick(at(400 + 3601))
    assert [e.clear_reason for e in events] == ["stale: no values"]


def test_bp_crisis(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    events = _kinds(
        scorer.on_readings(
            [
                make_reading(Vital.BP_SYSTOLIC, 186, 0, device="bp-1"),
                make_reading(Vital.BP_DIASTOLIC, 100, 0, device="bp-1"),
            ],
            at(0),
        )
    )
    crisis = events["bp_crisis"]
    assert crisis.level is AlertLevel.MEDIUM and not crisis.partial and crisis.causes == ("bp_systolic",)
    assert scorer.scores()[0].bp_category == "grade-2-hypertension"
    cleared = _kinds(
        scorer.on_readings(
            [
                make_reading(Vital.BP_SYSTOLIC, 150, 60, device="bp-1"),
                make_reading(Vital.BP_DIASTOLIC, 95, 60, device="bp-1"),
            ],
            at(60),
        )
    )
    assert cleared["bp_crisis"].state == AlertState.CLEARED
    assert scorer.scores()[0].bp_category == "grade-1-hypertension"


def test_artefacts_are_not_scored(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer()
    bad = make_reading(Vital.SPO2, 70, 0, flags=frozenset({Quality.PROBE_OFF}))
    assert scorer.on_readings([bad], at(0)) == []


def test_old_values_fall_out_of_the_window(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer(window_s=300)
    old = make_reading(Vital.SPO2, 85, 0)
    assert scorer.on_readings([old], at(301)) == []  # measured 301 s ago: not "latest within window"


def test_runtime_unavailable_is_reported_and_events_still_work(make_reading: MakeReading) -> None:
    runtime = RuntimeInfo(None, "", "onnxruntime crashed on import with SIGILL")
    reg = ModelRegistry(runtime=runtime, trusted=trusted_keys((), allow_dev_key=True))
    scorer = Scorer(registry=reg, runtime=runtime, store=None, clock=lambda: T0, settings=ScoringSettings())
    status = scorer.status()
    assert status["available"] is False and "SIGILL" in str(status["error"]) and "unavailable" in str(status["error"])
    events = _kinds(scorer.on_readings([make_reading(Vital.BODY_TEMP, 39.5, 0)], at(0)))
    assert "fever" in events and "news2" not in events


def test_no_news2_model_is_reported(make_scorer: MakeScorer, tmp_path: Any) -> None:
    scorer = make_scorer(models_dir=tmp_path)  # an empty directory
    status = scorer.status()
    assert status["available"] is False and "no NEWS2 model" in str(status["error"])


def test_status_lists_models(make_scorer: MakeScorer) -> None:
    status = make_scorer().status()
    assert status["available"] is True and status["error"] == ""
    models = {m["id"]: m for m in status["models"]}  # type: ignore[union-attr]
    assert models["news2"]["version"] == "2.0.0" and len(models["news2"]["sha256"]) == 12
    assert status["dev_key_trusted"] is True


def test_alerts_go_to_the_real_store_and_survive_a_restart(
    make_scorer: MakeScorer, make_reading: MakeReading, real_store: BufferStore
) -> None:
    scorer = make_scorer(store=real_store)
    events = _oximeter(scorer, make_reading, 85, 88, range(11))
    raised = [e for c in events for e in c]
    assert {e.kind for e in raised} == {"news2", "desaturation"}
    saved = {a["alert_id"]: a for a in real_store.load_alerts(open_only=True)}
    assert set(saved) == {e.alert_id for e in raised}
    news2 = next(e for e in raised if e.kind == "news2")
    scorer.acknowledge(news2.alert_id, "nurse Hoa", at(12))
    saved = {a["alert_id"]: a for a in real_store.load_alerts()}
    assert saved[news2.alert_id]["acks"][0]["who"] == "nurse Hoa"  # type: ignore[index]
    # restart: a new scorer on the same store adopts the open alerts instead of raising new ones
    again = make_scorer(store=real_store)
    assert again.status()["open_alerts"] == 2
    assert again.on_readings([make_reading(Vital.SPO2, 85, 13)], at(13)) == []
    (cleared,) = [e for e in again.on_readings([make_reading(Vital.SPO2, 97, 14)], at(14)) if e.kind == "desaturation"]
    assert cleared.state == AlertState.CLEARED
    # SpO2 97 resolves NEWS2 too (its only cause, SpO2, was re-measured and scores 0)
    assert real_store.load_alerts(open_only=True) == []
    assert {a["state"] for a in real_store.load_alerts()} == {"cleared"}


class _BrokenStore:
    def save_alert(self, alert_id: str, payload: dict[str, object], *, updated_at: Any) -> None:
        raise OSError("disk full")

    def load_alerts(self, *, open_only: bool = False) -> list[dict[str, object]]:
        raise OSError("unreadable")


def test_store_failures_are_counted_not_fatal(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    scorer = make_scorer(store=_BrokenStore())
    events = scorer.on_readings([make_reading(Vital.SPO2, 85, 0)], at(0))
    assert events  # still shown to the nurse
    assert scorer.status()["store_errors"] == 2  # the restore and the save


def test_restart_resumes_from_the_stored_window(
    make_scorer: MakeScorer, make_reading: MakeReading, real_store: BufferStore
) -> None:
    # 11 s of SpO2 85 committed before the restart (no scorer saw them)
    real_store.submit([make_reading(Vital.SPO2, 85, s) for s in range(11)]).result(timeout=10)
    scorer = make_scorer(store=real_store)
    assert scorer.status()["subjects"] == 1
    events = _kinds(scorer.on_readings([make_reading(Vital.SPO2, 85, 11)], at(11)))
    assert events["desaturation"].state == AlertState.RAISED  # the run started before the restart


def test_a_wrong_device_clock_does_not_hide_a_value(make_scorer: MakeScorer, make_reading: MakeReading) -> None:
    import dataclasses
    from datetime import timedelta

    scorer = make_scorer()
    r = make_reading(Vital.SPO2, 84, 0)
    skewed = dataclasses.replace(r, measured_at=r.measured_at - timedelta(days=400), clock_from_device=True)
    assert "news2" in _kinds(scorer.on_readings([skewed], at(0)))


def test_settings_are_validated() -> None:
    from edge_agent.scoring import ScoringSettingsError

    with pytest.raises(ScoringSettingsError) as info:
        ScoringSettings(window_s=30)  # shorter than the 60 s heart-rate events
    assert info.value.key == "window_s"
    with pytest.raises(ScoringSettingsError) as info:
        ScoringSettings(spo2_scale_default=3)
    assert info.value.key == "spo2_scale_default"
    with pytest.raises(ScoringSettingsError) as info:
        ScoringSettings(desaturation_s=-1)
    assert info.value.key == "desaturation_s"
    durations = {r.kind: r.duration_s for r in ScoringSettings(desaturation_s=5).event_rules()}
    assert durations["desaturation"] == 5 and durations["tachycardia"] == 60
