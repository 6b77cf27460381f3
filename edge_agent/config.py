"""The agent's one typed configuration object, loaded from TOML and validated once at start.

Every error names the key that is wrong (``devices[1].format: unknown format 'foo'``), and
the CLI turns :class:`ConfigError` into exit code 2. Below the loader nothing sees a raw dict.
See ``docs/config.md`` (and ``edge_agent/example-config.toml``) for the reference.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device_drivers.registry import FORMATS
from edge_agent.alerts import AlertLevel
from edge_agent.scoring.settings import ScoringSettings, ScoringSettingsError

CONFIG_VERSION = 1

T = TypeVar("T")


class ConfigError(Exception):
    """The configuration is wrong; ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


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
    URL such as ``socket://host:port``, or ``usb:VID:PID``), ``ble`` (``address`` or discovery by
    the format's service UUID) or ``simulated`` (a built-in simulator on a pseudo-terminal;
    ``scenario`` picks its script).
    """

    id: str
    format: str
    transport: str
    port: str = ""
    address: str = ""
    scenario: str = "normal"
    baudrate: int | None = None
    silent_after_s: float = 30.0
    speed: float = 1.0  # simulated devices only: time compression (2 = twice the real pace)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    retention_days: float = 7.0
    quota_mb: float = 512.0
    group_commit_ms: float = 100.0
    keystore: Path | None = None  # default: <state_dir>/keystore.json


@dataclass(frozen=True, slots=True)
class AlertConfig:
    spo2_low: float = 90.0  # the SpO2 safety net (edge_agent/safety_net.py) while models are unavailable


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    status_interval_s: float = 30.0
    retention_interval_s: float = 3600.0


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
    source: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.gateway.state_dir

    @property
    def db_path(self) -> Path:
        return self.gateway.state_dir / "buffer.sqlite3"

    @property
    def keystore_path(self) -> Path:
        return self.store.keystore or self.gateway.state_dir / "keystore.json"


# --- loading ---------------------------------------------------------------------------------

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TRANSPORTS = ("serial", "ble", "simulated")


class _Section:
    """Typed access to one TOML table that remembers its dotted path and unknown keys."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"must be a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(self.key(name), "missing required key")
            return None
        return self.data[name]

    def string(self, name: str, default: str | None = None, *, pattern: re.Pattern[str] | None = None) -> str:
        value = self._get(name, default is None)
        if value is None:
            return default  # type: ignore[return-value]
        if not isinstance(value, str):
            raise ConfigError(self.key(name), f"must be a string, got {type(value).__name__}")
        if pattern is not None and not pattern.match(value):
            raise ConfigError(self.key(name), f"{value!r} must match {pattern.pattern}")
        return value

    def number(self, name: str, default: float | None = None, *, minimum: float = 0.0) -> float:
        value = self._get(name, default is None)
        if value is None:
            return default  # type: ignore[return-value]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.key(name), f"must be a number, got {type(value).__name__}")
        if value < minimum:
            raise ConfigError(self.key(name), f"must be >= {minimum}, got {value}")
        return float(value)

    def optional_int(self, name: str) -> int | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(self.key(name), f"must be a positive integer, got {value!r}")
        return value

    def table(self, name: str) -> _Section:
        value = self._get(name, False)
        return _Section({} if value is None else value, self.key(name))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key (check spelling)")


def _timezone(sec: _Section) -> str:
    name = sec.string("timezone", "Asia/Ho_Chi_Minh")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            sec.key("timezone"), f"unknown time zone {name!r} (an IANA name such as Asia/Ho_Chi_Minh)"
        ) from None
    return name


