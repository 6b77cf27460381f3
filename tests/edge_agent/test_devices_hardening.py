"""Device sessions under faults: a parser that raises, rejections logged (rate-limited, no
values), nothing patient-related in status or logs, transitions logged once, and glucose records
remembered only after their readings were committed. Serial cases run on real pseudo-terminals."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from device_drivers import encoders as enc
from device_drivers.backoff import Backoff
from device_drivers.base import Parser
from device_drivers.ble import BleDeviceLink, CaptureEvent, ReplayBackend
from device_drivers.ble_heart_rate import HeartRateParser
from device_drivers.encoders import Obx
from device_drivers.masimo_ascii import MasimoAsciiParser, encode_line
from device_drivers.records import Measurement
from device_drivers.registry import FORMATS, FormatSpec, SerialSettings
from device_drivers.simulators import PatientState, PtySimulator
from edge_agent.config import DeviceConfig
from edge_agent.devices import BleSession, DeviceState, SerialSession

SECRETS = ("PATIENT-ID-55555", "55555", "23.4567", "UNIT-77777", "77777")
POISON = 0xEE  # a byte the exploding test parsers refuse with an exception


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"event={event} ")]


# --- parsers that raise (registered as formats, the registry being the seam) --------------------


class ExplodingMasimo(MasimoAsciiParser):
    def _feed(self, data: bytes) -> list[Measurement]:
        if POISON in data:
            raise OverflowError("date value out of range for PATIENT-ID-55555 spo2=23.4567")
        return super()._feed(data)


class ExplodingHeartRate(HeartRateParser):
    def _feed(self, data: bytes) -> list[Measurement]:
        if len(data) > 1 and data[1] == POISON:
            raise ValueError("bad 55555")
        return super()._feed(data)


class _Spec(FormatSpec):
    """A FormatSpec whose parser is a class of this test module."""

    factory: Callable[[], Parser]

    def create(self) -> Parser:
        return type(self).factory()


class MasimoSpec(_Spec):
    factory = ExplodingMasimo


class HeartRateSpec(_Spec):
    factory = ExplodingHeartRate


@pytest.fixture
def exploding_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        FORMATS,
        "test-exploding-serial",
        MasimoSpec("test-exploding-serial", "serial", "-", "test", serial=SerialSettings()),
    )
    monkeypatch.setitem(
        FORMATS,
        "test-exploding-ble",
        HeartRateSpec("test-exploding-ble", "ble", "-", "test", ble_service="180d", ble_characteristic="2a37"),
    )


def poisoned_masimo(state: PatientState, rng: random.Random) -> Iterator[tuple[float, bytes]]:
    if int(state.t) % 3 == 1:
        yield 1.0, bytes([POISON]) + b" 05/14/25 09:12:03 SPO2=023%\r\n"
    else:
        yield 1.0, encode_line(spo2=97, bpm=70)


# --- 2. a parser exception never ends a session -------------------------------------------------


@pytest.mark.usefixtures("exploding_formats")
def test_parser_exception_does_not_end_a_serial_session(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim = PtySimulator(poisoned_masimo, link=tmp_path / "ox", speed=25.0, name="poisoned").start()

    async def scenario() -> None:
        got: list[Measurement] = []
        cfg = DeviceConfig(id="ox-9", format="test-exploding-serial", transport="serial", port=str(sim.link))
        session = SerialSession(cfg, lambda d, ms, at: got.extend(ms), lambda s: None)
        first = session.parser
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: session.status.parser_errors.total() >= 3 and len(got) >= 12)
            assert not task.done()
            assert session.parser is not first and session.parser.stats is first.stats  # stats kept
            status = session.status.as_dict(session.parser)
            assert status["parser_errors"] == session.status.parser_errors.total()
            assert status["parser_error_kinds"] == {"OverflowError": status["parser_errors"]}
            assert status["state"] == "reading"
            # Rate-limited: one line for the first error of the kind, the rest are counted.
            (line,) = lines(caplog, "parser_error")
            assert re.fullmatch(
                r"event=parser_error device=ox-9 format=test-exploding-serial kind=OverflowError "
                r"where=test_devices_hardening\.py:\d+ count=1 action=fresh_parser",
                line,
            ), line
        finally:
            await stop(task)
        flushed = lines(caplog, "parser_error")[1:]  # held-back counts are logged at stop
        assert sum(int(x.rsplit("count=", 1)[1]) for x in flushed) == session.status.parser_errors.total() - 1
        dump = json.dumps(session.status.as_dict(session.parser)) + caplog.text
        assert not any(s in dump for s in SECRETS)

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()


@pytest.mark.usefixtures("exploding_formats")
def test_parser_exception_does_not_end_a_ble_session(caplog: pytest.LogCaptureFixture) -> None:
    values = [enc.heart_rate(POISON if i % 2 else 60 + i) for i in range(10)]
    events = [CaptureEvent(0.01 * i, "2a37", v) for i, v in enumerate(values)]
    link = BleDeviceLink(ReplayBackend(events, "2a37", speed=10.0, then="idle"), "test-exploding-ble")

    async def scenario() -> None:
        got: list[Measurement] = []
        cfg = DeviceConfig(id="hr-1", format="test-exploding-ble", transport="ble")
        session = BleSession(cfg, lambda d, ms, at: got.extend(ms), lambda s: None, link=link)
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: session.parser.stats.bytes_in == sum(map(len, values)))
            assert not task.done() and session.status.state == DeviceState.READING
        finally:
            await stop(task)
        assert [m.value for m in got] == [60, 62, 64, 66, 68]
        assert session.status.parser_errors == {"ValueError": 5}
        assert len(lines(caplog, "parser_error")) == 2  # the first at once, the other 4 at stop
        assert "55555" not in caplog.text

    asyncio.run(scenario())


# --- 6. rejections are logged, rate-limited, without values -------------------------------------


def test_rejections_are_logged_once_per_reason_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    strap_off = enc.heart_rate(0, contact=2)  # probe_off rejection, no reading
    events = [CaptureEvent(0.01 * i, "2a37", strap_off) for i in range(5)]
    events += [CaptureEvent(0.5 + 0.01 * i, "2a37", strap_off) for i in range(5)]
    events += [CaptureEvent(0.56, "2a37", b"")]  # one "empty" rejection
    link = BleDeviceLink(ReplayBackend(events, "2a37", speed=1.0, then="idle"), "ble-heart-rate")
    now = [1000.0]

    async def scenario() -> None:
        cfg = DeviceConfig(id="strap", format="ble-heart-rate", transport="ble")
        session = BleSession(cfg, lambda d, ms, at: None, lambda s: None, link=link, clock=lambda: now[0])
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: session.parser.stats.rejected["probe_off"] == 5)
            assert lines(caplog, "parser_rejected") == [
                "event=parser_rejected device=strap format=ble-heart-rate reason=probe_off count=1"
            ]
            now[0] += 61.0  # a minute later
            await wait_for(lambda: session.parser.stats.rejected["empty"] == 1)
        finally:
            await stop(task)

    asyncio.run(scenario())
    logged = lines(caplog, "parser_rejected")
    assert logged == [
        "event=parser_rejected device=strap format=ble-heart-rate reason=probe_off count=1",
        "event=parser_rejected device=strap format=ble-heart-rate reason=probe_off count=5",  # 4 held + 1
        "event=parser_rejected device=strap format=ble-heart-rate reason=empty count=1",
        "event=parser_rejected device=strap format=ble-heart-rate reason=probe_off count=4",  # at stop
    ]


# --- 7. no patient value or identifier in status or logs ----------------------------------------


def hostile_monitor(state: PatientState, rng: random.Random) -> Iterator[tuple[float, bytes]]:
    msg = enc.hl7_oru(
        [
            Obx("PATIENT-ID-55555^Patient id^LN", "55555", "/min"),  # unmapped observation
            Obx("59408-5^SpO2^LN", "23.4567", "%"),  # out of range
            Obx("8867-4^HR^LN", "71", "UNIT-77777"),  # unknown unit
            Obx("8867-4^HR^LN", "72", "/min"),  # a good one
        ],
        patient_id="PATIENT-ID-55555",
        control_id=f"M{int(state.t)}",
    )
    yield 1.0, enc.mllp(msg)


def test_status_and_logs_carry_no_patient_value_or_identifier(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim = PtySimulator(hostile_monitor, link=tmp_path / "mon", speed=20.0, name="hostile").start()

    async def scenario() -> None:
        got: list[Measurement] = []
        cfg = DeviceConfig(id="mon-1", format="hl7v2", transport="serial", port=str(sim.link))
        session = SerialSession(cfg, lambda d, ms, at: got.extend(ms), lambda s: None)
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: session.parser.stats.rejected["unknown_unit"] >= 2 and len(got) >= 2)
            status = session.status.as_dict(session.parser)
        finally:
            await stop(task)
        dump = json.dumps(status)
        assert status["parser"]["last_error"] in {"unknown_unit: heart_rate", "out_of_range: spo2"}  # type: ignore[index]
        for secret in SECRETS:
            assert secret not in dump, secret
            assert secret not in caplog.text, secret
        reasons = {line.split("reason=")[1].split()[0] for line in lines(caplog, "parser_rejected")}
        assert reasons >= {"unmapped_observation", "out_of_range", "unknown_unit"}

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()


# --- 8. a silent device: the transition is logged once, not every second ------------------------


def test_silent_device_logs_the_transition_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sim = PtySimulator(lambda state, rng: iter(()), link=tmp_path / "mute", name="mute")
    sim.replug()

    async def scenario() -> None:
        cfg = DeviceConfig(id="ox-2", format="masimo-ascii", transport="serial", port=str(sim.link), silent_after_s=0.3)
        session = SerialSession(cfg, lambda d, ms, at: None, lambda s: None)
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: session.status.state == DeviceState.SILENT, timeout=5)
            since = session.status.since
            await asyncio.sleep(2.6)  # five more empty reads (0.5 s timeout each)
            assert session.status.state == DeviceState.SILENT and session.status.since == since
            assert "no bytes" in session.status.detail
        finally:
            await stop(task)

    try:
        asyncio.run(scenario())
    finally:
        sim.unplug()
    silent = [line for line in lines(caplog, "device_state") if "state=silent" in line]
    assert len(silent) == 1, silent


# --- 9. glucose records are remembered only after their readings were committed ------------------


def test_glucose_record_remembered_only_after_commit(tmp_path: Path) -> None:
    cfg = DeviceConfig(id="gluco", format="ble-glucose", transport="ble", address="replay:glucose_meter.json")
    records = tmp_path / "devices" / "gluco.records.json"

    def remembered() -> list[int]:
        return json.loads(records.read_text()) if records.exists() else []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        commits: list[asyncio.Future[int]] = []
        got: list[Measurement] = []

        def sink(device_id: str, ms: list[Measurement], at: datetime) -> asyncio.Future[int]:
            got.extend(ms)
            commits.append(loop.create_future())
            return commits[-1]

        # then="disconnect": the meter leaves after each report; every reconnect asks for all records.
        link = BleDeviceLink.replay("glucose_meter.json", "ble-glucose", speed=50.0, then="disconnect")
        session = BleSession(
            cfg, sink, lambda s: None, link=link, records_path=records, backoff=Backoff(base=0.01, cap=0.03)
        )
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: len(commits) == 3)
            await wait_for(lambda: link.connections >= 3)  # reports resent while the commits are pending
            assert len(commits) == 3 and remembered() == []  # in flight: neither remembered nor duplicated
            for c in commits:
                c.set_result(0)  # the store failed: nothing committed
            await wait_for(lambda: len(commits) == 6)  # so the next report fetches them again
            assert remembered() == []
            seqs = [dict(m.extra)["sequence_number"] for m in got]
            assert sorted(seqs[:3]) == sorted(seqs[3:]) == [41, 42, 43]  # the replay may resume mid-report
            second = {seq: commits[3 + i] for i, seq in enumerate(seqs[3:])}  # one record per sink call
            second[41].set_result(1)
            second[42].set_result(1)
            await wait_for(lambda: sorted(remembered()) == [41, 42])
            connections = link.connections
            await wait_for(lambda: link.connections >= connections + 2)
            assert len(commits) == 6  # 41, 42 committed; 43 still in flight
            second[43].set_result(1)
            await wait_for(lambda: sorted(remembered()) == [41, 42, 43])
        finally:
            await stop(task)

    asyncio.run(scenario())

    async def after_restart() -> list[Measurement]:
        got: list[Measurement] = []
        link = BleDeviceLink.replay("glucose_meter.json", "ble-glucose", speed=50.0, then="idle")
        session = BleSession(cfg, lambda d, ms, at: got.extend(ms), lambda s: None, link=link, records_path=records)
        task = asyncio.create_task(session.run())
        await wait_for(lambda: len(link.racp_responses) == 1)
        await asyncio.sleep(0.05)
        await stop(task)
        return got

    assert asyncio.run(after_restart()) == []


def test_glucose_record_not_committed_is_fetched_again_after_a_restart(tmp_path: Path) -> None:
    cfg = DeviceConfig(id="gluco", format="ble-glucose", transport="ble", address="replay:glucose_meter.json")
    records = tmp_path / "gluco.records.json"

    async def one_run(result: int | None) -> list[int]:
        """One agent run whose pipeline resolves every commit with ``result`` (None: never)."""
        loop = asyncio.get_running_loop()
        got: list[Measurement] = []

        def sink(device_id: str, ms: list[Measurement], at: datetime) -> asyncio.Future[int]:
            got.extend(ms)
            fut: asyncio.Future[int] = loop.create_future()
            if result is not None:
                fut.set_result(result)
            return fut

        link = BleDeviceLink.replay("glucose_meter.json", "ble-glucose", speed=50.0, then="idle")
        session = BleSession(cfg, sink, lambda s: None, link=link, records_path=records)
        task = asyncio.create_task(session.run())
        await wait_for(lambda: len(link.racp_responses) == 1)
        await asyncio.sleep(0.05)
        await stop(task)
        return [int(dict(m.extra)["sequence_number"]) for m in got]

    assert asyncio.run(one_run(None)) == [41, 42, 43]  # crash before commit
    assert not records.exists()
    assert asyncio.run(one_run(0)) == [41, 42, 43]  # store failed / full queue dropped them
    assert not records.exists()
    assert asyncio.run(one_run(1)) == [41, 42, 43]  # committed this time
    assert json.loads(records.read_text()) == [41, 42, 43]
    assert asyncio.run(one_run(1)) == []  # and never again
