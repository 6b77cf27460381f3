"""The format registry: every parser by its contract name (DESIGN §4), described as data.

Each entry names the parser class, whether it is a serial stream or a BLE characteristic, and
its default line settings or GATT UUIDs, so the agent, the CLI and the simulators agree.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from device_drivers.base import Parser, UnknownFormatError


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """pyserial line settings for a serial format."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"  # pyserial: N, E, O, M, S
    stopbits: float = 1
    xonxoff: bool = False


@dataclass(frozen=True, slots=True)
class FormatSpec:
    name: str
    kind: str  # "serial" or "ble"
    parser: str  # "module:Class", imported lazily so one broken parser cannot break the rest
    description: str
    serial: SerialSettings | None = None
    ble_service: str | None = None  # 16-bit UUID, e.g. "1810"
    ble_characteristic: str | None = None

    def create(self) -> Parser:
        module_name, _, cls_name = self.parser.partition(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        parser: Parser = cls()
        return parser


FORMATS: dict[str, FormatSpec] = {}


def register(spec: FormatSpec) -> None:
    FORMATS[spec.name] = spec


def get_format(name: str) -> FormatSpec:
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormatError(name, FORMATS) from None


def create_parser(name: str) -> Parser:
    return get_format(name).create()


# --- the formats -----------------------------------------------------------------------------
# Serial line settings: reference/protocols.md §2.

register(
    FormatSpec(
        name="masimo-ascii",
        kind="serial",
        parser="device_drivers.masimo_ascii:MasimoAsciiParser",
        description="Masimo Rad-8 / Radical-5/-7 ASCII 1 serial output, one line per second",
        serial=SerialSettings(baudrate=9600),
    )
)

# BLE formats: one characteristic value per feed (protocols.md §1.1 for the UUIDs; the Heart
# Rate and Glucose service UUIDs 180d/1808 are UNVERIFIED there, Assigned Numbers).
for _name, _cls, _svc, _char, _desc in (
    (
        "ble-blood-pressure",
        "ble_blood_pressure:BloodPressureParser",
        "1810",
        "2a35",
        "Bluetooth Blood Pressure Measurement (0x2A35)",
    ),
    (
        "ble-temperature",
        "ble_temperature:TemperatureParser",
        "1809",
        "2a1c",
        "Bluetooth Health Thermometer Temperature Measurement (0x2A1C)",
    ),
    (
        "ble-plx-spot",
        "ble_plx_spot:PlxSpotCheckParser",
        "1822",
        "2a5e",
        "Bluetooth Pulse Oximeter PLX Spot-check Measurement (0x2A5E)",
    ),
    (
        "ble-plx-continuous",
        "ble_plx_continuous:PlxContinuousParser",
        "1822",
        "2a5f",
        "Bluetooth Pulse Oximeter PLX Continuous Measurement (0x2A5F)",
    ),
    ("ble-heart-rate", "ble_heart_rate:HeartRateParser", "180d", "2a37", "Bluetooth Heart Rate Measurement (0x2A37)"),
    ("ble-weight", "ble_weight:WeightParser", "181d", "2a9d", "Bluetooth Weight Scale Weight Measurement (0x2A9D)"),
    (
        "ble-glucose",
        "ble_glucose:GlucoseParser",
        "1808",
        "2a18",
        "Bluetooth Glucose Measurement (0x2A18), records fetched via RACP",
    ),
):
    register(
        FormatSpec(
            name=_name,
            kind="ble",
            parser=f"device_drivers.{_cls}",
            description=_desc,
            ble_service=_svc,
            ble_characteristic=_char,
        )
    )

# Serial formats (protocols.md §2.2-2.4). Nonin format 2: 9600 8N1 (systole `recording.py`
# opens the Nonin with pyserial's defaults, i.e. 9600 8N1; the Nonin OEM spec is not in the
# reference, so UNVERIFIED beyond that). Contec legacy: 19200 8O1 with XON/XOFF (atbrask-CMS50).
# HL7 v2 over a serial line: 9600 8N1 is a common monitor default; set per device in the config.
register(
    FormatSpec(
        name="nonin-format2",
        kind="serial",
        parser="device_drivers.nonin_format2:NoninFormat2Parser",
        description="Nonin serial data format #2 (5-byte frames, 75/s), one reading per vital per second",
        serial=SerialSettings(baudrate=9600),
    )
)
register(
    FormatSpec(
        name="contec-cms50",
        kind="serial",
        parser="device_drivers.contec_cms50:ContecCms50Parser",
        description="Contec CMS50D+ legacy live stream (5-byte packets, ~60/s), decimated to ~1/s",
        serial=SerialSettings(baudrate=19200, parity="O", xonxoff=True),
    )
)
register(
    FormatSpec(
        name="hl7v2",
        kind="serial",
        parser="device_drivers.hl7v2:Hl7v2Parser",
        description="HL7 v2 ORU^R01 in MLLP framing (LOINC or MDC coded OBX)",
        serial=SerialSettings(baudrate=9600),
    )
)
