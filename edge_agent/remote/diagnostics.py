"""The ``diagnostics`` bundle: what a hub operator needs to see without a trip, and no patient data.

* ``status``: the heartbeat's allow-list of the status snapshot (edge_agent.sync.heartbeat:
  counts, states, versions, times, sizes; never a patient id, an alert's inputs or a value);
* ``preflight``: the ``edge-provision check`` items (broker and service skipped: the link is up,
  and systemd is not ours to query from inside the sandbox);
* ``logs``: the last ``log_lines`` lines the agent logged at INFO or above, from a bounded ring
  (:class:`LogRing`). Log lines never carry patient data by rule (DESIGN §7); as a second guard
  every ``patient…=value`` or ``name=value`` pair is redacted and long lines are cut.

The bundle is bounded (:data:`MAX_BUNDLE` bytes of JSON; logs are dropped oldest first to fit)
and travels sealed to the hub like the uplink (wire.commands: results are sealed).
"""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from edge_agent.sync.heartbeat import heartbeat_document

__all__ = ["MAX_BUNDLE", "MAX_LINE", "LogRing", "build_bundle", "redact"]

MAX_BUNDLE = 256 * 1024
MAX_LINE = 300
RING_LINES = 500
_REDACT = re.compile(r"\b((?:patient|person|subject|name|visit)[A-Za-z0-9_]*)=('[^']*'|\"[^\"]*\"|\S+)", re.I)


def redact(line: str) -> str:
    """``line`` with patient-like key=value pairs redacted, control characters escaped, cut."""
    text = _REDACT.sub(r"\1=<redacted>", line)
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text[:MAX_LINE]


class LogRing(logging.Handler):
    """The last :data:`RING_LINES` log lines (INFO and above), redacted as they arrive."""

    def __init__(self, size: int = RING_LINES) -> None:
        super().__init__(logging.INFO)
        self._lines: collections.deque[str] = collections.deque(maxlen=size)
        self._ring_lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = redact(self.format(record))
        except Exception:  # a log call with bad arguments must not break the caller
            return
        with self._ring_lock:
            self._lines.append(line)

    def tail(self, n: int) -> list[str]:
        with self._ring_lock:
            return list(self._lines)[-n:] if n > 0 else []


def build_bundle(
    status: Mapping[str, Any],
    *,
    now: datetime,
    preflight: Sequence[Mapping[str, str]],
    logs: Sequence[str],
) -> dict[str, object]:
    """The bundle (module doc), at most :data:`MAX_BUNDLE` bytes of JSON."""
    doc: dict[str, object] = {
        "status": heartbeat_document(status, online=True, sent_at=now),
        "preflight": [
            {k: redact(str(item.get(k, ""))) for k in ("name", "status", "detail", "fix")} for item in preflight
        ],
        "logs": [redact(line) for line in logs],
        "logs_dropped": 0,
    }
    lines = list(doc["logs"])  # type: ignore[call-overload]
    dropped = 0
    while len(json.dumps(doc, ensure_ascii=False).encode()) > MAX_BUNDLE and lines:
        cut = max(1, len(lines) // 4)
        lines = lines[cut:]
        dropped += cut
        doc["logs"], doc["logs_dropped"] = lines, dropped
    return doc
