"""README.md and docs/provisioning.md document every ``edge-provision`` command and option (the
docs test tests/test_docs.py runs for ``edge-agent``), and ``--help`` works for each."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edge_agent.provision_cli import main
from provisioning.cli import build_parser

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
DOC = (ROOT / "docs" / "provisioning.md").read_text()


def _commands() -> dict[str, argparse.ArgumentParser]:
    def subs(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    out: dict[str, argparse.ArgumentParser] = {}
    for name, parser in subs(build_parser()).items():
        nested = subs(parser)
        out.update({f"{name} {n}": p for n, p in nested.items()} if nested else {name: parser})
    return out


def _options() -> list[tuple[str, str]]:
    return [
        (cmd, flag)
        for cmd, parser in _commands().items()
        for action in parser._actions
        for flag in action.option_strings
        if flag not in ("-h", "--help")
    ]


def test_every_command_is_listed() -> None:
    assert set(_commands()) == {
        "ca init", "sign", "revoke", "crl", "broker-config", "enroll", "apply", "check", "decommission"
    }  # fmt: skip


@pytest.mark.parametrize(("command", "option"), _options())
def test_option_is_documented(command: str, option: str) -> None:
    lines = [line for line in README.splitlines() if f"edge-provision {command}" in line]
    assert any(option in line for line in lines), f"edge-provision {command} {option} is not in README.md"
    doc_lines = [line for line in DOC.splitlines() if option in line]
    assert doc_lines, f"edge-provision {command} {option} is not in docs/provisioning.md"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command.split(), "--help"]) == 0
    assert "usage: edge-provision" in capsys.readouterr().out
