"""One session per configured device: owns the transport, the parser, reconnects and device state.

States (DESIGN §2, issue 3): ``connecting`` → ``connected`` (port open, no data yet) →
``reading`` (bytes arriving) → ``silent`` (port open but no bytes for ``silent_after_s``: a wedged
port or a device switched off) → ``disconnected`` (lost; retried with backoff) or ``error``
(cannot open; retried with backoff). pyserial blocks, so each serial session reads in its own
single worker thread: the one explicit hand-off from blocking I/O to the asyncio loop.

What a session guarantees besides moving bytes:

* **A parser exception never ends a session.** It is counted (``parser_errors`` in
  :meth:`DeviceStatus.as_dict`, by exception type), logged as ``event=parser_error`` at most once
  per type per minute (type and code location only: never the message, values or bytes), and
  the session carries on with a fresh parser that keeps the old one's stats.
* **Rejections are logged** (README: "counted, logged"): ``event=parser_rejected`` with the
  reason and the count since the previous line, at most one line per reason per minute per
  device (the first at once). Never a value: reasons are codes.
* **Transitions, not repeats**: a ``device_state`` line is logged (and the state sink told) when
  the state changes; a new detail in the same state only updates the status. The ``silent``
  detail carries no running counter.
* **Glucose records are remembered after commit**: the record's sequence number goes to
  ``records.json`` only once the batch holding its reading was committed (the sink's future
  resolved with a count > 0); otherwise the meter's next "report all" fetches it again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import json
import logging
import math
import threading
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
    # Exceptions raised by the parser's feed(), by exception type (each one replaced the parser).
    parser_errors: collections.Counter[str] = field(default_factory=collections.Counter)

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
            "parser_errors": sum(self.parser_errors.values()),
            "parser_error_kinds": dict(self.parser_errors),
        }
        if parser is not None:
            out["parser"] = parser.stats.as_dict()
        return out


# The pipeline's submit (edge_agent/pipeline.py): a future of the number of readings committed
# (0 when the store failed or dropped them all), or None when nothing was queued.
MeasurementSink = Callable[[str, list[Measurement], datetime], asyncio.Future[int] | None]
StateSink = Callable[[DeviceStatus], None]

LOG_INTERVAL_S = 60.0  # at most one parser_rejected / parser_error line per key per device per minute


class RateLimitedCounter:
    """Counts events by key and says when a log line is due: the first event of a key at once,
    then at most one line per ``interval_s``, carrying the count since the previous line."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._pending: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def add(self, key: str, n: int = 1) -> int | None:
        """Count ``n`` events; return the count to log now, or None when a line is not due."""
        self._pending[key] = self._pending.get(key, 0) + n
        now = self._clock()
        if now - self._last.get(key, -math.inf) < self.interval_s:
            return None
        self._last[key] = now
        return self._pending.pop(key)

    def due(self, *, force: bool = False) -> list[tuple[str, int]]:
        """Counts held back whose interval has passed (all of them with ``force``)."""
        now = self._clock()
        out: list[tuple[str, int]] = []
        for key in list(self._pending):
            if force or now - self._last.get(key, -math.inf) >= self.interval_s:
                out.append((key, self._pending.pop(key)))
                self._last[key] = now
        return out


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one feed gave: the measurements, the sink's commit future, whether the parser failed."""

    measurements: list[Measurement]
    commit: asyncio.Future[int] | None = None
    parser_failed: bool = False


def _where(exc: BaseException) -> str:
    """``file.py:line`` of the innermost frame: enough to find a parser bug, free of data."""
    tb = exc.__traceback__
    if tb is None:
        return "unknown"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"


