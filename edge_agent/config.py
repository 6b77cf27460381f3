"""The agent's one typed configuration object, loaded from TOML and validated once at start.

Every error names the key that is wrong (``devices[1].format: unknown format 'foo'``) on one
line, and the CLI turns :class:`ConfigError` into its config-error exit code. Below the loader
nothing sees a raw dict. Every numeric key has a finite range, kept in :data:`NUMBER_RULES`;
``docs/config.md`` documents each key (tests/test_docs.py checks it against that table), and
``edge_agent/example-config.toml`` is a working example.

The dataclasses themselves do not re-validate (code and tests build them directly, e.g. a tiny
``StoreConfig(quota_mb=0.5)``); the loader is the gate for what an operator writes.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device_drivers.ble import CAPTURES_DIR, load_capture
from device_drivers.registry import FORMATS
from device_drivers.simulators import FRAME_SOURCES, SCENARIOS
from edge_agent.alerts import AlertLevel
from edge_agent.scoring.settings import (
    DAY,
    SCORING_RANGES,
    Bounds,
    ScoringSettings,
    ScoringSettingsError,
    number_problem,
)
from wire.address import broker_address

CONFIG_VERSION = 1

T = TypeVar("T")

# Characters that would split a message over lines (str.splitlines breaks on all of these).
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def one_line(text: str) -> str:
    """``text`` with every control or line-break character escaped, so it prints as one line."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if ch in _LINE_BREAKS or unicodedata.category(ch) in ("Cc", "Zl", "Zp")
        else ch
        for ch in text
    )


