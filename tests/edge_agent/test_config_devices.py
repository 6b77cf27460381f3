"""``[[devices]]``: transport × format × scenario, and every key that only one transport uses.

Each wrong combination is refused at load time with the offending key named and a hint saying
what to write instead (docs/config.md "Devices").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from device_drivers.registry import FORMATS
from device_drivers.simulators import FRAME_SOURCES, SCENARIOS
from edge_agent.config import ConfigError, parse_config

BLE_FORMATS = sorted(name for name, spec in FORMATS.items() if spec.kind == "ble")
SERIAL_FORMATS = sorted(name for name, spec in FORMATS.items() if spec.kind == "serial")


def load(tmp_path: Path, *devices: dict[str, Any]) -> Any:
    data = {"version": 1, "gateway": {"id": "gw-1", "province": "hg", "state_dir": "s"}, "devices": list(devices)}
    return parse_config(data, base_dir=tmp_path)


def refused(tmp_path: Path, *devices: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, *devices)
    assert "\n" not in str(info.value)
    return info.value


SERIAL = {"id": "ox-1", "format": "masimo-ascii", "transport": "serial", "port": "/dev/ttyUSB0"}
BLE = {"id": "bp-1", "format": "ble-blood-pressure", "transport": "ble", "address": "C0:26:DA:01:02:03"}
REPLAY = {"id": "bp-1", "format": "ble-blood-pressure", "transport": "ble", "address": "replay:bp_cuff.json"}
SIM = {"id": "ox-1", "format": "masimo-ascii", "transport": "simulated"}


def test_the_good_combinations_load(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        SERIAL | {"baudrate": 19200, "silent_after_s": 10},
        BLE,
        REPLAY | {"id": "bp-2", "speed": 4.0},
        {"id": "th-1", "format": "ble-temperature", "transport": "ble"},  # discovery by service UUID
        SIM | {"id": "ox-2", "scenario": "desaturation", "speed": 8.0, "silent_after_s": 5},
        {"id": "mac-1", "format": "ble-weight", "transport": "ble", "address": "5B3E4B6A-1C2D-4E5F-8A9B-0C1D2E3F4A5B"},
    )
    assert [d.transport for d in cfg.devices] == ["serial", "ble", "ble", "ble", "simulated", "ble"]
    assert cfg.devices[0].baudrate == 19200
    assert cfg.devices[2].speed == 4.0
    assert cfg.devices[4].scenario == "desaturation"


def test_unknown_scenario_lists_the_known_ones(tmp_path: Path) -> None:
    err = refused(tmp_path, SIM | {"scenario": "desat"})
    assert err.key == "devices[0].scenario"
    assert "'desat'" in str(err)
    for name in SCENARIOS:
        assert name in str(err)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_simulator_scenario_is_accepted(tmp_path: Path, scenario: str) -> None:
    assert load(tmp_path, SIM | {"scenario": scenario}).devices[0].scenario == scenario


@pytest.mark.parametrize("fmt", BLE_FORMATS)
def test_ble_format_cannot_be_simulated_and_the_message_says_replay(tmp_path: Path, fmt: str) -> None:
    err = refused(tmp_path, {"id": "d-1", "format": fmt, "transport": "simulated"})
    assert err.key == "devices[0].transport"
    assert 'transport = "ble"' in str(err)
    assert 'address = "replay:' in str(err)
    assert "serial simulators only" in str(err)


def test_ble_format_with_the_default_transport_is_refused(tmp_path: Path) -> None:
    # transport defaults to "simulated"; a BLE device without one must not slip through.
    err = refused(tmp_path, {"id": "d-1", "format": "ble-weight"})
    assert err.key == "devices[0].transport"
    assert "replay:" in str(err)


@pytest.mark.parametrize("fmt", SERIAL_FORMATS)
def test_every_serial_format_has_a_simulator(tmp_path: Path, fmt: str) -> None:
    assert fmt in FRAME_SOURCES
    assert load(tmp_path, {"id": "d-1", "format": fmt, "transport": "simulated"}).devices[0].format == fmt


@pytest.mark.parametrize(
    ("device", "key", "words"),
    [
        # serial device with BLE-only keys
        (SERIAL | {"address": "C0:26:DA:01:02:03"}, "address", "only BLE devices"),
        (SERIAL | {"scenario": "desaturation"}, "scenario", "only means something for transport 'simulated'"),
        (SERIAL | {"speed": 2.0}, "speed", "simulated devices and replayed BLE captures"),
        # BLE device with serial-only keys
        (BLE | {"port": "/dev/ttyUSB0"}, "port", "only serial devices"),
        (BLE | {"baudrate": 9600}, "baudrate", "only serial devices"),
        (BLE | {"scenario": "normal"}, "scenario", "only means something for transport 'simulated'"),
        (BLE | {"speed": 2.0}, "speed", "replayed BLE captures"),
        (BLE | {"silent_after_s": 60}, "silent_after_s", "never 'silent'"),
        # simulated device with real-device keys
        (SIM | {"port": "/dev/ttyUSB0"}, "port", "pseudo-terminal"),
        (SIM | {"address": "replay:bp_cuff.json"}, "address", "only BLE devices"),
        (SIM | {"baudrate": 9600}, "baudrate", "pseudo-terminal"),
    ],
)
def test_key_that_the_transport_does_not_use_is_refused(
    tmp_path: Path, device: dict[str, Any], key: str, words: str
) -> None:
    err = refused(tmp_path, device)
    assert err.key == f"devices[0].{key}"
    assert words in str(err)


@pytest.mark.parametrize(
    ("device", "key", "words"),
    [
        (SERIAL | {"format": "ble-glucose"}, "transport", 'transport = "ble"'),
        (BLE | {"format": "nonin-format2"}, "transport", 'transport = "serial"'),
        (SERIAL | {"port": ""}, "port", "must not be empty"),
        (SERIAL | {"port": "usb:0403"}, "port", "usb:VID:PID"),
        (SERIAL | {"port": "usb:xyz:6001"}, "port", "hex"),
        (SERIAL | {"port": "/dev/tty\nUSB0"}, "port", "control characters"),
        (SERIAL | {"baudrate": 96000}, "baudrate", "standard"),
        (SERIAL | {"baudrate": 9600.0}, "baudrate", "integer"),
        (SERIAL | {"baudrate": True}, "baudrate", "integer"),
        (BLE | {"address": "not-an-address"}, "address", "AA:BB:CC:DD:EE:FF"),
        (BLE | {"address": ""}, "address", "must not be empty"),
        (REPLAY | {"address": "replay:nope.json"}, "address", "not found"),
        (REPLAY | {"address": "replay:bp_cuff.txt"}, "address", ".json"),
        (REPLAY | {"address": "replay:"}, "address", ".json"),
        (REPLAY | {"format": "ble-temperature"}, "address", "2a1c"),  # a BP capture for a thermometer
    ],
)
def test_bad_device_value_is_refused(tmp_path: Path, device: dict[str, Any], key: str, words: str) -> None:
    err = refused(tmp_path, device)
    assert err.key == f"devices[0].{key}"
    assert words in str(err)


def test_replay_capture_by_absolute_path(tmp_path: Path) -> None:
    capture = tmp_path / "cuff.json"
    capture.write_text('[{"t": 1.0, "char": "2a35", "hex": "1e8000540063000000"}]')
    cfg = load(tmp_path, REPLAY | {"address": f"replay:{capture}"})
    assert cfg.devices[0].address == f"replay:{capture}"
    capture.write_text("{not json")
    assert "cannot be read" in str(refused(tmp_path, REPLAY | {"address": f"replay:{capture}"}))


def test_two_devices_on_one_port_or_address(tmp_path: Path) -> None:
    err = refused(tmp_path, SERIAL, SERIAL | {"id": "ox-2", "format": "nonin-format2"})
    assert err.key == "devices[1].port"
    assert "devices[0]" in str(err)
    err = refused(tmp_path, BLE, BLE | {"id": "bp-2"})
    assert err.key == "devices[1].address"
    # two replays of the same capture are two independent devices: fine
    assert len(load(tmp_path, REPLAY, REPLAY | {"id": "bp-2"}).devices) == 2


def test_device_id_must_not_end_in_a_newline(tmp_path: Path) -> None:
    err = refused(tmp_path, SIM | {"id": "ox-1\n"})
    assert err.key == "devices[0].id"
    assert "'ox-1\\n'" in str(err)


def test_devices_must_be_an_array_of_tables(tmp_path: Path) -> None:
    data = {"version": 1, "gateway": {"id": "gw-1", "province": "hg"}, "devices": {}}
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    assert info.value.key == "devices"