class DeviceSession:
    """What every session shares: its status, its parser and reporting state changes."""

    def __init__(
        self,
        config: DeviceConfig,
        on_measurements: MeasurementSink,
        on_state: StateSink,
        backoff: Backoff | None,
        *,
        log_interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.parser: Parser = get_format(config.format).create()
        self.status = DeviceStatus(config.id, config.format, config.transport)
        self._on_measurements = on_measurements
        self._on_state = on_state
        self._backoff = backoff or Backoff(base=0.25, cap=10.0)
        self._rejections = RateLimitedCounter(log_interval_s, clock)
        self._errors = RateLimitedCounter(log_interval_s, clock)
        self._rejected_seen: dict[str, int] = dict(self.parser.stats.rejected)

    def _set_state(self, state: DeviceState, detail: str = "") -> None:
        if state == self.status.state:
            # Same state, maybe a new detail: the status shows it; no log line, no event.
            self.status.detail = detail
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

    def _data(self, data: bytes) -> Delivery:
        """Feed received bytes to the parser and pass on what it decoded; never raises for
        what the parser does (an exception is counted, logged and the parser replaced)."""
        self._backoff.reset()
        received = utcnow()
        self.status.last_data_at = received
        if self.status.state != DeviceState.READING:
            self._set_state(DeviceState.READING)
        try:
            measurements = self.parser.feed(data)
        except Exception as exc:  # a parser bug must not end the session (module docstring)
            self._parser_failed(exc)
            if self.parser.kind != "serial" or len(data) <= 1:
                self._log_rejections()
                return Delivery([], None, parser_failed=True)
            measurements = self._refeed(data)
        self._log_rejections()
        commit = None
        if measurements:
            self.status.measurements += len(measurements)
            commit = self._on_measurements(self.config.id, measurements, received)
        return Delivery(measurements, commit)

    def _refeed(self, data: bytes) -> list[Measurement]:
        """A stream chunk that made the parser raise, fed again byte by byte to the fresh parser
        (any chunking gives the same output): a fault costs the frames around the bytes that
        raise, not every frame of the chunk (a serial read collects up to 250 ms of them)."""
        self.parser.stats.bytes_in -= len(data)  # counted again by the feeds below
        out: list[Measurement] = []
        for i in range(len(data)):
            try:
                out += self.parser.feed(data[i : i + 1])
            except Exception as exc:  # the rare path; each fault is counted
                self._parser_failed(exc)
        return out

    def _parser_failed(self, exc: Exception) -> None:
        kind = type(exc).__name__
        self.status.parser_errors[kind] += 1
        count = self._errors.add(kind)
        if count is not None:
            # The exception's message can quote device data: only its type and location.
            log.error(
                "event=parser_error device=%s format=%s kind=%s where=%s count=%d action=fresh_parser",
                self.config.id,
                self.config.format,
                kind,
                _where(exc),
                count,
            )
        self._replace_parser()

    def _create_parser(self) -> Parser:
        return get_format(self.config.format).create()

    def _replace_parser(self) -> None:
        """A fresh parser that keeps counting into the same stats. What the failed one held
        (a partial frame, HL7 ACKs not yet sent) is dropped: a monitor that gets no ACK resends."""
        stats = self.parser.stats
        self.parser = self._create_parser()
        self.parser.stats = stats

    def _log_rejections(self) -> None:
        """One ``parser_rejected`` line per reason per interval, with the count since the last."""
        rejected = self.parser.stats.rejected
        if rejected != self._rejected_seen:
            for reason, total in rejected.items():
                new = total - self._rejected_seen.get(reason, 0)
                if new > 0 and (count := self._rejections.add(reason, new)) is not None:
                    self._log_rejected(reason, count)
            self._rejected_seen = dict(rejected)
        self._flush_logs()

    def _flush_logs(self, *, force: bool = False) -> None:
        for reason, count in self._rejections.due(force=force):
            self._log_rejected(reason, count)
        for kind, count in self._errors.due(force=force):
            log.error(
                "event=parser_error device=%s format=%s kind=%s count=%d",
                self.config.id,
                self.config.format,
                kind,
                count,
            )

    def _log_rejected(self, reason: str, count: int) -> None:
        log.info(
            "event=parser_rejected device=%s format=%s reason=%s count=%d",
            self.config.id,
            self.config.format,
            reason,
            count,
        )

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
        log_interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config, on_measurements, on_state, backoff, log_interval_s=log_interval_s, clock=clock)
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
            self._flush_logs(force=True)
            self._set_state(DeviceState.STOPPED)
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _read_until_lost(self, loop: asyncio.AbstractEventLoop, link: SerialLink) -> None:
        """The port's worker thread reads chunk after chunk (``SerialLink.read``: 250 ms of bytes)
        and hands each to the loop with one ``call_soon_threadsafe``: one thread and one loop
        wake-up per chunk, no future per read (issue 14). The loop parses; replies (HL7 ACKs) are
        written at once from the default executor. Returns never; raises TransportError when lost."""
        lost: asyncio.Future[None] = loop.create_future()
        stop = threading.Event()
        last_bytes = time.monotonic()

        def fail(exc: BaseException) -> None:  # on the loop
            if not lost.done():
                lost.set_exception(exc if isinstance(exc, TransportError) else TransportError(repr(exc)))

        def wrote(fut: asyncio.Future[int]) -> None:
            if not fut.cancelled() and fut.exception() is not None:
                fail(fut.exception())  # type: ignore[arg-type]

        def on_chunk(data: bytes) -> None:  # on the loop
            nonlocal last_bytes
            if lost.done():
                return
            now = time.monotonic()
            if not data:
                if now - last_bytes >= self.config.silent_after_s:
                    # A fixed detail: a running "for N s" counter made a log line every second.
                    self._set_state(DeviceState.SILENT, f"no bytes for {self.config.silent_after_s:g} s or more")
                self._flush_logs()
                return
            last_bytes = now
            self._data(data)
            replies = self._replies()
            if replies:
                loop.run_in_executor(None, link.write, replies).add_done_callback(wrote)

        def pump() -> None:  # on the port's worker thread
            try:
                while not stop.is_set():
                    data = link.read(4096)
                    loop.call_soon_threadsafe(on_chunk, data)
            except RuntimeError:  # the loop is closed: the agent is gone
                return
            except BaseException as exc:  # TransportError: lost; anything else ends the connection too
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(fail, exc)

        loop.run_in_executor(self._executor, pump)
        try:
            await lost
        finally:
            stop.set()  # the pump ends after its current read; link.close runs after it, same thread

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
        log_interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config, on_measurements, on_state, backoff, log_interval_s=log_interval_s, clock=clock)
        self.link = link
        # Glucose meters resend every stored record on each "report all"; remembering which
        # sequence numbers were committed (across restarts) keeps them from becoming duplicates.
        # A record is remembered only once its reading is committed (or once the parser rejected
        # it: the same bytes give the same answer), so a crash or a full store never loses one.
        self._glucose = config.format == "ble-glucose"
        self._records_path = records_path if self._glucose else None
        self._records: list[int] = []
        if self._records_path is not None:
            self._records = _load_ints(self._records_path)
            link.seen_glucose(self._records)

    def _create_parser(self) -> Parser:
        return self.link.create_parser()

    def _value(self, value: bytes) -> None:
        """One characteristic value: feed it; for a glucose record, settle it after commit."""
        seq = self.link.glucose_record(value) if self._glucose else None
        delivery = self._data(value)
        if seq is None:
            return
        if delivery.parser_failed:
            self.link.record_settled(seq, committed=False)  # fetched again on the next connection
        elif not delivery.measurements:
            self._record_done(seq)  # rejected (control solution...): nothing to commit, ever
        elif delivery.commit is None:
            self.link.record_settled(seq, committed=False)  # nothing was queued
        else:
            delivery.commit.add_done_callback(lambda fut: self._committed(seq, fut))

    def _committed(self, seq: int, fut: asyncio.Future[int]) -> None:
        if not fut.cancelled() and fut.exception() is None and fut.result() > 0:
            self._record_done(seq)
        else:  # the store failed or dropped it: not remembered, so the meter sends it again
            self.link.record_settled(seq, committed=False)

    def _record_done(self, seq: int) -> None:
        self.link.record_settled(seq, committed=True)
        if self._records_path is not None:
            self._remember(seq)

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
                self._replace_parser()
                try:
                    async for value in self.link.values():
                        self._value(value)
                except TransportError as exc:
                    self._lost(exc)
                await asyncio.sleep(self._backoff.next_delay())
        finally:
            self._flush_logs(force=True)
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