def _parse_device(sec: _Section) -> DeviceConfig:
    dev_id = sec.string("id", pattern=_ID_RE)
    fmt = sec.string("format")
    if fmt not in FORMATS:
        raise ConfigError(sec.key("format"), f"unknown format {fmt!r}; known: {', '.join(sorted(FORMATS))}")
    transport = sec.string("transport", "simulated")
    if transport not in TRANSPORTS:
        raise ConfigError(sec.key("transport"), f"must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    port = sec.string("port", "")
    if transport == "serial" and not port:
        raise ConfigError(sec.key("port"), "missing required key for transport 'serial'")
    if transport == "serial" and FORMATS[fmt].kind != "serial":
        raise ConfigError(sec.key("transport"), f"format {fmt!r} is a BLE format, not serial")
    if transport == "ble" and FORMATS[fmt].kind != "ble":
        raise ConfigError(sec.key("transport"), f"format {fmt!r} is a serial format, not BLE")
    dev = DeviceConfig(
        id=dev_id,
        format=fmt,
        transport=transport,
        port=port,
        address=sec.string("address", ""),
        scenario=sec.string("scenario", "normal"),
        baudrate=sec.optional_int("baudrate"),
        silent_after_s=sec.number("silent_after_s", 30.0, minimum=0.1),
        speed=sec.number("speed", 1.0, minimum=0.01),
    )
    sec.finish()
    return dev


def _section(root: _Section, name: str, build: Callable[[_Section], T]) -> T:
    sec = root.table(name)
    value = build(sec)
    sec.finish()
    return value


def parse_config(data: dict[str, Any], *, base_dir: Path, source: Path | None = None) -> AgentConfig:
    """Validate a TOML document (already parsed) into an :class:`AgentConfig`."""
    root = _Section(data, "")
    version = root._get("version", True)
    if version != CONFIG_VERSION:
        raise ConfigError("version", f"unsupported config version {version!r} (this agent reads {CONFIG_VERSION})")

    def gateway(s: _Section) -> GatewayConfig:
        state_dir = Path(s.string("state_dir", "/var/lib/station-edge"))
        return GatewayConfig(
            id=s.string("id", pattern=_ID_RE),
            province=s.string("province", pattern=_ID_RE),
            state_dir=state_dir if state_dir.is_absolute() else base_dir / state_dir,
            station_name=s.string("station_name", ""),
            timezone=_timezone(s),
        )

    gw = _section(root, "gateway", gateway)
    if "gateway" not in data:
        raise ConfigError("gateway", "missing required table")

    raw_devices = root._get("devices", False) or []
    if not isinstance(raw_devices, list):
        raise ConfigError("devices", "must be an array of tables ([[devices]])")
    devices = tuple(_parse_device(_Section(d, f"devices[{i}]")) for i, d in enumerate(raw_devices))
    seen: set[str] = set()
    for i, dev in enumerate(devices):
        if dev.id in seen:
            raise ConfigError(f"devices[{i}].id", f"duplicate device id {dev.id!r}")
        seen.add(dev.id)

    def store(s: _Section) -> StoreConfig:
        ks = s.string("keystore", "")
        return StoreConfig(
            retention_days=s.number("retention_days", 7.0),
            quota_mb=s.number("quota_mb", 512.0, minimum=1.0),
            group_commit_ms=s.number("group_commit_ms", 100.0),
            keystore=(Path(ks) if Path(ks).is_absolute() else base_dir / ks) if ks else None,
        )

    def alerts(s: _Section) -> AlertConfig:
        return AlertConfig(
            spo2_low=s.number("spo2_low", 90.0),
        )

    def scheduler(s: _Section) -> SchedulerConfig:
        return SchedulerConfig(
            status_interval_s=s.number("status_interval_s", 30.0, minimum=1.0),
            retention_interval_s=s.number("retention_interval_s", 3600.0, minimum=1.0),
        )

    def scoring(s: _Section) -> ScoringSettings:
        return _parse_scoring(s, base_dir)

    models_dir = root.string("models_dir", "")
    cfg = AgentConfig(
        version=CONFIG_VERSION,
        gateway=gw,
        devices=devices,
        store=_section(root, "store", store),
        alerts=_section(root, "alerts", alerts),
        scheduler=_section(root, "scheduler", scheduler),
        scoring=_section(root, "scoring", scoring),
        models_dir=(Path(models_dir) if Path(models_dir).is_absolute() else base_dir / models_dir)
        if models_dir
        else None,
        source=source,
    )
    root.finish()
    return cfg


def _parse_scoring(sec: _Section, base_dir: Path) -> ScoringSettings:
    """Map ``[scoring]`` onto :class:`ScoringSettings`, one key per field, typed by its default."""
    defaults = ScoringSettings()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ScoringSettings):
        if f.name not in sec.data:
            sec.used.add(f.name)
            continue
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            raw = sec._get(f.name, True)
            if not isinstance(raw, bool):
                raise ConfigError(sec.key(f.name), f"must be true or false, got {raw!r}")
            values[f.name] = raw
        elif isinstance(default, AlertLevel):
            raw = sec.string(f.name)
            try:
                values[f.name] = AlertLevel(raw)
            except ValueError:
                levels = ", ".join(level.value for level in AlertLevel)
                raise ConfigError(sec.key(f.name), f"must be one of {levels}, got {raw!r}") from None
        elif isinstance(default, int) and not isinstance(default, bool) and f.name == "spo2_scale_default":
            values[f.name] = int(sec.number(f.name, minimum=1))
        elif isinstance(default, int | float):
            values[f.name] = sec.number(f.name)
        elif f.name == "trusted_keys":
            raw = sec._get(f.name, True)
            if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
                raise ConfigError(sec.key(f.name), "must be a list of paths")
            values[f.name] = tuple(p if p.is_absolute() else base_dir / p for p in map(Path, raw))
        else:  # optional paths
            text = sec.string(f.name)
            values[f.name] = Path(text) if Path(text).is_absolute() else base_dir / text
    try:
        return ScoringSettings(**values)
    except ScoringSettingsError as exc:
        raise ConfigError(f"scoring.{exc.key}", str(exc).split(": ", 1)[-1]) from exc


def load_config(path: Path) -> AgentConfig:
    """Read and validate a TOML config file; raises :class:`ConfigError` naming the bad key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, base_dir=path.parent.resolve(), source=path)
