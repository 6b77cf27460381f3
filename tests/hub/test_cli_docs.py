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
    from datetime import UTC, datetime

    from hub.store import open_store

    now = datetime.now(UTC)  # the command reads the wall clock: a heartbeat from just now is online
    beat = {"v": 1, "type": "status", "online": True, "sent_at": now.isoformat()}
    with open_store(tmp_path / "hub") as s:
        s.record_status("gw-0001", beat, province="p01", now=now)
        s.record_status("gw-0002", {"v": 1, "type": "status", "online": False}, province="p02", now=now)
    assert main(["fleet", "--store", str(tmp_path / "hub"), "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [(d["gateway_id"], d["province"], d["state"]) for d in docs] == [
        ("gw-0002", "p02", "offline"),
        ("gw-0001", "p01", "online"),
    ]
    assert main(["fleet", "--store", str(tmp_path / "hub"), "--province", "p01"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["gw-0001", "p01", "online"]
    assert out[-1].startswith("1 gateways: 1 online")
    assert main(["fleet", "--store", str(tmp_path / "hub"), "--watch", "0"]) == 2
    assert main(["fleet", "--store", str(tmp_path / "hub"), "--stale-after", "-1"]) == 2
    # a heartbeat from just now is stale when stale means "silent for more than 0.000001 s"
    assert main(["fleet", "--store", str(tmp_path / "hub"), "--json", "--stale-after", "0.000001"]) == 0
    assert {d["gateway_id"]: d["state"] for d in json.loads(capsys.readouterr().out)} == {
        "gw-0001": "stale",
        "gw-0002": "offline",
    }
    assert main(["fleet", "--store", str(tmp_path / "nowhere")]) == 78


def test_fleet_watch_refreshes_until_sigterm(tmp_path: Path) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    from hub.store import open_store

    open_store(tmp_path / "hub").close()
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "fleet", "--store", str(tmp_path / "hub"), "--json", "--watch", "0.1"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=root,
    )
    assert proc.stdout is not None
    first, second = proc.stdout.readline(), proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert json.loads(first) == json.loads(second) == []
