"""docs/hub.md documents every ``edge-hub`` command and option (sqlite-utils' docs test), and
``--help`` names what an operator needs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hub.cli import build_parser, main

DOC = (Path(__file__).parents[2] / "docs" / "hub.md").read_text()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_is_documented(command: str) -> None:
    assert f"edge-hub {command}" in DOC
    for action in _subcommands()[command]._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            assert f"`{flag}`" in DOC, f"edge-hub {command} {flag} is not in docs/hub.md"


def test_top_level_options_are_documented() -> None:
    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}`" in DOC


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["serve", "export", "fleet"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert "--store" in capsys.readouterr().out


def test_fleet_lists_the_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from hub.store import open_store

    with open_store(tmp_path / "hub") as s:
        s.record_status("gw-0001", {"v": 1, "type": "status", "online": True}, province="p01")
    assert main(["fleet", "--store", str(tmp_path / "hub"), "--json"]) == 0
    [doc] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (doc["gateway_id"], doc["province"], doc["online"]) == ("gw-0001", "p01", True)
    assert main(["fleet", "--store", str(tmp_path / "hub")]) == 0
    assert "gw-0001\tp01\tonline" in capsys.readouterr().out
