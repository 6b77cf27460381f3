"""Nonin, Contec and HL7 simulators: scripted scenarios through the parsers (sans-I/O, fast),
and each simulator over a real pseudo-terminal read with real pyserial on the slave side."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import pytest
import serial

from device_drivers.records import Measurement, Vital
from device_drivers.registry import create_parser, get_format
from device_drivers.simulators import create_simulator, frame_source, patient_timeline

FORMATS = ["nonin-format2", "contec-cms50", "hl7v2"]


def run_scenario(fmt: str, scenario: str, seconds: int = 60) -> tuple[list[Measurement], object]:
    """Drive the frame source for ``seconds`` of patient time, exactly as the pty thread would."""
    source = frame_source(fmt)
    rng = random.Random(1)
    parser = create_parser(fmt)
    out: list[Measurement] = []
    total_delay = 0.0
    for state in itertools.islice(patient_timeline(scenario, seed=1), seconds):
        if state.garbage:
            out += parser.feed(bytes(rng.randrange(256) for _ in range(40)))
        for delay, chunk in source(state, rng):
            total_delay += delay
            out += parser.feed(chunk)
    assert total_delay == pytest.approx(seconds, rel=0.01)  # the device's real pace
    return out, parser


def series(out: list[Measurement], vital: Vital) -> list[float]:
    return [m.value for m in out if m.vital is vital]


@pytest.mark.parametrize("fmt", FORMATS)
def test_normal(fmt: str) -> None:
    out, parser = run_scenario(fmt, "normal")
    spo2 = series(out, Vital.SPO2)
    hr = series(out, Vital.HEART_RATE)
    per_s = 1 if fmt != "hl7v2" else 1 / 12
    assert len(hr) == pytest.approx(60 * per_s, abs=1) and len(spo2) == len(hr)
    assert all(94 <= v <= 100 for v in spo2) and all(60 <= v <= 85 for v in hr)
    assert not parser.stats.rejected  # type: ignore[attr-defined]


@pytest.mark.parametrize("fmt", ["nonin-format2", "contec-cms50"])
def test_desaturation_and_tachycardia(fmt: str) -> None:
    out, _ = run_scenario(fmt, "desaturation")
    assert min(series(out, Vital.SPO2)) <= 87
    out, _ = run_scenario(fmt, "tachycardia")
    assert max(series(out, Vital.HEART_RATE)) >= 130


def test_hl7_scenarios() -> None:
    out, _ = run_scenario("hl7v2", "hypothermia")
    assert min(series(out, Vital.BODY_TEMP)) < 35.0
    out, _ = run_scenario("hl7v2", "desaturation")
    assert min(series(out, Vital.SPO2)) <= 90
    out, _ = run_scenario("hl7v2", "tachycardia")
    assert max(series(out, Vital.HEART_RATE)) >= 120


@pytest.mark.parametrize("fmt", FORMATS)
def test_probe_off(fmt: str) -> None:
    out, parser = run_scenario(fmt, "probe_off")
    rejected = parser.stats.rejected  # type: ignore[attr-defined]
    if fmt == "hl7v2":
        assert rejected["result_not_obtained"] >= 1  # SpO2 sent with status X
    else:
        assert rejected["probe_off"] >= 10  # 10 s off: once per vital per second window
        assert len(series(out, Vital.SPO2)) == pytest.approx(50, abs=2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_garbage_burst_counted_and_recovered(fmt: str) -> None:
    out, parser = run_scenario(fmt, "garbage_burst")
    stats = parser.stats  # type: ignore[attr-defined]
    assert stats.bytes_discarded > 0
    if fmt == "hl7v2":
        assert len(series(out, Vital.HEART_RATE)) == 5
    else:
        assert len(series(out, Vital.HEART_RATE)) >= 50


@pytest.mark.parametrize("fmt", FORMATS)
def test_over_a_real_pty(fmt: str, tmp_path: Path) -> None:
    settings = get_format(fmt).serial
    assert settings is not None
    sim = create_simulator(fmt, link=tmp_path / "dev" / fmt, scenario="normal", speed=12.0).start()
    try:
        port = serial.Serial(
            str(sim.link),
            baudrate=settings.baudrate,
            parity=settings.parity,
            xonxoff=settings.xonxoff,
            timeout=0.05,
        )
        parser = create_parser(fmt)
        out: list[Measurement] = []
        deadline = time.monotonic() + 10.0
        want = 2 if fmt == "hl7v2" else 6
        while time.monotonic() < deadline and len(series(out, Vital.HEART_RATE)) < want:
            out += parser.feed(port.read(4096))
        port.close()
    finally:
        sim.stop()
    assert len(series(out, Vital.HEART_RATE)) >= want
    assert all(94 <= v <= 100 for v in series(out, Vital.SPO2))
