"""`edge-agent decode` (DESIGN §4): every format decodes the reference examples; errors exit 2.

Examples: reference/protocols.md (§1.3-1.9 derived examples, §2.1 Masimo, §2.3 Contec, §2.4 the
HL7 ORU^R01); the Nonin packet is built with the encoder the parser tests round-trip.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from device_drivers import encoders
from device_drivers.registry import FORMATS
from edge_agent.cli import main

HL7_EXAMPLE = (
    b"\x0bMSH|^~\\&|EDGE-AGENT|STATION-07|HIS|DISTRICT|20240601101500+0300||ORU^R01^ORU_R01|MSG000123|P|2.5\r"
    b"PID|1||PAT-4711^^^STATION-07^MR||DOE^JANE||19800101|F\r"
    b"OBR|1||OBS-889|85353-1^Vital signs panel^LN|||20240601101200+0300\r"
    b"OBX|1|NM|8867-4^Heart rate^LN||97|/min^^UCUM|||||F|||20240601101200+0300\r"
    b"OBX|2|NM|9279-1^Respiratory rate^LN||22|/min^^UCUM|||||F|||20240601101200+0300\r"
    b"OBX|3|NM|59408-5^Oxygen saturation in Arterial blood by Pulse oximetry^LN||94|%^^UCUM|||||F|||"
    b"20240601101200+0300\r"
    b"OBX|4|NM|8480-6^Systolic blood pressure^LN|1|118|mm[Hg]^^UCUM|||||F|||20240601101200+0300\r"
    b"OBX|5|NM|8462-4^Diastolic blood pressure^LN|1|76|mm[Hg]^^UCUM|||||F|||20240601101200+0300\r"
    b"OBX|6|NM|8310-5^Body temperature^LN||38.3|Cel^^UCUM|||||F|||20240601101200+0300\r"
    b"\x1c\x0d"
)
MASIMO_EXAMPLE = (
    b"05/14/25 09:12:03 SN=0000012345 SPO2=096% BPM=081 PI=02.40% SPCO=--.-% SPMET=--.-% DESAT=-- "
    b"PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)

CASES = [
    ("ble-blood-pressure", "00 78 00 50 00 5D 00", {"bp_systolic": 120, "bp_diastolic": 80, "bp_mean": 93}),
    ("ble-temperature", "00 77 01 00 FF", {"body_temp": 37.5}),
    ("ble-temperature", "01 DA 03 00 FF", {"body_temp": 37.0}),  # 98.6 °F
    ("ble-plx-spot", "00 61 00 48 00", {"spo2": 97, "heart_rate": 72}),
    ("ble-plx-continuous", "00 60 00 4E 00", {"spo2": 96, "heart_rate": 78}),
    ("ble-heart-rate", "00 48", {"heart_rate": 72}),
    ("ble-weight", "00 B0 36", {"body_weight": 70.0}),
    # flags 0x02 (concentration, kg/L), seq 1, base time 2026-11-23 08:00:00, 90 mg/dL, capillary/finger
    ("ble-glucose", "02 01 00 EA 07 0B 17 08 00 00 5A B0 11", {"glucose": round(90 / 18.016, 2)}),
    ("masimo-ascii", MASIMO_EXAMPLE.hex(), {"spo2": 96, "heart_rate": 81, "perfusion_index": 2.4}),
    ("contec-cms50", "84 3A 05 48 61", {"heart_rate": 72, "spo2": 97}),
    ("nonin-format2", (encoders.nonin_packet(hr=72, spo2=97) * 3).hex(), {"heart_rate": 72, "spo2": 97}),
    (
        "hl7v2",
        HL7_EXAMPLE.hex(),
        {"heart_rate": 97, "resp_rate": 22, "spo2": 94, "bp_systolic": 118, "bp_diastolic": 76, "body_temp": 38.3},
    ),
]


def decode(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, object]], str]:
    code = main(["decode", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_every_contract_format_is_covered_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert {name for name, _, _ in CASES} == set(FORMATS)
    assert len(FORMATS) == 11
    assert main(["decode", "--list"]) == 0
    assert capsys.readouterr().out.split() == sorted(FORMATS)


@pytest.mark.parametrize(("fmt", "hex_bytes", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_reference_examples(
    capsys: pytest.CaptureFixture[str], fmt: str, hex_bytes: str, expected: dict[str, float]
) -> None:
    code, rows, err = decode(capsys, fmt, hex_bytes)
    assert code == 0, err
    got = {str(r["vital"]): r["value"] for r in rows}
    assert {k: pytest.approx(v, abs=0.01) for k, v in expected.items()} == {k: got.get(k) for k in expected}
    assert all({"vital", "value", "unit"} <= set(r) for r in rows)


def test_unknown_format_and_garbage_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = decode(capsys, "ble-toaster", "00")
    assert code == 2 and "unknown format 'ble-toaster'" in err
    code, _, err = decode(capsys, "ble-blood-pressure", "00 78")  # truncated
    assert code == 2 and "nothing decoded" in err
    code, _, err = decode(capsys, "ble-heart-rate", "zz")
    assert code == 2 and "not hex" in err
    code, _, err = decode(capsys, "ble-temperature", "00 FF FF 7F 00")  # FLOAT NaN 0x007FFFFF (protocols.md §1.2)
    assert code == 2 and "special_value" in err


def test_stdin_raw_bytes_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "decode", "masimo-ascii"],
        input=b"noise\x00" + MASIMO_EXAMPLE * 2,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["vital"] for line in proc.stdout.decode().splitlines()] == [
        "spo2",
        "heart_rate",
        "perfusion_index",
    ] * 2
