"""The agent config ``apply`` writes: the existing file with ``[gateway]``, ``[sync]`` and the
model-trust keys of ``[scoring]`` set from the enrollment, everything else kept as written
(devices, store, alerts, comments). Pure: text in, text out; ``apply`` validates the result with
the agent's own loader before installing it.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Managed", "render_config", "toml_value"]

MANAGED_TABLES = ("gateway", "sync", "scoring")
TRUST_KEYS = ("trusted_keys", "allow_dev_key")
SYNC_KEYS = ("broker", "ca", "cert", "key", "hub_keys")
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(?:#.*)?$")
_TOP_VERSION = re.compile(r"^\s*version\s*=")


@dataclass(frozen=True, slots=True)
class Managed:
    """What the enrollment sets."""

    gateway_id: str
    province: str
    station: str
    broker: str
    ca: str
    cert: str
    key: str
    hub_keys: str
    trusted_keys: tuple[str, ...]
    note: str  # one comment line naming the enrollment


def _escape(s: str) -> str:
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    """A TOML literal for the scalar types a config holds (str, bool, int, float, list of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return repr(value)
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write a {type(value).__name__} as TOML here")


def _table(name: str, values: Mapping[str, Any]) -> list[str]:
    return [f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]


def _blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The lines before the first table header, and every table block (its name, its lines)."""
    preamble: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            blocks.append((match.group(1).strip().strip("\"'").split(".")[0], [line]))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            preamble.append(line)
    return preamble, blocks


def render_config(existing: str, managed: Managed) -> str:
    """The new config text. ``existing`` is the current file ("" for none); it must parse."""
    doc = tomllib.loads(existing) if existing else {}
    preamble, blocks = _blocks(existing)
    gateway = dict(doc.get("gateway", {}))
    gateway.update(id=managed.gateway_id, province=managed.province, station_name=managed.station)
    sync = {k: v for k, v in doc.get("sync", {}).items() if k not in SYNC_KEYS}
    sync = {
        "broker": managed.broker,
        "ca": managed.ca,
        "cert": managed.cert,
        "key": managed.key,
        "hub_keys": managed.hub_keys,
        **sync,
    }
    scoring = {k: v for k, v in doc.get("scoring", {}).items() if k not in TRUST_KEYS}
    scoring.update(allow_dev_key=False, trusted_keys=list(managed.trusted_keys))
    lines = [line for line in preamble if not _TOP_VERSION.match(line)]
    while lines and not lines[-1].strip():
        lines.pop()
    out = ["version = 1", *lines, ""]
    for name, block in blocks:
        if name in MANAGED_TABLES:
            continue
        out += block
    while out and not out[-1].strip():
        out.pop()
    out += ["", f"# {managed.note}", *_table("gateway", gateway), ""]
    out += [*_table("scoring", scoring), ""]
    out += _table("sync", sync)
    return "\n".join(out) + "\n"
