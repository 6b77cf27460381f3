"""A serial device session survives the device disappearing and coming back, without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from device_drivers.backoff import Backoff
from device_drivers.records import Measurement
from device_drivers.simulators import PtySimulator, create_simulator
from edge_agent.config import DeviceConfig
from edge_agent.devices import DeviceState, DeviceStatus, SerialSession


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def make_session(
    port: Path, silent_after_s: float = 30.0
) -> tuple[SerialSession, list[Measurement], list[DeviceState]]:
    got: list[Measurement] = []
    states: list[DeviceState] = []

    def sink(device_id: str, ms: list[Measurement], at: datetime) -> None:
        got.extend(ms)

    def on_state(status: DeviceStatus) -> None:
        states.append(status.state)

    cfg = DeviceConfig(
        id="ox-1", format="masimo-ascii", transport="serial", port=str(port), silent_after_s=silent_after_s
    )
    return SerialSession(cfg, sink, on_state, backoff=Backoff(base=0.05, cap=0.2)), got, states


def test_unplug_and_replug(masimo_sim: PtySimulator) -> None:
    async def scenario() -> None:
        session, got, states = make_session(masimo_sim.link)
        task = asyncio.create_task(session.run())
        await wait_for(lambda: len(got) >= 6)
        masimo_sim.unplug()
        await wait_for(lambda: session.status.state in (DeviceState.DISCONNECTED, DeviceState.ERROR))
        before = len(got)
        await asyncio.sleep(0.5)  # several reconnect attempts fail while unplugged
        assert len(got) == before
        masimo_sim.replug()
        await wait_for(lambda: len(got) >= before + 6)
        assert session.status.state == DeviceState.READING
        assert session.status.reconnects >= 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert states[0] == DeviceState.CONNECTED
        assert DeviceState.DISCONNECTED in states and states[-1] == DeviceState.STOPPED

    asyncio.run(scenario())


def test_missing_device_then_plugged_in(tmp_path: Path) -> None:
    sim = create_simulator("masimo-ascii", link=tmp_path / "late", speed=20)

    async def scenario() -> None:
        session, got, _ = make_session(sim.link)
        task = asyncio.create_task(session.run())
        await wait_for(lambda: session.status.state == DeviceState.ERROR)
        assert "cannot open" in session.status.detail
        sim.start()
        try:
            await wait_for(lambda: len(got) >= 3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            sim.stop()

    asyncio.run(scenario())


def test_wedged_port_is_reported_silent(tmp_path: Path) -> None:
    sim = PtySimulator(lambda state, rng: iter(()), link=tmp_path / "mute", name="mute")
    sim.replug()  # plugged in, but the device never sends a byte

    async def scenario() -> None:
        session, _, _ = make_session(sim.link, silent_after_s=0.5)
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: session.status.state == DeviceState.SILENT, timeout=5)
            assert "no bytes" in session.status.detail
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            sim.unplug()

    asyncio.run(scenario())


def test_hl7_monitor_gets_an_ack_per_message(tmp_path: Path) -> None:
    sim = create_simulator("hl7v2", link=tmp_path / "monitor", speed=24.0).start()  # a message every 0.5 s

    async def scenario() -> None:
        got: list[Measurement] = []
        cfg = DeviceConfig(id="mon-1", format="hl7v2", transport="serial", port=str(sim.link))
        session = SerialSession(cfg, lambda d, ms, at: got.extend(ms), lambda s: None)
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: sim.received.count(b"MSA|AA|") >= 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert {str(m.vital) for m in got} >= {"heart_rate", "spo2", "bp_systolic", "body_temp"}
        # Framed as MLLP, one ACK per ORU received (protocols.md §2.4).
        assert sim.received.startswith(b"\x0b") and b"\x1c\x0d" in sim.received

    try:
        asyncio.run(scenario())
    finally:
        sim.stop()


def test_ble_session_replays_and_reconnects() -> None:
    from device_drivers.ble import BleDeviceLink
    from edge_agent.devices import BleSession

    async def scenario() -> None:
        got: list[Measurement] = []
        states: list[DeviceState] = []
        cfg = DeviceConfig(id="cuff", format="ble-blood-pressure", transport="ble", address="replay:bp_cuff.json")
        # then="disconnect": the cuff drops after its capture, as a cuff does after a measurement.
        link = BleDeviceLink.replay("bp_cuff.json", "ble-blood-pressure", speed=50.0, then="disconnect")
        session = BleSession(
            cfg,
            lambda d, ms, at: got.extend(ms),
            lambda s: states.append(s.state),
            link=link,
            backoff=Backoff(base=0.01, cap=0.05),
        )
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: session.status.reconnects >= 1 and link.connections >= 2)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        systolic = [m.value for m in got if str(m.vital) == "bp_systolic"]
        assert 128.0 in systolic  # the capture's measurement (captures/README.md)
        assert DeviceState.DISCONNECTED in states and states[-1] == DeviceState.STOPPED

    asyncio.run(scenario())


def test_glucose_records_are_not_delivered_twice_across_restarts(tmp_path: Path) -> None:
    """The meter answers every RACP "report all" with all its stored records (GLS); a restarted
    agent must not store them again under new uids."""
    from device_drivers.ble import BleDeviceLink
    from edge_agent.devices import BleSession

    cfg = DeviceConfig(id="gluco", format="ble-glucose", transport="ble", address="replay:glucose_meter.json")
    records = tmp_path / "devices" / "gluco.records.json"

    async def one_run() -> list[Measurement]:
        got: list[Measurement] = []

        def sink(device_id: str, ms: list[Measurement], at: datetime) -> asyncio.Future[int]:
            # The pipeline's contract: a future of the count committed. (This test's sink used to
            # return None; a record is now remembered only after its batch committed.)
            got.extend(ms)
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            done.set_result(len(ms))
            return done

        link = BleDeviceLink.replay("glucose_meter.json", "ble-glucose", speed=50.0, then="idle")
        session = BleSession(cfg, sink, lambda s: None, link=link, records_path=records)
        task = asyncio.create_task(session.run())
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return got

    first_run = asyncio.run(one_run())
    assert len(first_run) == 3  # the capture's three stored records (captures/README.md)
    assert asyncio.run(one_run()) == []  # after a "restart": nothing new, nothing duplicated
