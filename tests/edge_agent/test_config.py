"""Config loading: every wrong or missing key fails with a message naming it (and exit code 2)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.config import ConfigError, load_config

EXAMPLE = Path(__file__).parents[2] / "edge_agent" / "example-config.toml"

GOOD = """
version = 1
[gateway]
id = "gw-0001"
province = "ha-giang"
state_dir = "state"
[[devices]]
id = "ox-1"
format = "masimo-ascii"
transport = "serial"
port = "/dev/ttyUSB0"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.gateway.id == "gw-0001"
    assert cfg.devices[0].format == "masimo-ascii"
    assert cfg.store.group_commit_ms == 1000


def test_good_config_resolves_relative_state_dir(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.db_path.parent == tmp_path / "state"
    assert cfg.keystore_path == tmp_path / "state" / "keystore.json"


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace('id = "gw-0001"\n', ""), "gateway.id"),
        (lambda t: t.replace('province = "ha-giang"', "province = 7"), "gateway.province"),
        (lambda t: t.replace('format = "masimo-ascii"', 'format = "nope"'), "devices[0].format"),
        (lambda t: t.replace('transport = "serial"', 'transport = "carrier-pigeon"'), "devices[0].transport"),
        (lambda t: t.replace('port = "/dev/ttyUSB0"\n', ""), "devices[0].port"),
        (lambda t: t + "[store]\nquota_mb = -5\n", "store.quota_mb"),
        (lambda t: t + "[store]\nretention_dayz = 3\n", "store.retention_dayz"),
        (lambda t: t + '[alerts]\nspo2_low = "ninety"\n', "alerts.spo2_low"),
        (lambda t: t.replace("version = 1", "version = 9"), "version"),
        (lambda t: t.replace("version = 1", ""), "version"),
        (lambda t: "colour = 'blue'\n" + t, "colour"),
        (lambda t: t + "colour = 'blue'\n", "devices[0].colour"),
        (lambda t: t.replace('id = "ox-1"', 'id = "bad id!"'), "devices[0].id"),
    ],
)
def test_bad_key_is_named(tmp_path: Path, edit, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, edit(GOOD)))
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_duplicate_device_ids(tmp_path: Path) -> None:
    dup = GOOD + '[[devices]]\nid = "ox-1"\nformat = "masimo-ascii"\ntransport = "simulated"\n'
    with pytest.raises(ConfigError, match=r"devices\[1\]\.id: duplicate"):
        load_config(write(tmp_path, dup))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "version = = 1"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")


def test_cli_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('format = "masimo-ascii"', 'format = "nope"'))
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "devices[0].format" in proc.stderr


def test_timezone_defaults_to_vietnam_and_is_validated(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.gateway.timezone == "Asia/Ho_Chi_Minh"
    assert cfg.gateway.tz.utcoffset(datetime(2026, 11, 23)) == timedelta(hours=7)  # ICT, no DST
    with pytest.raises(ConfigError, match=r"gateway\.timezone: unknown time zone"):
        load_config(
            write(tmp_path, GOOD.replace('province = "ha-giang"', 'province = "ha-giang"\ntimezone = "Mars/Olympus"'))
        )


# --- hardening: the values the issue names ----------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[alerts]\nspo2_low = nan\n", "alerts.spo2_low"),  # silently disabled the SpO2 safety net
        ("[store]\ngroup_commit_ms = 1e12\n", "store.group_commit_ms"),  # stored nothing, ignored SIGINT
        ("[store]\nquota_mb = inf\n", "store.quota_mb"),
        ("[scheduler]\nstatus_interval_s = 1e18\n", "scheduler.status_interval_s"),
        ("[scoring]\nrenotify_s = nan\n", "scoring.renotify_s"),
        ("[scoring]\nwindow_s = inf\n", "scoring.window_s"),
    ],
)
def test_non_finite_or_absurd_numbers_are_refused(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD + extra))
    assert info.value.key == key
    assert str(info.value).startswith(key)
    if "nan" in extra or "inf" in extra:
        assert "must be a finite number" in str(info.value)
    else:
        assert "between" in str(info.value)


def test_spo2_low_range(tmp_path: Path) -> None:
    for bad in ("49.9", "100.1", "0", "-90"):
        with pytest.raises(ConfigError, match=r"^alerts\.spo2_low: must be between 50 and 100"):
            load_config(write(tmp_path, GOOD + f"[alerts]\nspo2_low = {bad}\n"))
    assert load_config(write(tmp_path, GOOD + "[alerts]\nspo2_low = 88\n")).alerts.spo2_low == 88


def test_spo2_scale_default_is_not_truncated(tmp_path: Path) -> None:
    # 1.5 used to become 1 silently
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD + "[scoring]\nspo2_scale_default = 1.5\n"))
    assert info.value.key == "scoring.spo2_scale_default"


@pytest.mark.parametrize("key", ["id", "province"])
def test_gateway_ids_must_not_end_in_a_newline(tmp_path: Path, key: str) -> None:
    value = {"id": "gw-0001", "province": "ha-giang"}[key]
    text = GOOD.replace(f'{key} = "{value}"', f'{key} = "{value}\\n"', 1)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == f"gateway.{key}"
    assert "\n" not in str(info.value)
    assert repr(value + "\n") in str(info.value)


def test_id_pattern_is_anchored_at_the_very_end() -> None:
    from edge_agent import config

    assert config._ID_RE.fullmatch("gw-1")
    assert not config._ID_RE.match("gw-1\n")
    assert not config._ID_RE.search("gw-1\n")


def test_example_config_commented_devices_load_when_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    head, _, tail = text.partition("# More devices:")
    tail = tail[tail.index("# [[devices]]") :]
    uncommented = "\n".join(line.removeprefix("# ") for line in tail.splitlines() if line.startswith("# "))
    path = tmp_path / "agent.toml"
    path.write_text(head + "\n" + uncommented + "\n")
    cfg = load_config(path)
    assert [d.transport for d in cfg.devices] == ["serial", "ble", "ble", "simulated"]
