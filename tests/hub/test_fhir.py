"""FHIR R4 export: every resource validated with ``fhir.resources`` (its R4B models: fhir.resources
8 ships R5 by default, R4B and STU3 as subpackages, no plain R4; Observation and Bundle are
structurally the same in R4 and R4B) plus the R4 vital-signs profile's rules that a structural
validator does not check (vs-1, vs-2, obs-6, obs-7, categories, codes, UCUM, no empty arrays)."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.records import VITALS, Quality, Vital
from hub.cli import main
from hub.fhir import (
    BHYT_SYSTEM,
    CCCD_SYSTEM,
    ExportStats,
    FhirSettings,
    observations,
    patient_identifier,
    write_bundle,
    write_ndjson,
)
from hub.store import StoredReading, open_store
from tests.hub.helpers import T0, reading

GW = "gw-0001"
OBS_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"


def stored(r: Any, gateway_id: str = GW) -> StoredReading:
    return StoredReading(r, gateway_id, "batch-1", T0 + timedelta(hours=1))


def no_empty(value: object, path: str = "") -> None:
    """FHIR JSON: no empty arrays, objects or strings anywhere."""
    if isinstance(value, dict):
        assert value, f"empty object at {path}"
        for k, v in value.items():
            no_empty(v, f"{path}.{k}")
    elif isinstance(value, list):
        assert value, f"empty array at {path}"
        for i, v in enumerate(value):
            no_empty(v, f"{path}[{i}]")
    elif isinstance(value, str):
        assert value.strip(), f"empty string at {path}"


def check_observation(o: dict[str, Any]) -> Observation:
    """Structural R4(B) validation, then the vital-signs profile's invariants."""
    model = Observation.model_validate(o)
    no_empty(o)
    assert o["status"] in OBS_STATUS
    assert o["identifier"] and all(i["system"].startswith(("http://", "https://", "urn:")) for i in o["identifier"])
    cats = [c["code"] for cat in o["category"] for c in cat["coding"] if c["system"] == CATEGORY_SYSTEM]
    assert cats, "category 1..*"
    assert o["subject"]["identifier"]["value"] and o["subject"]["type"] == "Patient"
    effective = o["effectiveDateTime"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T.+", effective), "vs-1: at least day precision"
    has_value = any(k.startswith("value") for k in o)
    assert not (has_value and "dataAbsentReason" in o), "obs-6"
    if "component" not in o and "hasMember" not in o:
        assert has_value or "dataAbsentReason" in o, "vs-2"
    for q in [o.get("valueQuantity"), *[c.get("valueQuantity") for c in o.get("component", [])]]:
        if q is not None:
            assert q["system"] == "http://unitsofmeasure.org" and q["code"] and math.isfinite(q["value"])
    codes = {c["code"] for c in o["code"]["coding"]}
    for comp in o.get("component", []):
        assert not codes & {c["code"] for c in comp["code"]["coding"]}, "obs-7"
        assert ("valueQuantity" in comp) != ("dataAbsentReason" in comp), "vs-3"
    if "vital-signs" in cats:
        assert o["meta"]["profile"][0].startswith("http://hl7.org/fhir/StructureDefinition/")
    return model


def bp(seq: int, vital: Vital, value: float, **kw: Any) -> Any:
    return reading(GW, seq, vital=vital, value=value, device_id="bp-1", at=T0, **kw)


def test_each_vital_maps_to_its_loinc_ucum_and_category() -> None:
    for i, vital in enumerate(v for v in Vital if v not in (Vital.BP_SYSTOLIC, Vital.BP_DIASTOLIC)):
        spec = VITALS[vital]
        [o] = list(observations([stored(reading(GW, i, vital=vital, value=(spec.low + spec.high) / 2))]))
        check_observation(o)
        assert o["code"]["coding"][0] == {
            "system": "http://loinc.org",
            "code": spec.loinc,
            "display": o["code"]["coding"][0]["display"],
        }
        assert o["valueQuantity"]["code"] == spec.unit
        category = o["category"][0]["coding"][0]["code"]
        expected = {"glucose": "laboratory", "perfusion_index": "exam"}.get(str(vital), "vital-signs")
        assert category == expected, vital
        assert o["identifier"] == [{"system": FhirSettings().reading_uid_system, "value": f"{GW}:{i}"}]


def test_spo2_carries_the_pulse_oximetry_coding_and_profile() -> None:
    [o] = list(observations([stored(reading(GW, 1, vital=Vital.SPO2, value=96.0))]))
    assert [c["code"] for c in o["code"]["coding"]] == ["2708-6", "59408-5"]
    assert o["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/oxygensat"]


def test_blood_pressure_becomes_one_panel_with_components() -> None:
    parts = [bp(1, Vital.BP_SYSTOLIC, 128.0), bp(2, Vital.BP_DIASTOLIC, 84.0), bp(3, Vital.BP_MEAN, 99.0)]
    stats = ExportStats()
    [o] = list(observations([stored(p) for p in parts], stats=stats))
    check_observation(o)
    assert o["code"]["coding"][0]["code"] == "85354-9"
    assert o["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]
    assert "valueQuantity" not in o
    comps = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in o["component"]}
    assert comps["8480-6"]["value"] == 128.0 and comps["8480-6"]["code"] == "mm[Hg]"
    assert comps["8462-4"]["value"] == 84.0
    assert comps["8478-0"]["value"] == 99.0
    assert [i["value"] for i in o["identifier"]] == [f"{GW}:1", f"{GW}:2", f"{GW}:3"]
    assert o["device"]["identifier"]["value"] == f"{GW}/bp-1"
    assert o["performer"][0]["identifier"]["value"] == GW
    assert (stats.readings, stats.observations, stats.panels) == (3, 1, 1)


def test_panel_waits_for_interleaved_readings_of_other_devices() -> None:
    rs = [
        bp(1, Vital.BP_SYSTOLIC, 120.0),
        reading(GW, 2, vital=Vital.HEART_RATE, value=70.0, device_id="oximeter-1"),
        bp(3, Vital.BP_DIASTOLIC, 80.0),
    ]
    out = list(observations([stored(r) for r in rs]))
    codes = sorted(o["code"]["coding"][0]["code"] for o in out)
    assert codes == ["85354-9", "8867-4"]


def test_two_measurements_at_different_times_are_two_panels_and_lone_parts_are_handled() -> None:
    later = T0 + timedelta(minutes=5)
    rs = [
        bp(1, Vital.BP_SYSTOLIC, 120.0),
        bp(2, Vital.BP_DIASTOLIC, 80.0),
        reading(GW, 3, vital=Vital.BP_SYSTOLIC, value=150.0, device_id="bp-1", at=later),  # no diastolic
        reading(GW, 200, vital=Vital.BP_MEAN, value=95.0, device_id="bp-2", at=later),  # mean alone
    ]
    out = list(observations([stored(r) for r in rs]))
    for o in out:
        check_observation(o)
    panels = [o for o in out if o["code"]["coding"][0]["code"] == "85354-9"]
    assert len(panels) == 2
    lone = next(p for p in panels if p["effectiveDateTime"].startswith(later.isoformat()[:16]))
    dia = next(c for c in lone["component"] if c["code"]["coding"][0]["code"] == "8462-4")
    assert dia["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    [mean] = [o for o in out if o["code"]["coding"][0]["code"] == "8478-0"]
    assert mean["valueQuantity"]["value"] == 95.0


def test_readings_far_apart_in_sequence_do_not_pair() -> None:
    rs = [bp(1, Vital.BP_SYSTOLIC, 120.0), bp(1 + 65, Vital.BP_DIASTOLIC, 80.0)]
    out = list(observations([stored(r) for r in rs]))
    assert len(out) == 2


@pytest.mark.parametrize(
    ("value", "reason"),
    [(math.nan, "not-a-number"), (math.inf, "positive-infinity"), (-math.inf, "negative-infinity")],
)
def test_special_values_become_data_absent_reason(value: float, reason: str) -> None:
    [o] = list(observations([stored(reading(GW, 1, value=value))]))
    check_observation(o)
    assert "valueQuantity" not in o
    assert o["dataAbsentReason"]["coding"][0]["code"] == reason


def test_patient_identifier_systems_follow_vn_core_and_are_configurable() -> None:
    s = FhirSettings()
    assert patient_identifier("079085001234", s)["system"] == CCCD_SYSTEM
    assert patient_identifier("DN4010123456789", s)["system"] == BHYT_SYSTEM
    assert patient_identifier("P-0001", s)["system"] == s.patient_system
    custom = FhirSettings(
        cccd_system="urn:oid:1.2.3", bhyt_system="urn:oid:4.5.6", system_base="https://so-y-te.example/sid/"
    )
    assert patient_identifier("079085001234", custom)["system"] == "urn:oid:1.2.3"
    assert patient_identifier("DN4010123456789", custom)["system"] == "urn:oid:4.5.6"
    [o] = list(observations([stored(reading(GW, 1))], custom))
    assert o["identifier"][0]["system"] == "https://so-y-te.example/sid/reading-uid"


def test_unassigned_readings_are_skipped_and_counted() -> None:
    stats = ExportStats()
    out = list(observations([stored(reading(GW, 1, patient_id=None)), stored(reading(GW, 2))], stats=stats))
    assert len(out) == 1 and stats.skipped_unassigned == 1


def test_quality_flags_become_a_note() -> None:
    r = reading(GW, 1, flags=frozenset({Quality.DEVICE_ARTEFACT, Quality.CLOCK_UNSYNCED}))
    [o] = list(observations([stored(r)]))
    assert o["note"] == [{"text": "quality flags: clock_unsynced, device_artefact"}]


def test_ids_are_stable_and_distinct() -> None:
    a = list(observations([stored(reading(GW, 1)), stored(reading(GW, 2))]))
    b = list(observations([stored(reading(GW, 1)), stored(reading(GW, 2))]))
    assert [o["id"] for o in a] == [o["id"] for o in b]
    assert len({o["id"] for o in a}) == 2
    assert all(re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", o["id"]) for o in a)


def test_bundle_is_a_valid_transaction_with_conditional_creates() -> None:
    rs = [stored(reading(GW, i, value=90.0 + i)) for i in range(3)] + [
        stored(bp(10, Vital.BP_SYSTOLIC, 120.0)),
        stored(bp(11, Vital.BP_DIASTOLIC, 80.0)),
    ]
    buf = io.StringIO()
    n = write_bundle(observations(rs), buf, now=T0)
    doc = json.loads(buf.getvalue())
    Bundle.model_validate(doc)
    no_empty(doc)
    assert n == 4 and doc["type"] == "transaction" and len(doc["entry"]) == 4
    for entry in doc["entry"]:
        check_observation(entry["resource"])
        uid = entry["resource"]["identifier"][0]
        assert entry["request"] == {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier={uid['system']}|{uid['value']}",
        }
        assert entry["fullUrl"].startswith("urn:uuid:")
    assert len({e["fullUrl"] for e in doc["entry"]}) == 4


def test_empty_bundle_has_no_empty_entry_array() -> None:
    buf = io.StringIO()
    assert write_bundle([], buf, now=T0) == 0
    doc = json.loads(buf.getvalue())
    Bundle.model_validate(doc)
    assert "entry" not in doc


def test_ndjson_is_one_valid_observation_per_line() -> None:
    buf = io.StringIO()
    n = write_ndjson(observations([stored(reading(GW, i)) for i in range(5)]), buf)
    lines = buf.getvalue().splitlines()
    assert n == 5 and len(lines) == 5
    for line in lines:
        check_observation(json.loads(line))


_vitals = st.sampled_from(list(Vital))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            _vitals,
            st.floats(allow_nan=True, allow_infinity=True, width=32),
            st.sampled_from(["bp-1", "oximeter-1", "thermo-1"]),
            st.integers(0, 3),
            st.sampled_from(["079085001234", "DN4010123456789", "P-7", None]),
        ),
        max_size=40,
    )
)
def test_any_mix_of_readings_exports_valid_resources_and_loses_none(rows: list[tuple[Any, ...]]) -> None:
    rs = [
        stored(reading(GW, seq, vital=v, value=float(x), device_id=d, at=T0 + timedelta(seconds=t), patient_id=p))
        for seq, (v, x, d, t, p) in enumerate(rows)
    ]
    stats = ExportStats()
    out = list(observations(rs, stats=stats))
    seen: list[str] = []
    for o in out:
        check_observation(o)
        seen += [i["value"] for i in o["identifier"]]
    expected = sorted(s.reading.uid for s in rs if s.reading.patient_id is not None)
    assert sorted(seen) == expected  # every assigned reading exactly once
    assert stats.skipped_unassigned == sum(1 for s in rs if s.reading.patient_id is None)


