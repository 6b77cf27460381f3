"""Build the BLE capture files in this folder from the spec layouts (``python -m
device_drivers.captures.make_captures``). The files are CONSTRUCTED, not recorded from real
devices: no public recordings were found. See README.md for what each one contains."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from device_drivers import encoders as enc

HERE = Path(__file__).parent
MORNING = datetime(2026, 11, 23, 1, 20, 0, tzinfo=UTC)  # 08:20 in Viet Nam


def ev(t: float, char: str, data: bytes, op: str | None = None) -> dict[str, object]:
    e: dict[str, object] = {"t": t, "char": char, "hex": data.hex()}
    if op:
        e["op"] = op
    return e


def bp_cuff() -> list[dict[str, object]]:
    nan = enc.sfloat_special(0x07FF)
    out = [
        # a stored reading from yesterday evening, sent on connect (with its own timestamp)
        ev(
            0.4,
            "2a35",
            enc.blood_pressure(
                138, 88, 105, timestamp=MORNING - timedelta(hours=13), pulse=81, user_id=1, status=0x0000
            ),
        ),
    ]
    # intermediate cuff pressure while inflating/deflating (0x2A36; same layout, NaN dia/MAP):
    # the link does not subscribe to it, so these are skipped, as with a real cuff.
    for i, p in enumerate([20, 60, 110, 160, 175, 150, 130, 110, 95, 80]):
        out.append(ev(2.0 + i * 1.5, "2a36", enc.blood_pressure(p, nan, nan, pulse=0)))
    out.append(
        ev(
            18.0,
            "2a35",
            enc.blood_pressure(128, 84, 99, timestamp=MORNING, pulse=76, user_id=1, status=0x0000),
        )
    )
    # a second measurement two minutes later, body movement detected
    out.append(
        ev(
            140.0,
            "2a35",
            enc.blood_pressure(
                131, 85, 100, timestamp=MORNING + timedelta(minutes=2), pulse=79, user_id=1, status=0x0001
            ),
        )
    )
    return out


def thermometer() -> list[dict[str, object]]:
    out = []
    # intermediate temperature (0x2A1E) while the probe settles; not subscribed
    for i, c in enumerate([35.1, 36.4, 37.2, 37.6]):
        out.append(ev(0.5 + i * 0.5, "2a1e", enc.temperature(c, temp_type=3)))
    out.append(ev(3.0, "2a1c", enc.temperature(37.8, timestamp=MORNING, temp_type=3)))  # ear
    # the same nurse re-measures in Fahrenheit mode (device set to degF)
    out.append(
        ev(
            30.0,
            "2a1c",
            enc.temperature(100.2, fahrenheit=True, timestamp=MORNING + timedelta(seconds=27), temp_type=3),
        )
    )
    return out


def scale() -> list[dict[str, object]]:
    # Weight Scale Feature: bit 0 timestamp, bit 2 BMI supported, weight resolution code 4
    # (0.05 kg), height resolution code 3 (0.001 m).
    feature = (0x01 | 0x04 | (4 << 3) | (3 << 7)).to_bytes(4, "little")
    return [
        ev(0.0, "2a9e", feature, op="read"),
        ev(4.0, "2a9d", enc.weight(0xFFFF, timestamp=MORNING, user_id=1)),  # stepped off too early
        ev(
            12.0,
            "2a9d",
            enc.weight(1369, timestamp=MORNING + timedelta(seconds=8), user_id=1, bmi_height=(243, 1680)),
        ),  # 68.45 kg, BMI 24.3, 1.680 m
    ]


def glucose_meter() -> list[dict[str, object]]:
    # Three stored records sent after the RACP "report stored records: all" request, then the
    # RACP response indication (op 0x06 response code, operator 0x00, request op 0x01,
    # 0x01 success: GLS RACP layout, UNVERIFIED in protocols.md).
    recs = [
        (41, MORNING - timedelta(days=1, hours=2), enc.glucose_mg_dl(104), 0),
        (42, MORNING - timedelta(hours=14), enc.glucose_mg_dl(162), 0),
        (43, MORNING, enc.glucose_mmol_l(6.1), 1),
    ]
    out = [
        ev(
            0.3 + i * 0.2,
            "2a18",
            enc.glucose(seq, when, concentration=conc, mol_per_l=bool(mol), time_offset=0),
        )
        for i, (seq, when, conc, mol) in enumerate(recs)
    ]
    out.append(ev(1.2, "2a52", bytes([0x06, 0x00, 0x01, 0x01])))
    return out


FILES = {
    "bp_cuff.json": bp_cuff,
    "thermometer.json": thermometer,
    "scale.json": scale,
    "glucose_meter.json": glucose_meter,
}


def main() -> None:
    for name, build in FILES.items():
        (HERE / name).write_text(json.dumps(build(), indent=1) + "\n")


if __name__ == "__main__":
    main()
