"""Which commands a gateway accepts, and the state that makes replays impossible.

:func:`check_command` (pure): the command is for this gateway, not expired and not from the
future at the agent's clock (never the wall clock), and its ``seq`` is above the last applied
one. :class:`RemoteState` keeps that last seq (and the counters ``status.json`` shows) in
``<state_dir>/remote/state.json``, written atomically (temporary file, fsync, rename, directory
fsync) before the result of the command is published, so it survives a restart or a power cut.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from provisioning._files import PRIVATE_MODE, write_atomic
from wire.commands import Command

log = logging.getLogger(__name__)

__all__ = ["CLOCK_SKEW", "Refused", "RemoteState", "check_command"]

CLOCK_SKEW = timedelta(minutes=10)  # a command issued a little "in the future" of our clock is fine
STATE_FILE = "state.json"


class Refused(Exception):
    """A command not applied; ``state`` is the result state (``refused`` | ``expired``),
    ``reason`` a fixed code (counted, logged, in the result's detail)."""

    def __init__(self, reason: str, detail: str = "", *, state: str = "refused") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.state = state


def check_command(cmd: Command, *, gateway_id: str, last_seq: int, now: datetime) -> None:
    """Raise :class:`Refused` unless ``cmd`` may be applied now (module doc)."""
    if cmd.gateway_id != gateway_id:
        raise Refused("other_gateway", "the command names another gateway")
    if cmd.seq <= last_seq:
        raise Refused("replayed", f"seq {cmd.seq} <= last applied {last_seq}")
    if cmd.expires_at <= now:
        raise Refused("expired", "the command expired before it arrived", state="expired")
    if cmd.issued_at > now + CLOCK_SKEW:
        raise Refused("from_future", "issued later than this gateway's clock allows")
    if cmd.expires_at <= cmd.issued_at:
        raise Refused("bad_window", "expires before it was issued")


@dataclass(slots=True)
class RemoteState:
    """The persisted guard state and counters (module doc)."""

    path: Path
    last_seq: int = 0
    last_cmd_id: str | None = None
    last_kind: str | None = None
    last_state: str | None = None
    last_at: str | None = None
    results: Counter[str] = field(default_factory=Counter)  # by result state
    refused: Counter[str] = field(default_factory=Counter)  # by reason (forged ones included)

    @classmethod
    def load(cls, state_dir: Path) -> RemoteState:
        path = state_dir / "remote" / STATE_FILE
        try:
            doc = json.loads(path.read_bytes())
            seq = doc.get("last_seq", 0)
            if type(seq) is not int or seq < 0:
                raise ValueError("last_seq")
            return cls(
                path,
                last_seq=seq,
                last_cmd_id=doc.get("last_cmd_id"),
                last_kind=doc.get("last_kind"),
                last_state=doc.get("last_state"),
                last_at=doc.get("last_at"),
                results=Counter({str(k): int(v) for k, v in dict(doc.get("results", {})).items()}),
                refused=Counter({str(k): int(v) for k, v in dict(doc.get("refused", {})).items()}),
            )
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # never silently start over at 0 (that would re-open every old command to replay):
            # refuse everything until an operator looks, and say so
            log.error("event=remote_state_unreadable path=%s error=%r action=refusing_commands", path, str(exc))
            return cls(path, last_seq=2**63 - 1, last_state="state_unreadable")

    def record(self, cmd: Command, state: str, at: datetime, applied: bool) -> None:
        """Count a result; with ``applied`` (the command was acted on, whatever its outcome) move
        ``last_seq`` and persist before anything is published."""
        self.results[state] += 1
        if applied:
            self.last_seq = max(self.last_seq, cmd.seq)
            self.last_cmd_id, self.last_kind, self.last_state, self.last_at = (
                cmd.cmd_id,
                cmd.kind,
                state,
                at.isoformat(),
            )
        self.save()

    def refuse(self, reason: str) -> None:
        self.refused[reason] += 1

    def save(self) -> None:
        doc = {
            "last_seq": self.last_seq,
            "last_cmd_id": self.last_cmd_id,
            "last_kind": self.last_kind,
            "last_state": self.last_state,
            "last_at": self.last_at,
            "results": dict(self.results),
            "refused": dict(self.refused),
        }
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(doc, sort_keys=True).encode() + b"\n", mode=PRIVATE_MODE)

    def as_dict(self) -> dict[str, object]:
        return {
            "last_seq": self.last_seq,
            "last_cmd_id": self.last_cmd_id,
            "last_kind": self.last_kind,
            "last_state": self.last_state,
            "last_at": self.last_at,
            "results": dict(self.results),
            "refused": dict(self.refused),
        }
