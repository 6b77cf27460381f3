"""Alerts reach the alert lane through futures, from the model scorer and the SpO2 safety net alike,
on a real encrypted store; the log line names the alert, never the patient."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device_drivers.records import Reading, Vital
from edge_agent.alert_recorder import AlertRecorder
from edge_agent.safety_net import ScorerWithSafetyNet, SpO2SafetyNet
from edge_agent.scoring import build_scorer
from edge_agent.scoring.settings import ScoringSettings
from edge_agent.store import BufferStore
from tests.fixtures import real_store

T0 = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)  # any date: the clock is pinned


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BufferStore]:
    with real_store(tmp_path, gateway_id="gw-rec", clock=lambda: T0) as s:
        yield s


def spo2(seq: int, value: float, patient: str = "PATIENT-777") -> Reading:
    return Reading(
        uid=f"gw-rec:{seq}",
        seq=seq,
        vital=Vital.SPO2,
        value=value,
        unit="%",
        measured_at=T0 + timedelta(seconds=seq),
        received_at=T0 + timedelta(seconds=seq),
        device_id="ox-1",
        source_format="masimo-ascii",
        clock_from_device=True,
        patient_id=patient,
    )


def test_safety_net_alerts_are_saved_in_the_alert_lane(
    store: BufferStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With no usable model (an empty models dir) the SpO2 safety net alerts; its alerts are
    committed like every other alert, and their log lines carry no patient id or value."""
    recorder = AlertRecorder(store)
    empty = tmp_path / "no-models"
    empty.mkdir()
    settings = ScoringSettings(probe_runtime=False, pushed_models_dir=tmp_path / "pushed")
    scorer = build_scorer(models_dir=empty, store=recorder, settings=settings, clock=lambda: T0)
    assert not scorer.status()["available"]
    both = ScorerWithSafetyNet(scorer, SpO2SafetyNet(90.0), recorder)
    with caplog.at_level(logging.INFO, logger="edge_agent.alerts"):
        raised = both.on_readings([spo2(1, 84.0)], T0)
        cleared = both.on_readings([spo2(2, 97.0)], T0 + timedelta(seconds=5))
    assert [a.state for a in raised + cleared] == ["raised", "cleared"]
    for f in recorder.pending_futures():
        f.result(timeout=10)
    saved = store.load_alerts()
    assert [(a["alert_id"], a["state"]) for a in saved] == [(raised[0].alert_id, "cleared")]
    assert recorder.status()["alerts_saved"] == 2 and recorder.status()["alert_save_errors"] == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "event=alert_raised" in text and "event=alert_cleared" in text
    assert "PATIENT-777" not in text and "84 %" not in text and "84.0" not in text


def test_a_failed_save_is_counted_not_raised(store: BufferStore) -> None:
    recorder = AlertRecorder(store)
    store.close()  # every submission now fails
    assert recorder.save_alert("a-1", {"alert_id": "a-1", "state": "raised"}, updated_at=T0) is None
    assert recorder.status()["alert_save_errors"] == 1
