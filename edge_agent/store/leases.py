"""Leases of the readings outbox, pure logic: which batch (by id) holds which seqs, which
batches are in flight, and the compact text form of a batch's seqs in the ``batches`` table.

A batch is leased to the sync (in flight) until the hub acknowledges it (``ack``: its readings
leave the pending state and the batch is forgotten) or the lease is released (reconnect,
timeout, restart): a released batch is re-sent first, with the same id and those of its
readings still pending. A seq belongs to at most one batch. The ``LeaseBook`` mirrors the
``batches`` table in memory (loaded at open); it takes its own lock, so the sync's thread and
the writer thread can both use it.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_RANGES = re.compile(r"[0-9]{1,19}(-[0-9]{1,19})?(,[0-9]{1,19}(-[0-9]{1,19})?)*")


def encode_seqs(seqs: Iterable[int]) -> str:
    """Seqs as sorted ranges: ``[1, 2, 3, 7, 9, 10]`` -> ``"1-3,7,9-10"`` (a batch is mostly one run)."""
    out: list[str] = []
    run: list[int] = []
    for s in sorted(set(seqs)):
        if run and s == run[1] + 1:
            run[1] = s
            continue
        if run:
            out.append(str(run[0]) if run[0] == run[1] else f"{run[0]}-{run[1]}")
        run = [s, s]
    if run:
        out.append(str(run[0]) if run[0] == run[1] else f"{run[0]}-{run[1]}")
    return ",".join(out)


def decode_seqs(text: str, *, max_len: int = 1_000_000) -> tuple[int, ...]:
    """The inverse of :func:`encode_seqs`; raises ValueError for anything else."""
    if not _RANGES.fullmatch(text):
        raise ValueError("not a list of seq ranges")
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a or (out and a <= out[-1]) or len(out) + (b - a + 1) > max_len:
            raise ValueError("seq ranges out of order or too long")
        out.extend(range(a, b + 1))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Lease:
    batch_id: str
    seqs: tuple[int, ...]  # sorted
    leased_us: int  # when last handed out (store clock)
    attempt: int  # times handed out
    in_flight: bool  # handed out and neither acknowledged nor released
    persisted: bool = True  # False: no batches row (not written yet, or no room for it); lost at restart


class LeaseBook:
    """The leases, in creation order (a released batch is re-sent oldest first)."""

    def __init__(self, leases: Iterable[Lease] = ()) -> None:
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}
        self._seqs: set[int] = set()
        for lease in leases:
            self.put(lease)

    def get(self, batch_id: str) -> Lease | None:
        with self._lock:
            return self._leases.get(batch_id)

    def put(self, lease: Lease) -> None:
        """Add a lease, or replace the one with its id (keeping its place in the order)."""
        with self._lock:
            old = self._leases.get(lease.batch_id)
            if old is not None:
                self._seqs.difference_update(old.seqs)
            self._leases[lease.batch_id] = lease
            self._seqs.update(lease.seqs)

    def remove(self, batch_id: str) -> Lease | None:
        with self._lock:
            lease = self._leases.pop(batch_id, None)
            if lease is not None:
                self._seqs.difference_update(lease.seqs)
            return lease

    def leased_seqs(self) -> frozenset[int]:
        """Seqs in any batch, in flight or waiting to be re-sent (not available to a new batch)."""
        with self._lock:
            return frozenset(self._seqs)

    def next_resend(self) -> Lease | None:
        """The oldest batch that is not in flight (released or from before a restart)."""
        with self._lock:
            return next((x for x in self._leases.values() if not x.in_flight), None)

    def in_flight(self) -> tuple[int, int]:
        """(batches in flight, readings in them)."""
        with self._lock:
            flying = [x for x in self._leases.values() if x.in_flight]
            return len(flying), sum(len(x.seqs) for x in flying)

    def release(self, leased_by_us: int | None = None) -> int:
        """Make batches in flight leasable again (all of them, or those leased at or before
        ``leased_by_us``); returns how many were released."""
        with self._lock:
            n = 0
            for batch_id, lease in self._leases.items():
                if lease.in_flight and (leased_by_us is None or lease.leased_us <= leased_by_us):
                    self._leases[batch_id] = dataclasses.replace(lease, in_flight=False)
                    n += 1
            return n

    def mark_persisted(self, batch_ids: Iterable[str]) -> None:
        """Their ``batches`` rows are committed (those still in the book)."""
        with self._lock:
            for batch_id in batch_ids:
                lease = self._leases.get(batch_id)
                if lease is not None:
                    self._leases[batch_id] = dataclasses.replace(lease, persisted=True)

    def batch_ids(self) -> Sequence[str]:
        with self._lock:
            return tuple(self._leases)
