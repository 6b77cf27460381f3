"""The hub unit's ``--metrics`` listener: set per worker in ``/etc/station-edge-hub/<instance>.env``
(``EDGE_HUB_METRICS=--metrics HOST:PORT``), expanded the way systemd expands ``ExecStart=`` and
parsed by the hub's own argument parser, and documented where the docs say."""

from __future__ import annotations

import re
import shlex

from hub.cli import build_parser
from hub.metrics import parse_listen
from tests.systemd.test_units import HUB_UNIT, ROOT, settings


def expand(line: str, env: dict[str, str], instance: str) -> list[str]:
    """systemd's ExecStart= expansion: ``%i`` the instance, ``${VAR}`` one word, ``$VAR`` split
    on white space (nothing when empty or unset)."""
    line = line.replace("%i", instance)
    words = []
    for word in shlex.split(line):
        if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", word):
            words += env.get(word[1:], "").split()
        else:
            words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return words


SHARED = {
    "EDGE_HUB_STORE": "postgresql://edge_hub@/edge_hub",
    "EDGE_HUB_BROKER": "mqtts://broker.example:8883",
    "EDGE_HUB_SHARE_GROUP": "hub",
}


def test_the_unit_reads_a_per_instance_file_and_passes_metrics_on() -> None:
    s = settings(HUB_UNIT)
    assert "-/etc/station-edge-hub/%i.env" in s["EnvironmentFile"]  # optional: "-"
    assert s["EnvironmentFile"][0] == "/etc/station-edge-hub/hub.env"  # shared first, the instance's wins
    [exec_start] = s["ExecStart"]
    assert re.search(r"(?<![{\w])\$EDGE_HUB_METRICS\b", exec_start)  # unbraced: split, gone when unset
    text = HUB_UNIT.read_text()
    assert "EDGE_HUB_METRICS=--metrics 127.0.0.1:9108" in text  # the example in the unit's header


def test_expanded_command_line_parses_with_and_without_metrics() -> None:
    [exec_start] = settings(HUB_UNIT)["ExecStart"]
    with_metrics = expand(exec_start, {**SHARED, "EDGE_HUB_METRICS": "--metrics 127.0.0.1:9108"}, "hub-2")
    assert with_metrics[0].endswith("/edge-hub")
    args = build_parser().parse_args(with_metrics[1:])
    assert args.command == "serve" and args.metrics == "127.0.0.1:9108"
    assert parse_listen(args.metrics) == ("127.0.0.1", 9108)
    assert str(args.cert) == "/etc/station-edge-hub/hub/hub-2.cert.pem"
    without = build_parser().parse_args(expand(exec_start, SHARED, "hub-1")[1:])
    assert without.metrics is None and without.share_group == "hub"


def test_documented_as_the_unit_does_it() -> None:
    for doc in (ROOT / "docs" / "hub.md", ROOT / "docs" / "deployment.md"):
        text = doc.read_text()
        assert "EDGE_HUB_METRICS=--metrics" in text, doc
        assert "/etc/station-edge-hub/<instance>.env" in text or "/etc/station-edge-hub/hub-1.env" in text, doc
