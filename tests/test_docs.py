"""The README documents every config key and every command-line option (sqlite-utils' docs test)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from edge_agent import config as cfg
from edge_agent.cli import build_parser

README = (Path(__file__).parents[1] / "README.md").read_text()

SECTIONS = {
    "gateway": cfg.GatewayConfig,
    "devices[]": cfg.DeviceConfig,
    "store": cfg.StoreConfig,
    "alerts": cfg.AlertConfig,
    "scheduler": cfg.SchedulerConfig,
    "scoring": cfg.ScoringSettings,
}
CONFIG_KEYS = [f"{section}.{f.name}" for section, dc in SECTIONS.items() for f in dataclasses.fields(dc)]


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_config_key_is_documented(key: str) -> None:
    assert f"`{key}`" in README


def _options() -> list[tuple[str, str]]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, parser in sub.choices.items():
        for action in parser._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    out.append((name, opt))
    return out


@pytest.mark.parametrize(("command", "option"), _options())
def test_cli_option_is_documented(command: str, option: str) -> None:
    lines = [line for line in README.splitlines() if f"edge-agent {command}" in line or f"`{option}`" in line]
    assert any(option in line for line in lines), f"edge-agent {command} {option} is not in README.md"
