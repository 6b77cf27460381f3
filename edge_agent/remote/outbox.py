"""The durable outbox of command results: nothing a gateway answered is lost to a long outage.

Every result is sealed to the hub and signed (``wire.commands.seal_result``) and written, as
exactly the bytes that will be published, to ``<state_dir>/remote/outbox/`` (one file
``<number>-<cmd_id>.result`` per result, atomically with ``provisioning._files.write_atomic``,
mode 0600, in a 0700 directory) *before* it is published. A file is removed only once the
hub's signed ack for it arrives (lane ``results``, batch id = cmd_id; the broker's PUBACK is not
enough, docs/protocol.md §4.5 "Delivery"); the part (edge_agent.remote.part) publishes what is
pending, oldest first, whenever the link is up: after every reconnect, at start (a
``set-config`` result survives the agent's exit-1 restart this way), and again when no ack came
within the sync's ``ack_timeout_s``. The hub records a result once
(``hub.commands.ResultRecorder``) and acks every copy, so a result published twice changes
nothing there.

The outbox is bounded (:data:`MAX_RESULTS` results, :data:`MAX_BYTES` bytes, a diagnostics
bundle counts by its size): when a new result does not fit, the oldest ones are dropped, each
counted under ``dropped[reason]`` and logged, and the newest is kept. A file that cannot be
read at start is dropped the same way (``unreadable``); a result that cannot be written is kept
in memory and still published in this run (``unwritable``, counted and logged). Nothing here
can read a result back: the files are sealed to the hub.

Thread-safe (the part calls it from executor threads); no clock.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioning._files import PRIVATE_MODE, write_atomic

log = logging.getLogger(__name__)

__all__ = ["MAX_BYTES", "MAX_RESULTS", "OUTBOX_DIR", "Pending", "ResultOutbox", "to_evict"]

OUTBOX_DIR = "outbox"  # under <state_dir>/remote/
MAX_RESULTS = 64
MAX_BYTES = 1024 * 1024
SUFFIX = ".result"
_NAME = re.compile(r"(\d{12})-([A-Za-z0-9][A-Za-z0-9._:-]{0,127})\.result")


@dataclass(frozen=True, slots=True)
class Pending:
    """One result waiting for the hub's ack."""

    number: int  # order of arrival (the file name's prefix)
    cmd_id: str
    payload: bytes  # the sealed result, exactly as published
    persisted: bool = True  # False: the file could not be written (published from memory only)

    @property
    def name(self) -> str:
        return f"{self.number:012d}-{self.cmd_id}{SUFFIX}"

    @property
    def size(self) -> int:
        return len(self.payload)


def to_evict(sizes: Sequence[int], new: int, *, max_results: int, max_bytes: int) -> int:
    """How many of the oldest entries (``sizes``, oldest first) to drop so that one more of
    ``new`` bytes fits in ``max_results`` / ``max_bytes``; the new one itself is always kept."""
    count, total, drop = len(sizes), sum(sizes), 0
    while drop < count and (count - drop + 1 > max_results or total + new > max_bytes):
        total -= sizes[drop]
        drop += 1
    return drop


class ResultOutbox:
    """The outbox directory and its in-memory index (module doc)."""

    def __init__(self, directory: Path, *, max_results: int = MAX_RESULTS, max_bytes: int = MAX_BYTES) -> None:
        if max_results < 1 or max_bytes < 1:
            raise ValueError("the outbox must hold at least one result")
        self.directory = directory
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.dropped: Counter[str] = Counter()  # by reason: full | unreadable
        self.write_failures = 0
        self.removed = 0
        self._entries: list[Pending] = []
        self._next = 1
        self._loaded = False
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------------
    def load(self) -> list[Pending]:
        """Read what a previous run left (once; later calls return the current entries)."""
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self._entries = self._scan() + self._entries
                self._next = max([self._next - 1, *(e.number for e in self._entries)]) + 1
                self._evict_locked(0, add=False)
                if self._entries:
                    log.info("event=command_results_pending depth=%d bytes=%d", len(self._entries), self._bytes())
            return list(self._entries)

    def _scan(self) -> list[Pending]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.error("event=command_outbox_unreadable error=%s", exc.strerror)
            self.dropped["unreadable"] += 1
            return []
        found: list[Pending] = []
        for name in names:
            match = _NAME.fullmatch(name)
            if match is None:
                if not name.startswith("."):  # write_atomic's temporary files are dot files
                    log.warning("event=command_outbox_stray_file action=ignored")
                continue
            path = self.directory / name
            try:
                payload = path.read_bytes()
                if not payload:
                    raise ValueError("empty")
            except (OSError, ValueError) as exc:
                self.dropped["unreadable"] += 1
                log.error("event=command_result_dropped reason=unreadable cmd_id=%s error=%r", match[2], str(exc))
                self._unlink(path)
                continue
            found.append(Pending(int(match[1]), match[2], payload))
        return found

    def pending(self) -> list[Pending]:
        with self._lock:
            return list(self._entries)

    def contains(self, entry: Pending) -> bool:
        with self._lock:
            return entry in self._entries

    @property
    def depth(self) -> int:
        with self._lock:
            return len(self._entries)

    def _bytes(self) -> int:
        return sum(e.size for e in self._entries)

    # -- writing ---------------------------------------------------------------------------------
    def add(self, cmd_id: str, payload: bytes) -> Pending:
        """Keep ``payload`` (durably when the disk allows); the oldest results make room."""
        self.load()
        with self._lock:
            self._evict_locked(len(payload), add=True)
            entry = Pending(self._next, cmd_id, payload)
            self._next += 1
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                write_atomic(self.directory / entry.name, payload, mode=PRIVATE_MODE)
            except OSError as exc:
                self.write_failures += 1
                entry = Pending(entry.number, cmd_id, payload, persisted=False)
                log.error(
                    "event=command_result_unwritable cmd_id=%s error=%s action=publish_from_memory",
                    cmd_id,
                    exc.strerror,
                )
            self._entries.append(entry)
            return entry

    def remove(self, entry: Pending) -> None:
        """The hub acked ``entry`` (recorded, or rejected for good): forget it."""
        with self._lock:
            if entry not in self._entries:
                return
            self._entries.remove(entry)
            self.removed += 1
            if entry.persisted:
                self._unlink(self.directory / entry.name)

    def _evict_locked(self, new: int, *, add: bool) -> None:
        sizes = [e.size for e in self._entries]
        if add:
            drop = to_evict(sizes, new, max_results=self.max_results, max_bytes=self.max_bytes)
        else:  # at load: keep the newest that fit the bounds
            drop = 0
            while drop < len(sizes) - 1 and (
                len(sizes) - drop > self.max_results or sum(sizes[drop:]) > self.max_bytes
            ):
                drop += 1
        for entry in self._entries[:drop]:
            self.dropped["full"] += 1
            log.error(
                "event=command_result_dropped reason=outbox_full cmd_id=%s bytes=%d dropped=%d",
                entry.cmd_id,
                entry.size,
                self.dropped["full"],
            )
            if entry.persisted:
                self._unlink(self.directory / entry.name)
        del self._entries[:drop]

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # published twice at the next start at worst: the hub records once
            log.warning("event=command_outbox_unlink_failed error=%s", exc.strerror)
            return
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    # -- status ----------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, object]:
        with self._lock:
            return {
                "depth": len(self._entries),
                "bytes": self._bytes(),
                "max_results": self.max_results,
                "max_bytes": self.max_bytes,
                "dropped": dict(self.dropped),
                "write_failures": self.write_failures,
            }
