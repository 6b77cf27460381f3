"""``set-config`` from the hub: an overlay of key = value changes on top of the operator's TOML.

The configuration file is the operator's (read-only under the systemd sandbox), so the hub's
changes live in ``<state_dir>/remote/config-overlay.json`` (``{"section": {"key": value}}``),
which :func:`with_overlay` merges over the file's document before the one loader
(``edge_agent.config.parse_config``) validates the whole; ``edge-agent run`` and ``status`` both
see the effective configuration.

Applying (:func:`apply_change`): the new overlay is written beside the current one (fsync),
renamed into place with the previous version kept as ``config-overlay.prev.json``, and the
effective configuration is then loaded from disk exactly as the next start will load it; if
that fails, the previous overlay is put back (``rolled_back``). Only :data:`SETTABLE` keys may
be changed: the numbers of ``NUMBER_RULES`` (not the per-device ones), the scoring levels and
switches, and the station name and time zone; never an identity, a path, the broker or a key
that would trust another model-signing key, and never a table the file does not have.

Pure: :func:`settable`, :func:`merge`, :func:`updated`. I/O: the rest.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.config import NUMBER_RULES, AgentConfig, ConfigError, parse_config
from provisioning._files import PRIVATE_MODE, write_atomic

log = logging.getLogger(__name__)

__all__ = [
    "OVERLAY_FILE",
    "PREVIOUS_FILE",
    "SETTABLE",
    "ChangeOutcome",
    "apply_change",
    "merge",
    "overlay_path",
    "read_overlay",
    "settable",
    "with_overlay",
]

OVERLAY_FILE = "config-overlay.json"
PREVIOUS_FILE = "config-overlay.prev.json"
MAX_OVERLAY = 64 * 1024
SETTABLE: frozenset[str] = frozenset(
    {k for k in NUMBER_RULES if "[]" not in k}
    | {
        "scoring.news2_min_level",
        "scoring.bp_crisis_level",
        "scoring.probe_runtime",
        "gateway.station_name",
        "gateway.timezone",
    }
)
_OPTIONAL_TABLES = ("sync", "dashboard")  # present or absent as the operator wrote it


class OverlayError(Exception):
    """The overlay file cannot be read or is not an overlay."""


def overlay_path(state_dir: Path) -> Path:
    return state_dir / "remote" / OVERLAY_FILE


def settable(key: str, document: Mapping[str, Any]) -> str | None:
    """Why ``key`` may not be set remotely on top of ``document`` (the file's TOML), else None."""
    if key not in SETTABLE:
        return f"{key}: not settable remotely"
    table = key.split(".", 1)[0]
    if table in _OPTIONAL_TABLES and table not in document:
        return f"{key}: the configuration has no [{table}] table"
    return None


def merge(document: Mapping[str, Any], overlay: Mapping[str, Mapping[str, object]]) -> dict[str, Any]:
    """``document`` with the overlay's tables' keys replaced (a deep copy; inputs untouched)."""
    out = copy.deepcopy(dict(document))
    for table, values in overlay.items():
        section = out.get(table)
        section = dict(section) if isinstance(section, Mapping) else {}
        section.update(values)
        out[table] = section
    return out


def updated(overlay: Mapping[str, Mapping[str, object]], values: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """The overlay with dotted ``values`` (``section.key``) set."""
    out = {t: dict(v) for t, v in overlay.items()}
    for key, value in values.items():
        table, name = key.split(".", 1)
        out.setdefault(table, {})[name] = value
    return out


def read_overlay(path: Path) -> dict[str, dict[str, object]]:
    """The overlay at ``path`` ({} when there is none); :class:`OverlayError` when unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise OverlayError(f"{path}: {exc.strerror}") from None
    if len(raw) > MAX_OVERLAY:
        raise OverlayError(f"{path}: larger than {MAX_OVERLAY} bytes")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise OverlayError(f"{path}: not JSON") from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise OverlayError(f"{path}: not an object of tables")
    return doc


def _effective(
    cfg: AgentConfig, document: Mapping[str, Any], overlay: Mapping[str, Mapping[str, object]]
) -> AgentConfig:
    for table, values in overlay.items():
        for name in values:
            problem = settable(f"{table}.{name}", document)
            if problem is not None:
                raise ConfigError(f"{table}.{name}", f"remote overlay: {problem}")
    base_dir = cfg.source.parent.resolve() if cfg.source is not None else Path.cwd()
    return parse_config(merge(document, overlay), base_dir=base_dir, source=cfg.source)


def with_overlay(cfg: AgentConfig, document: Mapping[str, Any], *, strict: bool = False) -> AgentConfig:
    """``cfg`` with the state dir's overlay applied (``cfg`` itself when there is none).

    An overlay that no longer validates (the file or the agent changed since) is logged and
    ignored, so the station starts on the operator's configuration; ``strict`` raises
    :class:`ConfigError` instead (how :func:`apply_change` validates)."""
    path = overlay_path(cfg.state_dir)
    try:
        overlay = read_overlay(path)
        if not overlay:
            return cfg
        return _effective(cfg, document, overlay)
    except (OverlayError, ConfigError) as exc:
        if strict:
            raise ConfigError("remote", str(exc)) from None
        log.error("event=config_overlay_ignored path=%s error=%r", path, str(exc))
        return cfg


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    state: str  # applied | rolled_back | refused
    detail: str
    changed: tuple[str, ...] = ()


def _read_document(source: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(source.read_bytes().decode("utf-8").removeprefix("\ufeff"))


def apply_change(source: Path | None, state_dir: Path, values: Mapping[str, object]) -> ChangeOutcome:
    """Apply ``values`` (module doc): ``applied`` (the next start uses them), ``rolled_back``
    (written, failed validation, the previous overlay restored) or ``refused`` (not settable)."""
    from edge_agent.config import load_config

    if source is None:
        return ChangeOutcome("refused", "the agent runs without a configuration file")
    try:
        document = _read_document(source)
    except (OSError, ValueError) as exc:
        return ChangeOutcome("refused", f"configuration file unreadable: {type(exc).__name__}")
    for key in values:
        problem = settable(key, document)
        if problem is not None:
            return ChangeOutcome("refused", problem)
    path = overlay_path(state_dir)
    previous = path.with_name(PREVIOUS_FILE)
    try:
        current = read_overlay(path)
    except OverlayError as exc:
        log.error("event=config_overlay_unreadable error=%r action=replaced", str(exc))
        current = {}
    new = updated(current, values)
    had_current = path.exists()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if had_current:
            write_atomic(previous, path.read_bytes(), mode=PRIVATE_MODE)
        write_atomic(path, json.dumps(new, sort_keys=True, indent=1).encode() + b"\n", mode=PRIVATE_MODE)
    except OSError as exc:
        return ChangeOutcome("failed", f"cannot write the overlay: {exc.strerror}")
    try:  # exactly what the next start will do
        with_overlay(load_config(source, overlay=False), document, strict=True)
    except ConfigError as exc:
        _restore(path, previous, had_current)
        return ChangeOutcome("rolled_back", str(exc)[:400])
    return ChangeOutcome("applied", "restart to apply", tuple(sorted(values)))


def _restore(path: Path, previous: Path, had_current: bool) -> None:
    try:
        if had_current:
            os.replace(previous, path)
        else:
            path.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        log.error("event=config_overlay_restore_failed error=%s", exc.strerror)