class ConfigError(Exception):
    """The configuration is wrong; ``key`` is the dotted path of the offending key ("" for the
    file as a whole). ``str(error)`` is always one line: ``key: message``."""

    def __init__(self, key: str, message: str) -> None:
        key = one_line(key)
        super().__init__(one_line(f"{key}: {message}" if key else message))
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    id: str
    province: str
    state_dir: Path
    station_name: str = ""
    # The station's time zone (IANA name): BLE devices' clocks are set in it (Current Time) and
    # read back in it, and the nurse's views show it. Storage and sync are always UTC.
    timezone: str = "Asia/Ho_Chi_Minh"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device at the station.

    ``transport`` is ``serial`` (``port`` is a path such as ``/dev/serial/by-id/...``, a pyserial
    URL such as ``socket://host:port``, or ``usb:VID:PID``), ``ble`` (``address``, a replayed
    capture ``replay:<capture>.json``, or discovery by the format's service UUID) or
    ``simulated`` (a built-in serial simulator on a pseudo-terminal; ``scenario`` picks its
    script).
    """

    id: str
    format: str
    transport: str
    port: str = ""
    address: str = ""
    scenario: str = "normal"
    baudrate: int | None = None
    silent_after_s: float = 30.0
    speed: float = 1.0  # simulated devices and BLE replays only: time compression (2 = twice the pace)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    retention_days: float = 7.0
    quota_mb: float = 512.0
    group_commit_ms: float = 1000.0  # the longest commit window; shorter under load (store/writer.py)
    # the longest a committed reading of a continuous stream waits for its fsync: a power cut loses
    # at most this much of them (spot checks are fsynced at once). Issue 14: an fsync re-writes the
    # WAL's last 4 KiB page, so one a second cost ~750 B/reading; 5 s -> 15 s took the demo's load
    # from 827 to 716 B per reading (bench_station, 180 s windows). README "The offline buffer".
    fsync_window_ms: float = 15000.0
    keystore: Path | None = None  # default: <state_dir>/keystore.json


@dataclass(frozen=True, slots=True)
class AlertConfig:
    spo2_low: float = 90.0  # the SpO2 safety net (edge_agent/safety_net.py) while models are unavailable


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    status_interval_s: float = 30.0
    retention_interval_s: float = 3600.0


# MQTT's own limits: Keep Alive is a two-byte integer, Session Expiry Interval a four-byte one
# (0xFFFFFFFF: the session never expires).
MQTT_MAX_KEEPALIVE = 65_535
MQTT_SESSION_NEVER_EXPIRES = 4_294_967_295


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """``[sync]``: the MQTT link to the provincial hub (DESIGN §5). No ``[sync]`` table: the
    gateway runs offline and every reading stays pending.

    ``broker`` is ``mqtts://host[:port]`` (TLS only; port 8883 by default). ``ca`` verifies the
    broker, ``cert``/``key`` are the gateway's client certificate (CN = gateway id) and its key,
    ``hub_keys`` is the hub's public keys JSON (sealing and ack-signing keys). Batches hold at
    most ``batch_max`` readings and wait at most ``batch_max_age_s`` for more; at most
    ``in_flight`` are sent and not yet acknowledged by the hub. ``renew_before_days``: the
    certificate is renewed through the hub when it expires within that many days (0: never;
    docs/provisioning.md, "Certificate renewal")."""

    broker: str
    ca: Path
    cert: Path
    key: Path
    hub_keys: Path
    batch_max: int = 500
    batch_max_age_s: float = 5.0
    in_flight: int = 4
    heartbeat_s: float = 60.0
    keepalive_s: int = 60
    session_expiry_s: int = 7 * 24 * 3600
    renew_before_days: int = 30

    @property
    def host(self) -> str:
        return broker_address(self.broker)[0]

    @property
    def port(self) -> int:
        return broker_address(self.broker)[1]


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """``[dashboard]``: the nurse's web page, served by the agent (docs/dashboard.md). No
    ``[dashboard]`` table: no page. ``host`` is the address to listen on (``127.0.0.1``: this
    machine only; the station LAN address, or ``0.0.0.0``, for tablets). Sessions last
    ``session_ttl_s`` from login. ``pin_file`` holds the station PIN's scrypt hash, written by
    ``edge-agent set-pin`` (default ``<state_dir>/dashboard-pin``). Times are shown in
    ``[gateway].timezone``."""

    host: str = "127.0.0.1"
    port: int = 8080
    session_ttl_s: float = 8 * 3600.0
    pin_file: Path | None = None


@dataclass(frozen=True, slots=True)
class AgentConfig:
    version: int
    gateway: GatewayConfig
    devices: tuple[DeviceConfig, ...]
    store: StoreConfig = field(default_factory=StoreConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    models_dir: Path | None = None  # signed model manifests; default: the shipped models/built
    sync: SyncConfig | None = None  # None: no [sync] table, the gateway runs offline
    source: Path | None = None
    dashboard: DashboardConfig | None = None  # None: no [dashboard] table, no web page

    @property
    def state_dir(self) -> Path:
        return self.gateway.state_dir

    @property
    def db_path(self) -> Path:
        return self.gateway.state_dir / "buffer.sqlite3"

    @property
    def keystore_path(self) -> Path:
        return self.store.keystore or self.gateway.state_dir / "keystore.json"

    @property
    def pin_path(self) -> Path:
        """The dashboard PIN's hash file (also without a [dashboard] table, for set-pin)."""
        configured = self.dashboard.pin_file if self.dashboard is not None else None
        return configured or self.gateway.state_dir / "dashboard-pin"


# --- the numeric keys ------------------------------------------------------------------------

# Line speeds a serial port can be set to (the Linux termios rates from 300 baud up); anything
# else is almost always a typo (96000 for 9600).
STANDARD_BAUDRATES: tuple[int, ...] = (
    300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000,
    576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class NumberRule:
    """One numeric key: its documented default (None: no fixed default) and allowed range.

    ``key`` is spelled as in the docs: ``store.quota_mb``, ``devices[].speed``.
    """

    key: str
    default: float | None
    minimum: float
    maximum: float
    integer: bool = False
    choices: tuple[int, ...] = ()  # if set, the value must also be one of these

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.minimum, self.maximum, self.integer)

    def problem(self, value: object) -> str | None:
        problem = number_problem(value, self.bounds)
        if problem is None and self.choices and value not in self.choices:
            rates = ", ".join(map(str, self.choices))
            return f"must be a standard rate ({rates}), got {value!r}"
        return problem


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _rules() -> dict[str, NumberRule]:
    own: list[tuple[type, str, str, float, float]] = [
        (DeviceConfig, "devices[]", "silent_after_s", 1, DAY),
        (DeviceConfig, "devices[]", "speed", 0.01, 1000),
        (StoreConfig, "store", "retention_days", 0, 3650),
        (StoreConfig, "store", "quota_mb", 1, 1_000_000),
        (StoreConfig, "store", "group_commit_ms", 0, 5000),
        (StoreConfig, "store", "fsync_window_ms", 0, 60_000),
        (AlertConfig, "alerts", "spo2_low", 50, 100),
        (SchedulerConfig, "scheduler", "status_interval_s", 1, DAY),
        (SchedulerConfig, "scheduler", "retention_interval_s", 60, DAY),
        (SyncConfig, "sync", "batch_max_age_s", 0, 3600),
        (SyncConfig, "sync", "heartbeat_s", 5, DAY),
        (DashboardConfig, "dashboard", "session_ttl_s", 60, 7 * DAY),
    ]
    rules = [NumberRule(f"{section}.{name}", _default(cls, name), lo, hi) for cls, section, name, lo, hi in own]
    integers: list[tuple[type, str, str, float, float]] = [
        # batch_max: a batch of 5,000 readings seals to well under the 4 MiB envelope bound
        (SyncConfig, "sync", "batch_max", 1, 5000),
        # in_flight: the buffer holds at most 8 leased batches (BufferStore max_in_flight)
        (SyncConfig, "sync", "in_flight", 1, 8),
        (SyncConfig, "sync", "keepalive_s", 5, MQTT_MAX_KEEPALIVE),
        (SyncConfig, "sync", "session_expiry_s", 60, MQTT_SESSION_NEVER_EXPIRES),
        (SyncConfig, "sync", "renew_before_days", 0, 365),
        (DashboardConfig, "dashboard", "port", 1, 65535),
    ]
    rules += [
        NumberRule(f"{section}.{name}", _default(cls, name), lo, hi, integer=True)
        for cls, section, name, lo, hi in integers
    ]
    rules.append(
        NumberRule(
            "devices[].baudrate",
            None,
            STANDARD_BAUDRATES[0],
            STANDARD_BAUDRATES[-1],
            integer=True,
            choices=STANDARD_BAUDRATES,
        )
    )
    defaults = ScoringSettings()
    for name, b in SCORING_RANGES.items():
        rules.append(NumberRule(f"scoring.{name}", getattr(defaults, name), b.minimum, b.maximum, b.integer))
    return {r.key: r for r in rules}


NUMBER_RULES: dict[str, NumberRule] = _rules()

# --- loading ---------------------------------------------------------------------------------

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")  # applied with fullmatch
_ID_TEXT = "1-64 letters, digits, '-' or '_', starting with a letter or digit"
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}\Z")  # BlueZ (Linux), Windows
_UUID_RE = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\Z")  # CoreBluetooth (macOS)
_HEX_RE = re.compile(r"[0-9A-Fa-f]{1,4}\Z")
TRANSPORTS = ("serial", "ble", "simulated")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def _kind(value: object) -> str:
    """How TOML would call ``value``'s type: 'a string '1'', 'a boolean', 'an array'."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string {value!r}"
    if isinstance(value, float):
        return f"a float ({value!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


class _Section:
    """Typed access to one TOML table that remembers its dotted path and unknown keys."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"must be a table, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        shown = name if _BARE_KEY_RE.match(name) else repr(name)
        return f"{self.path}.{shown}" if self.path else shown

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(self.key(name), "missing required key")
            return None
        return self.data[name]

    def string(self, name: str, default: str | None = None, *, id_like: bool = False, empty: bool = True) -> str:
        value = self.get(name, default is None)
        if value is None:
            return default  # type: ignore[return-value]
        return _check_string(self.key(name), value, id_like=id_like, empty=empty)

    def path_value(self, name: str, base_dir: Path, default: str | None = None) -> Path | None:
        """A path (relative paths are relative to the config file); missing: ``default``."""
        if not self.has(name):
            self.used.add(name)
            return None if default is None else _resolve(default, base_dir)
        return _resolve(self.string(name, empty=False), base_dir)

    def number(self, rule: NumberRule) -> Any:
        """The value of ``rule``'s key (its default when absent), checked against its range."""
        name = rule.key.rpartition(".")[2]
        value = self.get(name, False)
        if value is None:
            return rule.default
        problem = rule.problem(value)
        if problem is not None:
            raise ConfigError(self.key(name), problem)
        return value if rule.integer else float(value)

    def table(self, name: str) -> _Section:
        value = self.get(name, False)
        return _Section({} if value is None else value, self.key(name))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key (check spelling)")


