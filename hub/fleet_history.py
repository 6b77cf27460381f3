"""The fleet's history for the fleet page's plot: every ``every_s`` seconds the web process counts
the fleet per province (gateways online, stale, offline; readings pending; gateways with data at
risk) into the ``fleet_samples`` table (schema 4), keyed by (time bucket, province). Several
``edge-hub web`` processes on one store write the same keys: an upsert, so they are harmless.
Samples older than ``retention_s`` (14 days by default) are deleted in the same transaction.

The counting and the series are pure (:func:`samples_at`, :func:`series`); :class:`Sampler`
does the I/O with an injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hub.fleet import FleetRecord, Thresholds, fleet_records
from hub.store import FleetSample, HubStore

__all__ = [
    "DEFAULT_EVERY_S",
    "DEFAULT_RETENTION_S",
    "Point",
    "Sampler",
    "bucket_of",
    "samples_at",
    "series",
]

log = logging.getLogger("hub.web")

DEFAULT_EVERY_S = 60.0
DEFAULT_RETENTION_S = 14 * 86400.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_THRESHOLDS = Thresholds()


def bucket_of(now: datetime, every_s: float) -> datetime:
    """The start of the time bucket ``now`` falls in (buckets of ``every_s`` from the Unix epoch,
    so every process agrees on them)."""
    if not every_s > 0:
        raise ValueError("every_s must be > 0")
    seconds = (now - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=(seconds // every_s) * every_s)


def samples_at(records: Iterable[FleetRecord], bucket_at: datetime) -> list[FleetSample]:
    """Pure: one sample per province of ``records`` (``""`` for gateways without one), sorted."""
    by: dict[str, list[FleetRecord]] = {}
    for r in records:
        by.setdefault(r.province or "", []).append(r)
    return [
        FleetSample(
            bucket_at=bucket_at,
            province=p,
            gateways=len(rs),
            online=sum(r.state == "online" for r in rs),
            stale=sum(r.state == "stale" for r in rs),
            offline=sum(r.state == "offline" for r in rs),
            pending=sum(r.backlog_pending or 0 for r in rs),
            data_at_risk=sum("data_at_risk" in r.reasons or "store_full" in r.reasons for r in rs),
        )
        for p, rs in sorted(by.items())
    ]


@dataclass(frozen=True, slots=True)
class Point:
    """The fleet (or one province) in one bucket: what the plot draws."""

    at: datetime
    gateways: int
    online: int
    pending: int


def series(samples: Sequence[FleetSample], province: str | None = None) -> list[Point]:
    """Pure: the samples summed over provinces per bucket (or of one province), oldest first."""
    by: dict[datetime, list[int]] = {}
    for s in samples:
        if province is not None and s.province != province:
            continue
        acc = by.setdefault(s.bucket_at, [0, 0, 0])
        acc[0] += s.gateways
        acc[1] += s.online
        acc[2] += s.pending
    return [Point(at, g, o, p) for at, (g, o, p) in sorted(by.items())]


class Sampler:
    """Writes one sample per province per bucket. ``clock`` gives the time (tests pin it); the
    caller decides when to call :meth:`sample` (the web app: every ``every_s``)."""

    def __init__(
        self,
        store: HubStore,
        clock: Callable[[], datetime],
        *,
        every_s: float = DEFAULT_EVERY_S,
        retention_s: float = DEFAULT_RETENTION_S,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
    ) -> None:
        if not every_s > 0 or not retention_s > every_s:
            raise ValueError("every_s must be > 0 and retention_s > every_s")
        self.store = store
        self.clock = clock
        self.every_s = every_s
        self.retention_s = retention_s
        self.thresholds = thresholds
        self.written = 0
        self.deleted = 0
        self.failures = 0

    def sample(self) -> list[FleetSample]:
        """Count the fleet now and write it (raises the store's errors: the caller logs and
        counts them and tries again at the next bucket)."""
        now = self.clock()
        records = fleet_records(self.store.gateways(), now, thresholds=self.thresholds)
        samples = samples_at(records, bucket_of(now, self.every_s))
        self.deleted += self.store.record_fleet_samples(
            samples, now=now, keep_after=now - timedelta(seconds=self.retention_s)
        )
        self.written += len(samples)
        return samples

    def next_delay(self) -> float:
        """Seconds from the clock's now to the start of the next bucket."""
        now = self.clock()
        nxt = bucket_of(now, self.every_s) + timedelta(seconds=self.every_s)
        return max(0.0, (nxt - now).total_seconds())