# -- the command -------------------------------------------------------------------------------


def _fill(store_spec: str) -> None:
    with open_store(store_spec) as s:
        s.ingest(GW, "b-old", [reading(GW, i) for i in range(3)], now=T0)
        s.ingest(
            GW,
            "b-new",
            [bp(10, Vital.BP_SYSTOLIC, 120.0), bp(11, Vital.BP_DIASTOLIC, 80.0), reading(GW, 12, patient_id=None)],
            now=T0 + timedelta(days=1),
        )


def test_export_command_ndjson_and_since(store_spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(store_spec)
    assert main(["export", "--fhir", "--store", store_spec, "--json"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4
    for o in lines:
        check_observation(o)
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["readings"] == 6 and summary["observations"] == 4 and summary["skipped_unassigned"] == 1
    assert main(["export", "--fhir", "--store", store_spec, "--since", (T0 + timedelta(hours=1)).isoformat()]) == 0
    out, err = capsys.readouterr()
    [panel] = [json.loads(line) for line in out.splitlines()]
    assert panel["code"]["coding"][0]["code"] == "85354-9"
    assert "1 readings without a patient skipped" in err


def test_export_command_bundle(store_spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(store_spec)
    assert main(["export", "--fhir", "--store", store_spec, "--format", "bundle"]) == 0
    out, _ = capsys.readouterr()
    doc = json.loads(out)
    Bundle.model_validate(doc)
    assert len(doc["entry"]) == 4


def test_export_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--store", str(tmp_path)]) == 2  # --fhir is required
    assert main(["export", "--fhir", "--store", str(tmp_path), "--since", "yesterday"]) == 2
    assert main(["export", "--fhir", "--store", str(tmp_path / "none")]) == 78  # no store there
    assert not (tmp_path / "none").exists()


def test_console_script_help_teaches() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from hub.cli import main; raise SystemExit(main())", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for word in ("serve", "export", "fleet", "postgresql://", "exit codes", "78"):
        assert word in done.stdout