def _check_string(key: str, value: object, *, id_like: bool = False, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {_kind(value)}")
    if id_like and not _ID_RE.fullmatch(value):
        raise ConfigError(key, f"must be {_ID_TEXT}, got {value!r}")
    if not empty and not value:
        raise ConfigError(key, "must not be empty (remove the key to use the default)")
    if _has_control(value):
        raise ConfigError(key, f"must not contain control characters (newline, tab, NUL), got {value!r}")
    return value


def _resolve(text: str, base_dir: Path) -> Path:
    path = Path(text)
    return path if path.is_absolute() else base_dir / path


def _timezone(sec: _Section) -> str:
    name = sec.string("timezone", "Asia/Ho_Chi_Minh", empty=False)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            sec.key("timezone"), f"unknown time zone {name!r} (an IANA name such as Asia/Ho_Chi_Minh)"
        ) from None
    return name


# --- devices ---------------------------------------------------------------------------------

_REPLAY_HINT = 'transport = "ble" with address = "replay:<capture>.json"'
_SHIPPED_CAPTURES = ", ".join(sorted(p.name for p in CAPTURES_DIR.glob("*.json")))

# Keys that only some transports use: (transports that use it, why not here).
_TRANSPORT_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "port": (
        ("serial",),
        "only serial devices have a port (a BLE device has an address; a simulated one gets its own pseudo-terminal)",
    ),
    "address": (("ble",), "only BLE devices have an address (a serial device is opened by its port)"),
    "baudrate": (
        ("serial",),
        "only serial devices have a line speed (a simulated device's pseudo-terminal has none)",
    ),
    "scenario": (
        ("simulated",),
        "a scenario only means something for transport 'simulated' (a built-in simulator's patient "
        "script); a real device has none",
    ),
    "speed": (
        ("simulated", "ble"),  # ble: replays only, checked below
        'time compression only applies to simulated devices and replayed BLE captures (address = "replay:...")',
    ),
    "silent_after_s": (
        ("serial", "simulated"),
        "BLE devices send only when a measurement is taken, so they are never 'silent'; this key is for "
        "serial and simulated devices",
    ),
}


