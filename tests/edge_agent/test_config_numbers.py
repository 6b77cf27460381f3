"""Every numeric key has an explicit, finite range, and the validator enforces exactly that range.

``edge_agent.config.NUMBER_RULES`` is the one table of (key, default, minimum, maximum); the
loader uses it, tests/test_docs.py checks docs/config.md and the README against it, and these
tests check that the loader accepts the bounds, refuses anything just outside them, and refuses
nan/inf with "must be a finite number".
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import config as cfgmod
from edge_agent.config import NUMBER_RULES, ConfigError, NumberRule, parse_config
from edge_agent.scoring.settings import SCORING_RANGES, ScoringSettings, ScoringSettingsError

RULES = sorted(NUMBER_RULES.values(), key=lambda r: r.key)
EVENT_KEYS = ("desaturation_s", "tachycardia_s", "bradycardia_s", "fever_s", "hypothermia_s")
# [sync]'s keys that have no default (the numeric keys are tried on top of these)
SYNC_REQUIRED = {
    "broker": "mqtts://hub.example:8883",
    "ca": "ca.pem",
    "cert": "c.pem",
    "key": "k.pem",
    "hub_keys": "h.json",
}


def document(rule: NumberRule, value: object) -> dict[str, Any]:
    """A minimal valid config with ``value`` at ``rule.key`` (and nothing else that could fail)."""
    data: dict[str, Any] = {"version": 1, "gateway": {"id": "gw-1", "province": "hg", "state_dir": "s"}}
    section, _, name = rule.key.rpartition(".")
    if section == "devices[]":
        device: dict[str, Any] = {"id": "d-1", "format": "masimo-ascii", "transport": "simulated"}
        if name == "baudrate":
            device = {"id": "d-1", "format": "masimo-ascii", "transport": "serial", "port": "/dev/ttyUSB0"}
        data["devices"] = [device | {name: value}]
    elif section == "scoring" and name == "window_s":
        # the window must also cover the longest sustained-event duration; take those out of play
        data["scoring"] = dict.fromkeys(EVENT_KEYS, 0) | {name: value}
    elif section == "scoring" and name in EVENT_KEYS:
        data["scoring"] = {"window_s": 86_400, name: value}
    elif section == "sync":
        data["sync"] = SYNC_REQUIRED | {name: value}
    else:
        data[section] = {name: value}
    return data


def load_value(tmp_path: Path, rule: NumberRule, value: object) -> Any:
    cfg = parse_config(document(rule, value), base_dir=tmp_path)
    section, _, name = rule.key.rpartition(".")
    holder = cfg.devices[0] if section == "devices[]" else getattr(cfg, section)
    return getattr(holder, name)


def below(rule: NumberRule) -> float:
    return rule.minimum - 1 if rule.integer else math.nextafter(rule.minimum, -math.inf)


def above(rule: NumberRule) -> float:
    return rule.maximum + 1 if rule.integer else math.nextafter(rule.maximum, math.inf)


def test_every_numeric_field_has_a_rule() -> None:
    numeric: list[str] = []
    sections: dict[str, type] = {
        "devices[]": cfgmod.DeviceConfig,
        "store": cfgmod.StoreConfig,
        "alerts": cfgmod.AlertConfig,
        "scheduler": cfgmod.SchedulerConfig,
        "scoring": ScoringSettings,
        "sync": cfgmod.SyncConfig,
        "dashboard": cfgmod.DashboardConfig,
    }
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            if f.type in ("float", "int", "int | None") or f.name in SCORING_RANGES:
                numeric.append(f"{section}.{f.name}")
    assert sorted(numeric) == sorted(NUMBER_RULES)
    for rule in RULES:
        assert math.isfinite(rule.minimum) and math.isfinite(rule.maximum) and rule.minimum < rule.maximum


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.key)
def test_bounds_are_accepted(tmp_path: Path, rule: NumberRule) -> None:
    lo, hi = (rule.choices[0], rule.choices[-1]) if rule.choices else (rule.minimum, rule.maximum)
    assert load_value(tmp_path, rule, int(lo) if rule.integer else lo) == lo
    assert load_value(tmp_path, rule, int(hi) if rule.integer else hi) == hi
    if rule.default is not None:
        assert load_value(tmp_path, rule, rule.default) == rule.default


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.key)
def test_just_outside_the_range_is_refused_naming_the_key(tmp_path: Path, rule: NumberRule) -> None:
    for value in (below(rule), above(rule)):
        with pytest.raises(ConfigError) as info:
            load_value(tmp_path, rule, int(value) if rule.integer else value)
        assert info.value.key == rule.key.replace("devices[]", "devices[0]")
        assert "between" in str(info.value) or "standard" in str(info.value)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.key)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_refused(tmp_path: Path, rule: NumberRule, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        load_value(tmp_path, rule, value)
    assert info.value.key == rule.key.replace("devices[]", "devices[0]")
    assert "must be a finite number" in str(info.value)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.key)
@pytest.mark.parametrize("value", ["12", True, [1], {"a": 1}])
def test_non_numbers_are_refused(tmp_path: Path, rule: NumberRule, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        load_value(tmp_path, rule, value)
    assert info.value.key == rule.key.replace("devices[]", "devices[0]")


@settings(max_examples=300, deadline=None)
@given(
    rule=st.sampled_from(RULES),
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(min_value=-10, max_value=5_000_000),
    ),
)
def test_accepted_exactly_when_finite_and_in_range(rule: NumberRule, value: float) -> None:
    tmp_path = Path("/nonexistent-base")  # parse_config does not touch the disk for these keys
    in_range = math.isfinite(value) and rule.minimum <= value <= rule.maximum
    if rule.integer:
        in_range = in_range and isinstance(value, int)
    if rule.choices:
        in_range = in_range and value in rule.choices
    try:
        got = load_value(tmp_path, rule, value)
    except ConfigError as exc:
        assert not in_range, f"{rule.key}={value!r} refused: {exc}"
        assert exc.key == rule.key.replace("devices[]", "devices[0]")
        assert "\n" not in str(exc)
    else:
        assert in_range, f"{rule.key}={value!r} accepted"
        assert got == value


def test_rule_defaults_are_the_dataclass_defaults() -> None:
    assert NUMBER_RULES["store.quota_mb"].default == cfgmod.StoreConfig().quota_mb
    assert NUMBER_RULES["alerts.spo2_low"].default == cfgmod.AlertConfig().spo2_low
    assert NUMBER_RULES["devices[].baudrate"].default is None  # the format's own line speed
    for name in SCORING_RANGES:
        assert NUMBER_RULES[f"scoring.{name}"].default == getattr(ScoringSettings(), name)


# --- ScoringSettings on its own (it is also built in code, not only from TOML) ------------------


@pytest.mark.parametrize("name", sorted(SCORING_RANGES))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_scoring_settings_refuse_non_finite_values(name: str, value: float) -> None:
    with pytest.raises(ScoringSettingsError) as info:
        ScoringSettings(**{name: value})  # type: ignore[arg-type]
    assert info.value.key == name
    assert "must be a finite number" in str(info.value)


@pytest.mark.parametrize("name", sorted(SCORING_RANGES))
def test_scoring_settings_refuse_values_above_the_maximum(name: str) -> None:
    bounds = SCORING_RANGES[name]
    with pytest.raises(ScoringSettingsError) as info:
        ScoringSettings(**{name: bounds.maximum + 1})  # type: ignore[arg-type]
    assert info.value.key == name


def test_scoring_spo2_scale_must_be_an_integer() -> None:
    with pytest.raises(ScoringSettingsError) as info:
        ScoringSettings(spo2_scale_default=1.5)  # type: ignore[arg-type]
    assert info.value.key == "spo2_scale_default"
