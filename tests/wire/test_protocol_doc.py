"""docs/protocol.md stays true to the code: its examples decode, and it names every leaf, every
reason code and every header field (sqlite-utils' docs test, for the wire format)."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import zlib
from pathlib import Path

from wire.messages import Ack, decode_alerts, decode_heartbeat, decode_readings
from wire.topics import LEAVES

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "protocol.md").read_text()
ERRORS = {"Malformed", "UnsupportedVersion", "BadSignature", "BadSeal", "CertificateRejected"}


def json_blocks() -> list[dict[str, object]]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", DOC, re.S)]


def by_type(kind: str) -> list[dict[str, object]]:
    return [d for d in json_blocks() if d.get("type") == kind]


def reasons_in_code() -> set[str]:
    """First string argument of every ``Malformed(...)``, ``BadSeal(...)`` … call in wire/."""
    found: set[str] = set()
    for path in (ROOT / "wire").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ERRORS):
                continue
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def test_every_leaf_is_documented() -> None:
    for leaf in LEAVES:
        assert f"| `{leaf}` |" in DOC, leaf


def test_every_reason_code_is_documented() -> None:
    table = DOC[DOC.index("## 6.") : DOC.index("## 7.")]
    documented = set(re.findall(r"`([a-z_]+)`", table))
    assert reasons_in_code() <= documented, reasons_in_code() - documented


def test_batch_examples_decode() -> None:
    (readings,) = by_type("readings")
    assert len(decode_readings(zlib.compress(json.dumps(readings).encode())).readings) == 2
    (alerts,) = by_type("alerts")
    assert decode_alerts(zlib.compress(json.dumps(alerts).encode())).alerts[0].rev == 1


def test_heartbeat_examples_decode() -> None:
    beats = by_type("status")
    assert {b["online"] for b in beats} == {True, False}
    for b in beats:
        decode_heartbeat(json.dumps(b).encode())


def test_ack_examples_have_exactly_the_ack_fields() -> None:
    bodies = [json.loads(m) for m in re.findall(r"^(\{\"v\":1,\"type\":\"ack\".*?\})<64 bytes", DOC, re.M)]
    assert {b["status"] for b in bodies} == {"ok", "rejected"}
    fields = {f.name for f in dataclasses.fields(Ack)} | {"v", "type"}
    for b in bodies:
        assert set(b) == fields


def test_envelope_header_example() -> None:
    (header,) = [d for d in json_blocks() if "epk" in d]
    assert set(header) == {"v", "lane", "gateway_id", "batch_id", "epk", "nonce", "kid"}
