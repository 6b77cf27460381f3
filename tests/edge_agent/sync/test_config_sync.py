"""``[sync]`` in the config: optional (offline without it), every key checked and named in errors,
paths relative to the config file, numbers within the ranges of NUMBER_RULES."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import NUMBER_RULES, ConfigError, SyncConfig, broker_address, load_config, parse_config

BASE: dict[str, Any] = {"version": 1, "gateway": {"id": "gw-0001", "province": "p1", "state_dir": "s"}}
SYNC = {
    "broker": "mqtts://hub.example.vn:8883",
    "ca": "ca.pem",
    "cert": "gw.pem",
    "key": "gw.key",
    "hub_keys": "h.json",
}


def parse(sync: dict[str, Any] | None, base_dir: Path = Path("/etc/station-edge")) -> SyncConfig | None:
    data = dict(BASE) if sync is None else BASE | {"sync": sync}
    return parse_config(data, base_dir=base_dir).sync


def test_no_sync_table_means_offline() -> None:
    assert parse(None) is None


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "agent.toml"
    path.parent.mkdir()
    lines = "\n".join(f'{k} = "{v}"' for k, v in SYNC.items())
    path.write_text(f'version = 1\n[gateway]\nid = "gw-0001"\nprovince = "p1"\n[sync]\n{lines}\nca_unused = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "sync.ca_unused"
    path.write_text(path.read_text().replace("ca_unused = 1\n", ""))
    sync = load_config(path).sync
    assert sync is not None
    assert sync.ca == tmp_path / "etc" / "ca.pem" and sync.hub_keys == tmp_path / "etc" / "h.json"
    assert (sync.host, sync.port) == ("hub.example.vn", 8883)
    for name in ("batch_max", "batch_max_age_s", "in_flight", "heartbeat_s", "keepalive_s", "session_expiry_s"):
        assert getattr(sync, name) == NUMBER_RULES[f"sync.{name}"].default
    assert (sync.batch_max, sync.in_flight, sync.session_expiry_s) == (500, 4, 7 * 24 * 3600)


def test_absolute_paths_stay() -> None:
    sync = parse(SYNC | {"cert": "/etc/ssl/gw.pem"})
    assert sync is not None and sync.cert == Path("/etc/ssl/gw.pem")


@pytest.mark.parametrize("key", ["broker", "ca", "cert", "key", "hub_keys"])
def test_required_keys(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse({k: v for k, v in SYNC.items() if k != key})
    assert info.value.key == f"sync.{key}" and "missing required key" in str(info.value)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mqtt://hub:1883", "TLS only"),
        ("https://hub", "TLS only"),
        ("mqtts://", "no host"),
        ("mqtts://hub:0", "port"),
        ("mqtts://hub:70000", "port"),
        ("mqtts://hub:x", "port"),
        ("mqtts://hub/path", "nothing after the port"),
        ("mqtts://user:pw@hub", "nothing after the port"),
        ("", "must not be empty"),
    ],
)
def test_bad_broker_urls_name_the_key(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(SYNC | {"broker": url})
    assert info.value.key == "sync.broker" and problem in str(info.value)


def test_broker_address_forms() -> None:
    assert broker_address("mqtts://hub") == ("hub", 8883)
    assert broker_address("mqtts://10.0.0.5:18883") == ("10.0.0.5", 18883)
    assert broker_address("mqtts://[::1]:8883") == ("::1", 8883)


def test_empty_path_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse(SYNC | {"key": ""})
    assert info.value.key == "sync.key"


def test_ranges() -> None:
    assert (NUMBER_RULES["sync.in_flight"].minimum, NUMBER_RULES["sync.in_flight"].maximum) == (1, 8)
    assert NUMBER_RULES["sync.keepalive_s"].maximum == 65_535  # MQTT's two-byte keep alive
    assert NUMBER_RULES["sync.session_expiry_s"].maximum == 2**32 - 1  # "never expires"
    with pytest.raises(ConfigError) as info:
        parse(SYNC | {"in_flight": 9})
    assert info.value.key == "sync.in_flight" and "between 1 and 8" in str(info.value)
    with pytest.raises(ConfigError):
        parse(SYNC | {"batch_max": 10.5})
    assert parse(SYNC | {"batch_max_age_s": 0}) is not None


def test_docs_have_a_sync_section() -> None:
    example = (Path(__file__).parents[3] / "docs" / "config.md").read_text()
    assert "## `[sync]`" in example
