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
