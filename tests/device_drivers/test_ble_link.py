"""BLE transport: replaying the capture files through the link's bleak callback path,
Current Time and RACP writes, disconnect -> TransportError, reconnect with backoff."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device_drivers import encoders as enc
from device_drivers.base import TransportError
from device_drivers.ble import (
    CAPTURES_DIR,
    Backoff,
    BleakBackend,
    BleDeviceLink,
    CaptureEvent,
    ReplayBackend,
    current_time_value,
    full_uuid,
    load_capture,
)
from device_drivers.records import Measurement, Vital

NOW = datetime(2026, 11, 23, 1, 30, 0, tzinfo=UTC)


async def collect(link: BleDeviceLink) -> tuple[list[bytes], TransportError | None]:
    got: list[bytes] = []
    try:
        async for value in link.values():
            got.append(value)
    except TransportError as exc:
        return got, exc
    return got, None


def decode(link: BleDeviceLink, values: list[bytes]) -> list[Measurement]:
    parser = link.create_parser()
    return [m for v in values for m in parser.feed(v)]


def test_every_capture_file_parses_cleanly() -> None:
    formats = {
        "bp_cuff.json": "ble-blood-pressure",
        "thermometer.json": "ble-temperature",
        "scale.json": "ble-weight",
        "glucose_meter.json": "ble-glucose",
    }
    assert {p.name for p in CAPTURES_DIR.glob("*.json")} == set(formats)
    for name in formats:
        assert load_capture(CAPTURES_DIR / name)


def test_bp_cuff_replay() -> None:
    async def main() -> None:
        link = BleDeviceLink.replay("bp_cuff.json", "ble-blood-pressure", speed=1000.0, clock=lambda: NOW)
        values, exc = await collect(link)
        assert isinstance(exc, TransportError) and "disconnected" in str(exc)
        assert len(values) == 3  # intermediate cuff pressures (0x2A36) are not subscribed
        out = decode(link, values)
        final = [m.value for m in out if m.vital is Vital.BP_SYSTOLIC]
        assert final == [138, 128, 131]
        assert [m.value for m in out if m.vital is Vital.HEART_RATE] == [81, 76, 79]
        backend = link.backend
        assert isinstance(backend, ReplayBackend)
        assert backend.writes == [("2a2b", current_time_value(NOW))]

    asyncio.run(main())


def test_thermometer_replay_and_idle_device() -> None:
    async def main() -> None:
        link = BleDeviceLink.replay("thermometer.json", "ble-temperature", speed=1000.0, then="idle")
        got: list[bytes] = []

        async def consume() -> None:
            async for v in link.values():
                got.append(v)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        assert not task.done()  # an idle device keeps the link open
        task.cancel()
        await link.close()
        assert [m.value for m in decode(link, got)] == [37.8, pytest.approx(37.9, abs=0.01)]

    asyncio.run(main())


def test_scale_replay_uses_feature_resolution() -> None:
    async def main() -> None:
        link = BleDeviceLink.replay("scale.json", "ble-weight", speed=1000.0)
        values, _ = await collect(link)
        parser = link.create_parser()
        out = [m for v in values for m in parser.feed(v)]
        assert [m.value for m in out] == [68.45]
        assert dict(out[0].extra)["height_m"] == 1.68 and dict(out[0].extra)["bmi"] == 24.3
        assert parser.stats.rejected["measurement_unsuccessful"] == 1

    asyncio.run(main())


def test_glucose_racp_request_and_dedupe_after_reconnect() -> None:
    async def main() -> None:
        backend = ReplayBackend.from_file("glucose_meter.json", "ble-glucose", speed=1000.0)
        link = BleDeviceLink(backend, "ble-glucose", clock=lambda: NOW)
        first, _ = await collect(link)
        again, _ = await collect(link)  # reconnect: the meter reports all records again
        assert [w for w in backend.writes if w[0] == "2a52"] == [("2a52", b"\x01\x01")] * 2
        assert link.racp_responses == [b"\x06\x00\x01\x01"] * 2
        assert len(first) == 3 and again == []
        seqs = [dict(m.extra)["sequence_number"] for m in decode(link, first)]
        assert seqs == [41, 42, 43]

    asyncio.run(main())


def test_values_forever_reconnects_with_backoff() -> None:
    events = [CaptureEvent(0.01 * i, "2a37", enc.heart_rate(60 + i)) for i in range(6)]
    backend = ReplayBackend(events, "2a37", speed=100.0, fail_connects=2, drop_after=2, extra_offered=())
    link = BleDeviceLink(backend, "ble-heart-rate")
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    async def main() -> list[bytes]:
        got: list[bytes] = []
        async for v in link.values_forever(Backoff(base=1.0, cap=8.0), rng=random.Random(3), sleep=fake_sleep):
            got.append(v)
            if len(got) == 6:
                break
        await link.close()
        return got

    got = asyncio.run(main())
    assert [link.create_parser().feed(v)[0].value for v in got] == [60, 61, 60, 61, 60, 61]
    # two failed connects (backoff grows: attempt 0 <= 1 s, attempt 1 <= 2 s), then drops after
    # every 2 values, each resetting the counter because values were delivered
    assert len(sleeps) >= 4 and sleeps[0] <= 1.0 and sleeps[1] <= 2.0
    assert all(s <= 1.0 for s in sleeps[2:])
    assert backend.opens >= 5 and link.connections >= 3
    assert not any(w[0] == "2a2b" for w in backend.writes)  # Current Time not offered: not written


def test_values_forever_gives_up_after_max_attempts() -> None:
    backend = ReplayBackend([], "2a37", fail_connects=10)

    async def main() -> None:
        link = BleDeviceLink(backend, "ble-heart-rate")

        async def no_sleep(_s: float) -> None:
            return None

        with pytest.raises(TransportError, match="cannot connect"):
            async for _ in link.values_forever(max_attempts=3, sleep=no_sleep):
                pass

    asyncio.run(main())
    assert backend.opens == 3


def test_backoff_full_jitter_bounds() -> None:
    rng = random.Random(0)
    b = Backoff(base=0.5, cap=10.0)
    for attempt in range(12):
        d = b.delay(attempt, rng)
        assert 0 <= d <= min(10.0, 0.5 * 2**attempt)


def test_helpers_and_constructors(tmp_path: Path) -> None:
    assert full_uuid("2a35") == "00002a35-0000-1000-8000-00805f9b34fb"
    ct = current_time_value(datetime(2026, 11, 23, 1, 30, 5, 500000, tzinfo=UTC))
    assert ct == bytes([0xEA, 0x07, 11, 23, 1, 30, 5, 1, 128, 1])  # Monday = 1
    link = BleDeviceLink.from_address("AA:BB:CC:DD:EE:FF", "ble-blood-pressure")
    assert isinstance(link.backend, BleakBackend) and link.backend.address == "AA:BB:CC:DD:EE:FF"
    link = BleDeviceLink.discover("ble-glucose")
    assert isinstance(link.backend, BleakBackend) and link.backend.service == "1808"
    with pytest.raises(ValueError):
        BleDeviceLink.from_address("AA:BB:CC:DD:EE:FF", "nonin-format2")
    with pytest.raises(ValueError):
        BleakBackend()


class _FakeServices:
    def __init__(self, chars: set[str]) -> None:
        self.chars = chars

    def get_characteristic(self, uuid: str) -> object | None:
        return uuid if uuid in self.chars else None


class _FakeBleakClient:
    """Just the BleakClient surface the adapter uses; write_gatt_char fails like bleak does."""

    def __init__(self) -> None:
        self.services = _FakeServices({full_uuid("2a35")})
        self.callbacks: dict[str, object] = {}

    async def start_notify(self, uuid: str, callback: object) -> None:
        self.callbacks[uuid] = callback

    async def read_gatt_char(self, uuid: str) -> bytearray:
        return bytearray(b"\x01")

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool = True) -> None:
        from bleak.exc import BleakError

        raise BleakError("not permitted")

    async def disconnect(self) -> None:
        return None


def test_bleak_adapter_converts_errors_and_uses_full_uuids() -> None:
    from device_drivers.ble import _BleakClientAdapter

    async def main() -> None:
        fake = _FakeBleakClient()
        adapter = _BleakClientAdapter(fake)
        assert adapter.offers("2a35") and not adapter.offers("2a2b")
        await adapter.start_notify("2a35", lambda _s, _d: None)
        assert full_uuid("2a35") in fake.callbacks
        assert await adapter.read("2a35") == b"\x01"
        with pytest.raises(TransportError, match="write 2a2b failed"):
            await adapter.write("2a2b", b"\x00")

    asyncio.run(main())


def test_bleak_backend_without_a_radio_is_a_transport_error() -> None:
    # On a box without BlueZ (CI) bleak cannot even reach the adapter; with one, no device at
    # this address answers within the timeout. Either way: TransportError, never bleak's own.
    async def main() -> None:
        with pytest.raises(TransportError, match="cannot connect"):
            await BleakBackend(address="00:00:00:00:00:01", connect_timeout=1.0).open(lambda: None)

    asyncio.run(main())