def _check_transport(sec: _Section, fmt: str, transport: str) -> None:
    kind = FORMATS[fmt].kind
    if kind == "ble" and transport != "ble":
        if transport == "simulated":
            default = "" if sec.has("transport") else " (transport defaults to 'simulated')"
            raise ConfigError(
                sec.key("transport"),
                f"format {fmt!r} is a BLE format and there are serial simulators only{default}; to replay a BLE "
                f"device use {_REPLAY_HINT} (shipped captures: {_SHIPPED_CAPTURES}), or "
                'transport = "ble" with its address for the real device',
            )
        raise ConfigError(
            sec.key("transport"),
            f'format {fmt!r} is a BLE format, not serial; use transport = "ble" (address = the device\'s '
            'address, or "replay:<capture>.json")',
        )
    if kind == "serial" and transport == "ble":
        raise ConfigError(
            sec.key("transport"),
            f'format {fmt!r} is a serial format, not BLE; use transport = "serial" with a port, or "simulated"',
        )
    if transport == "simulated" and fmt not in FRAME_SOURCES:
        raise ConfigError(
            sec.key("transport"),
            f"no simulator for format {fmt!r}; simulated formats: {', '.join(sorted(FRAME_SOURCES))}",
        )
    for name, (transports, why) in _TRANSPORT_KEYS.items():
        if sec.has(name) and transport not in transports:
            raise ConfigError(sec.key(name), f"not used with transport {transport!r}: {why}")


def _serial_port(sec: _Section) -> str:
    if not sec.has("port"):
        raise ConfigError(sec.key("port"), "missing required key for transport 'serial'")
    port = sec.string("port", empty=False)
    if port.startswith("usb:"):
        parts = port.split(":")[1:]
        if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2]):
            raise ConfigError(sec.key("port"), f"{port!r} must be usb:VID:PID or usb:VID:PID:SERIAL")
        if not (_HEX_RE.fullmatch(parts[0]) and _HEX_RE.fullmatch(parts[1])):
            raise ConfigError(sec.key("port"), f"{port!r}: VID and PID are hex (usb:0403:6001)")
    return port


