"""One session per configured device: owns the transport, the parser, reconnects and device state.

States (DESIGN §2, issue 3): ``connecting`` → ``connected`` (port open, no data yet) →
``reading`` (bytes arriving) → ``silent`` (port open but no bytes for ``silent_after_s``: a wedged
port or a device switched off) → ``disconnected`` (lost; retried with backoff) or ``error``
(cannot open; retried with backoff). pyserial blocks, so each serial session reads in its own
single worker thread: the one explicit hand-off from blocking I/O to the asyncio loop.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from device_drivers.backoff import Backoff
from device_drivers.base import Parser, TransportError
from device_drivers.ble import BleDeviceLink
from device_drivers.records import Measurement, utcnow
from device_drivers.registry import get_format
from device_drivers.serial_transport import SerialLink
from edge_agent.config import DeviceConfig

log = logging.getLogger(__name__)


class DeviceState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    READING = "reading"
    SILENT = "silent"
    DISCONNECTED = "disconnected"
    ERROR = "error"
    STOPPED = "stopped"


@dataclass(slots=True)
class DeviceStatus:
    device_id: str
    format: str
    transport: str
    state: DeviceState = DeviceState.CONNECTING
    detail: str = ""
    since: datetime = field(default_factory=utcnow)
    last_data_at: datetime | None = None
    reconnects: int = 0
    measurements: int = 0

    def as_dict(self, parser: Parser | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.device_id,
            "format": self.format,
            "transport": self.transport,
            "state": str(self.state),
            "detail": self.detail,
            "since": self.since.isoformat(),
            "last_data_at": self.last_data_at.isoformat() if self.last_data_at else None,
            "reconnects": self.reconnects,
            "measurements": self.measurements,
        }
        if parser is not None:
            out["parser"] = parser.stats.as_dict()
        return out


MeasurementSink = Callable[[str, list[Measurement], datetime], None]
StateSink = Callable[[DeviceStatus], None]


class DeviceSession:
    """What every session shares: its status, its parser and reporting state changes."""

    def __init__(
        self, config: DeviceConfig, on_measurements: MeasurementSink, on_state: StateSink, backoff: Backoff | None
    ) -> None:
        self.config = config
        self.parser: Parser = get_format(config.format).create()
        self.status = DeviceStatus(config.id, config.format, config.transport)
        self._on_measurements = on_measurements
        self._on_state = on_state
        self._backoff = backoff or Backoff(base=0.25, cap=10.0)

    def _set_state(self, state: DeviceState, detail: str = "") -> None:
        if state == self.status.state and detail == self.status.detail:
            return
        self.status.state = state
        self.status.detail = detail
        self.status.since = utcnow()
        log.info("event=device_state device=%s state=%s detail=%r", self.config.id, state, detail)
        self._on_state(self.status)

    def _lost(self, exc: TransportError) -> None:
        self.status.reconnects += 1
        self._set_state(DeviceState.DISCONNECTED, str(exc))

    def _open_failed(self, exc: TransportError) -> None:
        self._set_state(DeviceState.ERROR if self.status.reconnects == 0 else DeviceState.DISCONNECTED, str(exc))

    def _data(self, data: bytes) -> list[Measurement]:
        """Feed received bytes to the parser and pass on what it decoded."""
        self._backoff.reset()
        received = utcnow()
        self.status.last_data_at = received
        if self.status.state != DeviceState.READING:
            self._set_state(DeviceState.READING)
        measurements = self.parser.feed(data)
        if measurements:
            self.status.measurements += len(measurements)
            self._on_measurements(self.config.id, measurements, received)
        return measurements

    async def run(self) -> None:
        raise NotImplementedError


class SerialSession(DeviceSession):
    """Reads one serial device for as long as the agent runs, through unplug and replug."""

    def __init__(
        self,
        config: DeviceConfig,
        on_measurements: MeasurementSink,
        on_state: StateSink,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(config, on_measurements, on_state, backoff)
        spec = get_format(config.format)
        if spec.serial is None:
            raise ValueError(f"{config.format} is not a serial format")
        self.settings = spec.serial
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"serial-{config.id}")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    link = await loop.run_in_executor(
                        self._executor,
                        lambda: SerialLink(self.config.port, self.settings, baudrate=self.config.baudrate),
                    )
                except TransportError as exc:
                    self._open_failed(exc)
                    await asyncio.sleep(self._backoff.next_delay())
                    continue
                self._set_state(DeviceState.CONNECTED, self.config.port)
                try:
                    await self._read_until_lost(loop, link)
                except TransportError as exc:
                    self._lost(exc)
                finally:
                    await loop.run_in_executor(self._executor, link.close)
                await asyncio.sleep(self._backoff.next_delay())
        finally:
            self._set_state(DeviceState.STOPPED)
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _read_until_lost(self, loop: asyncio.AbstractEventLoop, link: SerialLink) -> None:
        last_bytes = time.monotonic()
        while True:
            data = await loop.run_in_executor(self._executor, link.read, 4096)
            now = time.monotonic()
            if not data:
                if now - last_bytes >= self.config.silent_after_s:
                    self._set_state(DeviceState.SILENT, f"no bytes for {now - last_bytes:.0f} s")
                continue
            last_bytes = now
            self._data(data)
            replies = self._replies()
            if replies:
                await loop.run_in_executor(self._executor, link.write, replies)

    def _replies(self) -> bytes:
        """Bytes the protocol wants sent back: HL7 v2 ACKs (MSA AA) for each message received."""
        take_acks = getattr(self.parser, "take_acks", None)
        if take_acks is None:
            return b""
        from device_drivers.hl7v2 import encode_ack

        now = utcnow()
        return b"".join(encode_ack(req, now) for req in take_acks())


class BleSession(DeviceSession):
    """Follows one BLE device (bleak, or a replayed capture) through drops and reconnects.

    BLE health devices are idle most of the time (a cuff measures when the nurse presses start),
    so a BLE session is never reported ``silent``.
    """

    def __init__(
        self,
        config: DeviceConfig,
        on_measurements: MeasurementSink,
        on_state: StateSink,
        *,
        link: BleDeviceLink,
        backoff: Backoff | None = None,
        records_path: Path | None = None,
    ) -> None:
        super().__init__(config, on_measurements, on_state, backoff)
        self.link = link
        # Glucose meters resend every stored record on each "report all"; remembering which
        # sequence numbers were delivered (across restarts) keeps them from becoming duplicates.
        self._records_path = records_path if config.format == "ble-glucose" else None
        self._records: list[int] = []
        if self._records_path is not None:
            self._records = _load_ints(self._records_path)
            link.seen_glucose(self._records)
            link.on_new_record = self._remember

    def _remember(self, seq: int) -> None:
        assert self._records_path is not None
        self._records = [*self._records[-(MAX_REMEMBERED_RECORDS - 1) :], seq]
        tmp = self._records_path.with_suffix(".tmp")
        try:
            self._records_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self._records))
            tmp.replace(self._records_path)
        except OSError as exc:  # disk full: the record may come again after a restart, not lost
            log.warning("event=ble_records_not_saved device=%s error=%r", self.config.id, exc)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.link.connect()
                except TransportError as exc:
                    self._open_failed(exc)
                    await asyncio.sleep(self._backoff.next_delay())
                    continue
                self._set_state(DeviceState.CONNECTED, self.link.backend.description)
                # A scale's resolution comes from its Feature characteristic, read on connect.
                stats = self.parser.stats
                self.parser = self.link.create_parser()
                self.parser.stats = stats
                try:
                    async for value in self.link.values():
                        self._data(value)
                except TransportError as exc:
                    self._lost(exc)
                await asyncio.sleep(self._backoff.next_delay())
        finally:
            self._set_state(DeviceState.STOPPED)


MAX_REMEMBERED_RECORDS = 5000


def _load_ints(path: Path) -> list[int]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("event=ble_records_unreadable path=%s error=%r", path, exc)
        return []
    return [int(x) for x in data if isinstance(x, int)] if isinstance(data, list) else []


def ble_link_for(config: DeviceConfig, device_tz: tzinfo = UTC) -> BleDeviceLink:
    """``address`` is a BLE address, ``replay:<capture.json>`` (a recorded or constructed capture,
    replayed once through the same code path bleak's callbacks use; the device then stays
    connected and idle), or empty to discover the first device advertising the format's service."""
    if config.address.startswith("replay:"):
        return BleDeviceLink.replay(
            config.address.removeprefix("replay:"), config.format, speed=config.speed, then="idle", device_tz=device_tz
        )
    if config.address:
        return BleDeviceLink.from_address(config.address, config.format, device_tz=device_tz)
    return BleDeviceLink.discover(config.format, device_tz=device_tz)
