"""The README and docs/config.md document every config key and every command-line option
(sqlite-utils' docs test), and the ranges they document are the ones the validator enforces.

Nothing is generated: the docs are written by hand, and these tests compare them with
``edge_agent.config.NUMBER_RULES`` (the table the loader validates with) and the dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from device_drivers.simulators import SCENARIOS
from edge_agent import config as cfg
from edge_agent.cli import build_parser
from edge_agent.scoring.settings import ScoringSettings

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
CONFIG_MD_PATH = ROOT / "docs" / "config.md"
CONFIG_MD = CONFIG_MD_PATH.read_text() if CONFIG_MD_PATH.exists() else ""

SECTIONS = {
    "gateway": cfg.GatewayConfig,
    "devices[]": cfg.DeviceConfig,
    "store": cfg.StoreConfig,
    "alerts": cfg.AlertConfig,
    "scheduler": cfg.SchedulerConfig,
    "scoring": ScoringSettings,
    "sync": cfg.SyncConfig,
    "dashboard": cfg.DashboardConfig,
}
TOP_LEVEL = ["version", "models_dir"]  # AgentConfig's own keys (its other fields are the tables)
CONFIG_KEYS = TOP_LEVEL + [f"{section}.{f.name}" for section, dc in SECTIONS.items() for f in dataclasses.fields(dc)]


def readme_configuration() -> str:
    start = README.index("## Configuration")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def key_rows(markdown: str) -> dict[str, dict[str, str]]:
    """Rows of every markdown table whose first cell is a backticked key: key -> {header: cell}."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if i + 1 < len(lines) and re.fullmatch(r"\|[\s\-|:]+\|", lines[i + 1].strip()):
            header = [c.lower() for c in cells]
            continue
        match = re.fullmatch(r"`([^`]+)`", cells[0]) if cells else None
        if header and match and not set(cells) <= {"---"}:
            rows[match.group(1)] = dict(zip(header, cells, strict=False))
    return rows


def numbers(cell: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?", cell)]


README_ROWS = key_rows(readme_configuration())
CONFIG_MD_ROWS = key_rows(CONFIG_MD)
DOCS = {"README.md": README_ROWS, "docs/config.md": CONFIG_MD_ROWS}
RULES = sorted(cfg.NUMBER_RULES.values(), key=lambda r: r.key)


def test_config_md_exists_and_is_referenced() -> None:
    assert CONFIG_MD_PATH.exists(), "docs/config.md is named in `edge-agent run --help` and the example config"
    assert "docs/config.md" in (ROOT / "edge_agent" / "example-config.toml").read_text()
    run = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    assert "docs/config.md" in run.format_help()


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_config_key_is_documented(key: str) -> None:
    assert f"`{key}`" in README
    assert key in README_ROWS, f"{key} has no row in the README's Configuration table"
    assert key in CONFIG_MD_ROWS, f"{key} has no row in docs/config.md"


@pytest.mark.parametrize("doc", DOCS)
def test_no_documented_key_is_stale(doc: str) -> None:
    documented = {key for key, row in DOCS[doc].items() if "default" in row}  # key tables, not scenarios etc.
    stale = sorted(documented - set(CONFIG_KEYS))
    assert not stale, f"{doc} documents keys that the agent does not read: {stale}"


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.key)
def test_documented_range_matches_the_validator(doc: str, rule: cfg.NumberRule) -> None:
    row = DOCS[doc][rule.key]
    assert "range" in row, f"{doc}: the table holding {rule.key} has no 'range' column"
    documented = numbers(row["range"])[:2]
    assert documented == [rule.minimum, rule.maximum], (
        f"{doc}: {rule.key} documents range {row['range']!r}; the validator allows {rule.minimum} – {rule.maximum}"
    )


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("rule", [r for r in RULES if r.default is not None], ids=lambda r: r.key)
def test_documented_default_matches_the_code(doc: str, rule: cfg.NumberRule) -> None:
    cell = DOCS[doc][rule.key]["default"]
    assert numbers(cell)[:1] == [rule.default], f"{doc}: {rule.key} documents default {cell!r}, code has {rule.default}"


def test_config_md_lists_every_standard_baudrate_and_scenario() -> None:
    sentence = CONFIG_MD[CONFIG_MD.index("Standard line speeds") :].split(". ")[0]
    rates = set(map(int, numbers(sentence)))
    assert rates == set(cfg.STANDARD_BAUDRATES)
    scenarios = CONFIG_MD_ROWS.keys() & set(SCENARIOS)
    assert scenarios == set(SCENARIOS), f"undocumented scenarios: {set(SCENARIOS) - scenarios}"


def test_config_md_has_the_examples_and_the_errors() -> None:
    for words in (
        'transport = "serial"',
        'transport = "ble"\naddress = "C0:',
        'address = "replay:',
        'transport = "simulated"',
        "must be a finite number",
        "must be between",
        "unknown key (check spelling)",
        "is not UTF-8 text",
        "unknown scenario",
        "there are serial simulators only",
    ):
        assert words in CONFIG_MD, f"docs/config.md lacks {words!r}"


def test_config_md_examples_are_valid(tmp_path: Path) -> None:
    """Every ```toml block with a [gateway] loads; the others load appended to the minimal one."""
    blocks = re.findall(r"```toml\n(.*?)```", CONFIG_MD, re.S)
    assert len(blocks) >= 5
    minimal = next(b for b in blocks if "[gateway]" in b)
    for i, block in enumerate(blocks):
        text = block if "[gateway]" in block else minimal + block
        path = tmp_path / f"example{i}.toml"
        path.write_text(text)
        cfg.load_config(path)


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