def _ble_address(sec: _Section, fmt: str) -> str:
    address = ""  # no address: discover the first device advertising the format's service
    if sec.has("address"):
        address = sec.string("address", empty=False)
    else:
        sec.used.add("address")
    if address.startswith("replay:"):
        _check_capture(sec, address.removeprefix("replay:"), fmt)
        return address
    if address and not (_MAC_RE.fullmatch(address) or _UUID_RE.fullmatch(address)):
        raise ConfigError(
            sec.key("address"),
            f"{address!r} is not a BLE address (AA:BB:CC:DD:EE:FF, or a macOS device UUID) nor "
            '"replay:<capture>.json"; remove the key to discover the device by its service',
        )
    if sec.has("speed"):
        raise ConfigError(sec.key("speed"), f"not used for a real BLE device: {_TRANSPORT_KEYS['speed'][1]}")
    return address


def _check_capture(sec: _Section, capture: str, fmt: str) -> None:
    """The capture must exist where the replay looks for it (device_drivers.ble.load_capture:
    the path as given, else the shipped captures directory) and hold the format's measurements."""
    key = sec.key("address")
    if not capture.endswith(".json"):
        raise ConfigError(key, f'replay capture {capture!r} must be a .json file ("replay:<capture>.json")')
    path = Path(capture)
    if not path.exists() and (path.is_absolute() or not (CAPTURES_DIR / path).exists()):
        raise ConfigError(
            key,
            f"replay capture {capture!r} not found (looked for it as given and in {str(CAPTURES_DIR)!r}; "
            f"shipped captures: {_SHIPPED_CAPTURES})",
        )
    try:
        events = load_capture(capture)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(key, f"replay capture {capture!r} cannot be read: {type(exc).__name__}: {exc}") from None
    char = FORMATS[fmt].ble_characteristic
    if not any(e.char == char for e in events):
        raise ConfigError(
            key, f"replay capture {capture!r} has no {fmt!r} measurements (characteristic {char}); wrong capture?"
        )


def _parse_device(sec: _Section) -> DeviceConfig:
    dev_id = sec.string("id", id_like=True)
    fmt = sec.string("format")
    if fmt not in FORMATS:
        raise ConfigError(sec.key("format"), f"unknown format {fmt!r}; known: {', '.join(sorted(FORMATS))}")
    transport = sec.string("transport", "simulated")
    if transport not in TRANSPORTS:
        raise ConfigError(sec.key("transport"), f"must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    _check_transport(sec, fmt, transport)
    port = _serial_port(sec) if transport == "serial" else ""
    address = _ble_address(sec, fmt) if transport == "ble" else ""
    scenario = sec.string("scenario", "normal")
    if scenario not in SCENARIOS:
        raise ConfigError(sec.key("scenario"), f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    dev = DeviceConfig(
        id=dev_id,
        format=fmt,
        transport=transport,
        port=port,
        address=address,
        scenario=scenario,
        baudrate=sec.number(NUMBER_RULES["devices[].baudrate"]),
        silent_after_s=sec.number(NUMBER_RULES["devices[].silent_after_s"]),
        speed=sec.number(NUMBER_RULES["devices[].speed"]),
    )
    sec.finish()
    return dev


def _parse_devices(root: _Section) -> tuple[DeviceConfig, ...]:
    raw = root.get("devices", False)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("devices", f"must be an array of tables ([[devices]]), got {_kind(raw)}")
    devices = tuple(_parse_device(_Section(d, f"devices[{i}]")) for i, d in enumerate(raw))
    ids: dict[str, int] = {}
    ports: dict[str, int] = {}
    addresses: dict[str, int] = {}
    for i, dev in enumerate(devices):
        if dev.id in ids:
            raise ConfigError(f"devices[{i}].id", f"duplicate device id {dev.id!r} (also devices[{ids[dev.id]}])")
        ids[dev.id] = i
        if dev.port:
            if dev.port in ports:
                raise ConfigError(
                    f"devices[{i}].port", f"port {dev.port!r} is already used by devices[{ports[dev.port]}]"
                )
            ports[dev.port] = i
        if dev.address and not dev.address.startswith("replay:"):
            if dev.address.upper() in addresses:
                raise ConfigError(
                    f"devices[{i}].address",
                    f"address {dev.address!r} is already used by devices[{addresses[dev.address.upper()]}]",
                )
            addresses[dev.address.upper()] = i
    return devices


# --- the document ----------------------------------------------------------------------------


def _section(root: _Section, name: str, build: Callable[[_Section], T]) -> T:
    sec = root.table(name)
    value = build(sec)
    sec.finish()
    return value


def _check_version(root: _Section) -> None:
    version = root.get("version", True)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(
            "version",
            f"must be the integer {CONFIG_VERSION} (version = {CONFIG_VERSION}, no quotes), got {_kind(version)}; "
            f"this agent reads {CONFIG_VERSION}",
        )
    if version != CONFIG_VERSION:
        raise ConfigError("version", f"unsupported config version {version!r} (this agent reads {CONFIG_VERSION})")


def parse_config(data: dict[str, Any], *, base_dir: Path, source: Path | None = None) -> AgentConfig:
    """Validate a TOML document (already parsed) into an :class:`AgentConfig`."""
    root = _Section(data, "")
    _check_version(root)
    if "gateway" not in data:
        raise ConfigError("gateway", "missing required table [gateway]")

    def gateway(s: _Section) -> GatewayConfig:
        gw_id = s.string("id", id_like=True)
        province = s.string("province", id_like=True)
        state_dir = s.path_value("state_dir", base_dir, "/var/lib/station-edge")
        assert state_dir is not None
        return GatewayConfig(
            id=gw_id,
            province=province,
            state_dir=state_dir,
            station_name=s.string("station_name", ""),
            timezone=_timezone(s),
        )

    gw = _section(root, "gateway", gateway)
    devices = _parse_devices(root)

    def store(s: _Section) -> StoreConfig:
        return StoreConfig(
            retention_days=s.number(NUMBER_RULES["store.retention_days"]),
            quota_mb=s.number(NUMBER_RULES["store.quota_mb"]),
            group_commit_ms=s.number(NUMBER_RULES["store.group_commit_ms"]),
            fsync_window_ms=s.number(NUMBER_RULES["store.fsync_window_ms"]),
            keystore=s.path_value("keystore", base_dir),
        )

    def alerts(s: _Section) -> AlertConfig:
        return AlertConfig(spo2_low=s.number(NUMBER_RULES["alerts.spo2_low"]))

    def scheduler(s: _Section) -> SchedulerConfig:
        return SchedulerConfig(
            status_interval_s=s.number(NUMBER_RULES["scheduler.status_interval_s"]),
            retention_interval_s=s.number(NUMBER_RULES["scheduler.retention_interval_s"]),
        )

    def scoring(s: _Section) -> ScoringSettings:
        return _parse_scoring(s, base_dir)

    def sync(s: _Section) -> SyncConfig:
        return _parse_sync(s, base_dir)

    def dashboard(s: _Section) -> DashboardConfig:
        return DashboardConfig(
            host=_listen_host(s),
            port=s.number(NUMBER_RULES["dashboard.port"]),
            session_ttl_s=s.number(NUMBER_RULES["dashboard.session_ttl_s"]),
            pin_file=s.path_value("pin_file", base_dir),
        )

    cfg = AgentConfig(
        version=CONFIG_VERSION,
        gateway=gw,
        devices=devices,
        store=_section(root, "store", store),
        alerts=_section(root, "alerts", alerts),
        scheduler=_section(root, "scheduler", scheduler),
        scoring=_section(root, "scoring", scoring),
        models_dir=root.path_value("models_dir", base_dir),
        sync=_section(root, "sync", sync) if root.has("sync") else None,
        source=source,
        dashboard=_section(root, "dashboard", dashboard) if root.has("dashboard") else None,
    )
    root.used.add("sync")
    root.used.add("dashboard")
    root.finish()
    return cfg


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z")


def _listen_host(sec: _Section) -> str:
    """``[dashboard].host``: an IPv4/IPv6 address or a host name of this machine."""
    import ipaddress

    host = sec.string("host", "127.0.0.1", empty=False)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME_RE.fullmatch(host):
            raise ConfigError(
                sec.key("host"), f"must be an IP address (127.0.0.1, 0.0.0.0, ::) or a host name, got {host!r}"
            ) from None
    return host


def _parse_sync(sec: _Section, base_dir: Path) -> SyncConfig:
    """``[sync]``: broker URL, the TLS and hub key files (relative to the config file), bounds."""
    broker = sec.string("broker", empty=False)
    try:
        broker_address(broker)
    except ValueError as exc:
        raise ConfigError(sec.key("broker"), str(exc)) from None

    def required_path(name: str) -> Path:
        if not sec.has(name):
            raise ConfigError(sec.key(name), "missing required key")
        path = sec.path_value(name, base_dir)
        assert path is not None
        return path

    return SyncConfig(
        broker=broker,
        ca=required_path("ca"),
        cert=required_path("cert"),
        key=required_path("key"),
        hub_keys=required_path("hub_keys"),
        batch_max=sec.number(NUMBER_RULES["sync.batch_max"]),
        batch_max_age_s=sec.number(NUMBER_RULES["sync.batch_max_age_s"]),
        in_flight=sec.number(NUMBER_RULES["sync.in_flight"]),
        heartbeat_s=sec.number(NUMBER_RULES["sync.heartbeat_s"]),
        keepalive_s=sec.number(NUMBER_RULES["sync.keepalive_s"]),
        session_expiry_s=sec.number(NUMBER_RULES["sync.session_expiry_s"]),
        renew_before_days=sec.number(NUMBER_RULES["sync.renew_before_days"]),
    )


def _parse_scoring(sec: _Section, base_dir: Path) -> ScoringSettings:
    """Map ``[scoring]`` onto :class:`ScoringSettings`, one key per field."""
    defaults = ScoringSettings()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ScoringSettings):
        if f.name not in sec.data:
            sec.used.add(f.name)
            continue
        default = getattr(defaults, f.name)
        if f.name in SCORING_RANGES:
            values[f.name] = sec.number(NUMBER_RULES[f"scoring.{f.name}"])
        elif isinstance(default, bool):
            raw = sec.get(f.name, True)
            if not isinstance(raw, bool):
                raise ConfigError(sec.key(f.name), f"must be true or false, got {_kind(raw)}")
            values[f.name] = raw
        elif isinstance(default, AlertLevel):
            raw = sec.string(f.name)
            try:
                values[f.name] = AlertLevel(raw)
            except ValueError:
                levels = ", ".join(level.value for level in AlertLevel)
                raise ConfigError(sec.key(f.name), f"must be one of {levels}, got {raw!r}") from None
        elif f.name == "trusted_keys":
            raw = sec.get(f.name, True)
            if not isinstance(raw, list):
                raise ConfigError(sec.key(f.name), f"must be an array of paths, got {_kind(raw)}")
            values[f.name] = tuple(
                _resolve(_check_string(f"{sec.key(f.name)}[{i}]", p, empty=False), base_dir) for i, p in enumerate(raw)
            )
        else:  # optional paths
            values[f.name] = sec.path_value(f.name, base_dir)
    try:
        return ScoringSettings(**values)
    except ScoringSettingsError as exc:
        raise ConfigError(f"scoring.{exc.key}", exc.message) from exc


# --- the file --------------------------------------------------------------------------------


def load_config(path: Path, *, overlay: bool = True) -> AgentConfig:
    """Read and validate a TOML config file; raises :class:`ConfigError` naming the bad key (or
    the file, when it cannot be read, is not UTF-8 or is not TOML). With ``overlay`` the hub's
    ``set-config`` changes in the state dir are applied on top (edge_agent.remote.overlay)."""
    shown = repr(str(path))
    if path.is_dir():
        raise ConfigError("", f"cannot read config {shown}: it is a directory, not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read config {shown}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise ConfigError("", f"cannot read config {shown}: {exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.end]
        raise ConfigError(
            "",
            f"config {shown} is not UTF-8 text: byte {bad!r} at offset {exc.start} ({exc.reason}); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from exc
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"config {shown} is not valid TOML: {exc}") from exc
    cfg = parse_config(data, base_dir=path.parent.resolve(), source=path)
    if not overlay:
        return cfg
    from edge_agent.remote.overlay import with_overlay  # lazy: it builds on this module

    return with_overlay(cfg, data)
