"""The hub's store: every reading once by its uid, alerts at their highest revision, the fleet
registry. One API over two engines: SQLite in a hub state directory (the embedded default) and
PostgreSQL (a ``postgresql://`` URL) when several workers share the load (DESIGN §8).

Exactly-once lives here: :meth:`HubStore.ingest` writes a batch in one transaction with
``INSERT … ON CONFLICT (uid) DO NOTHING``, so the database, not a worker's memory, decides what is
a duplicate. Any number of workers may ingest overlapping batches at the same time; each uid is
stored once and each call learns how many of its readings were new.

    store = open_store("/var/lib/station-edge-hub")          # or "postgresql://hub@db/hub"
    result = store.ingest("gw-0001", batch_id, readings)      # IngestResult(stored=.., duplicates=..)
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from device_drivers.records import Quality, Reading, Vital
from hub.commands import CommandRecord
from hub.errors import StoreError, StoreOperatorError

__all__ = [
    "SQLITE_FILE",
    "AlertLike",
    "CommandRecord",
    "FleetSample",
    "GatewayRecord",
    "HubStore",
    "IngestResult",
    "StoreError",
    "StoreOperatorError",
    "StoredAlert",
    "StoredReading",
    "is_postgres_url",
    "open_store",
    "redact_url",
]

SQLITE_FILE = "hub.sqlite3"
# The readings table's columns, in the order both engines select and insert them.
READING_COLUMNS = (
    "uid",
    "gateway_id",
    "seq",
    "vital",
    "value",
    "unit",
    "measured_at",
    "received_at",
    "device_id",
    "source_format",
    "patient_id",
    "flags",
    "extra",
    "clock_from_device",
    "batch_id",
    "ingested_at",
)
READING_COLUMN_LIST = ", ".join(READING_COLUMNS)
PAGE_SIZE = 1000  # rows per query page of iter_readings (keyset pagination: no long-lived cursor)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest call did: ``stored`` rows were new, ``duplicates`` were already there
    (or, for alerts, not newer than the stored revision)."""

    stored: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading as the hub keeps it: the reading plus where and when it arrived."""

    reading: Reading
    gateway_id: str
    batch_id: str
    ingested_at: datetime


class AlertLike(Protocol):
    """An alert revision as it arrives (``wire.messages.AlertRecord`` has this shape)."""

    @property
    def alert_id(self) -> str: ...
    @property
    def rev(self) -> int: ...
    @property
    def payload(self) -> Mapping[str, object]: ...


@dataclass(frozen=True, slots=True)
class StoredAlert:
    alert_id: str
    gateway_id: str
    rev: int
    payload: dict[str, object]
    batch_id: str
    ingested_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    """One row of the fleet registry: the gateway's last heartbeat (a last will, which says only
    ``online: false``, keeps the heartbeat before it), when the gateway was last heard from, and
    since when it is online or offline (``since``: None for a row from before schema 2)."""

    gateway_id: str
    province: str | None
    online: bool
    last_seen: datetime
    status: dict[str, object]
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class FleetSample:
    """The fleet of one province (``""``: gateways without one) in one time bucket, for the fleet
    page's plot (hub.fleet_history): gateways by state, readings pending on them, gateways with
    data at risk."""

    bucket_at: datetime
    province: str
    gateways: int
    online: int
    stale: int
    offline: int
    pending: int
    data_at_risk: int


def utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive datetime is taken to be UTC already."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time (as a heartbeat carries it) as an aware UTC datetime; None if not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return utc(dt)


def alert_fields(payload: Mapping[str, object]) -> tuple[str | None, str | None, str | None]:
    """(kind, level, state) of an alert payload, for queries; None where absent."""

    def text(key: str) -> str | None:
        value = payload.get(key)
        return None if value is None else str(value)

    return text("kind"), text("level"), text("state")


def newest_alerts(alerts: Sequence[AlertLike]) -> list[AlertLike]:
    """One alert per id (the highest revision in the batch), sorted by id (a stable lock order)."""
    best: dict[str, AlertLike] = {}
    for a in alerts:
        cur = best.get(a.alert_id)
        if cur is None or a.rev > cur.rev:
            best[a.alert_id] = a
    return [best[k] for k in sorted(best)]


def make_reading(
    *,
    uid: str,
    seq: int,
    vital: str,
    value: float,
    unit: str,
    measured_at: datetime,
    received_at: datetime,
    device_id: str,
    source_format: str,
    clock_from_device: bool,
    patient_id: str | None,
    flags: Sequence[str],
    extra: Mapping[str, str | int | float | bool],
) -> Reading:
    return Reading(
        uid=uid,
        seq=int(seq),
        vital=Vital(vital),
        value=float(value),
        unit=unit,
        measured_at=measured_at,
        received_at=received_at,
        device_id=device_id,
        source_format=source_format,
        clock_from_device=bool(clock_from_device),
        patient_id=patient_id,
        flags=frozenset(Quality(f) for f in flags),
        extra=tuple(sorted(extra.items())),
    )


def stored_reading_from_row(
    row: Sequence[Any], *, to_time: Callable[[Any], datetime], from_json: Callable[[Any], Any]
) -> StoredReading:
    """A row in READING_COLUMNS order as a StoredReading (the engine says how it keeps times and JSON)."""
    d = dict(zip(READING_COLUMNS, row, strict=True))
    reading = make_reading(
        uid=d["uid"],
        seq=d["seq"],
        vital=d["vital"],
        value=d["value"],
        unit=d["unit"],
        measured_at=to_time(d["measured_at"]),
        received_at=to_time(d["received_at"]),
        device_id=d["device_id"],
        source_format=d["source_format"],
        clock_from_device=bool(d["clock_from_device"]),
        patient_id=d["patient_id"],
        flags=from_json(d["flags"]),
        extra=from_json(d["extra"]),
    )
    return StoredReading(reading, d["gateway_id"], d["batch_id"], to_time(d["ingested_at"]))


class HubStore(abc.ABC):
    """The store's API; :func:`open_store` returns the engine's implementation.

    Thread-safe: one instance may be shared by threads (calls are serialised on its one
    connection), and any number of instances, in any number of processes, may use the same
    database at once.
    """

    backend: str  # "sqlite" | "postgresql"
    location: str  # the directory, or the URL without its password (safe to log)

    @abc.abstractmethod
    def ingest(
        self, gateway_id: str, batch_id: str, readings: Sequence[Reading], *, now: datetime | None = None
    ) -> IngestResult:
        """Store the readings of one batch in ONE transaction, each uid once; committed on return.

        ``now`` is the ingest time recorded on new rows (default: the wall clock)."""

    @abc.abstractmethod
    def ingest_alerts(
        self, gateway_id: str, batch_id: str, alerts: Sequence[AlertLike], *, now: datetime | None = None
    ) -> IngestResult:
        """Store alert revisions in one transaction: a row per alert id, the highest revision kept.

        A revision is ``stored`` when it is new or newer than the stored one; an alert id that
        another gateway already owns is never overwritten (counted as a duplicate)."""

    @abc.abstractmethod
    def record_status(
        self,
        gateway_id: str,
        doc: Mapping[str, object],
        *,
        province: str | None = None,
        now: datetime | None = None,
        seen: datetime | None = None,
        replay: bool = False,
    ) -> None:
        """Keep a gateway's latest status document in the registry, in one idempotent upsert.

        A heartbeat (it has ``sent_at``) replaces the stored one; a ``replay`` (the broker's
        retained copy, or a redelivery) only when it was not sent before the stored one. ``seen``
        (default ``now``) is when the gateway was heard from. A last will (no ``sent_at``) only
        marks the gateway offline, keeping the heartbeat before it. ``since`` moves to ``now``
        when ``online`` changes."""

    @abc.abstractmethod
    def gateways(self, province: str | None = None) -> list[GatewayRecord]:
        """The fleet registry (of one province when given), ordered by gateway id."""

    @abc.abstractmethod
    def prune_gateways(self, last_seen: Mapping[str, datetime]) -> list[str]:
        """Remove gateways from the fleet registry (``edge-hub prune``), each only while its
        ``last_seen`` is still the one given (a heartbeat since then keeps it); returns the
        removed ids. Readings, alerts and commands are never touched; a removed gateway's next
        status document adds it again."""

    @abc.abstractmethod
    def record_fleet_samples(self, samples: Sequence[FleetSample], *, now: datetime, keep_after: datetime) -> int:
        """Upsert ``samples`` (keyed by bucket and province: a second writer of the same bucket
        only refreshes it) and delete samples of buckets before ``keep_after``, in one
        transaction; returns how many old rows went."""

    @abc.abstractmethod
    def fleet_samples(self, since: datetime, province: str | None = None) -> list[FleetSample]:
        """Samples of buckets at or after ``since`` (of one province when given), oldest first."""

    @abc.abstractmethod
    def count_readings(self, gateway_id: str | None = None) -> int: ...

    @abc.abstractmethod
    def uids(self, gateway_id: str | None = None) -> set[str]: ...

    @abc.abstractmethod
    def iter_readings(self, since: datetime | None = None) -> Iterator[StoredReading]:
        """Every stored reading ingested at or after ``since`` (all when None), ordered by
        (gateway id, seq), read in pages: memory stays bounded however large the store."""

    @abc.abstractmethod
    def alerts(self, gateway_id: str | None = None) -> list[StoredAlert]:
        """Stored alerts (their highest revision), ordered by alert id."""

    @abc.abstractmethod
    def iter_alerts(self, since: datetime | None = None, kinds: Sequence[str] | None = None) -> Iterator[StoredAlert]:
        """Stored alerts (their highest revision) whose revision the hub ingested at or after
        ``since`` (all when None), of the given ``kinds`` only (all when None), ordered by alert
        id and read in pages like :meth:`iter_readings`."""

    # -- the command ledger (hub.commands) ----------------------------------------------------

    @abc.abstractmethod
    def allocate_command(
        self,
        *,
        cmd_id: str,
        gateway_id: str,
        province: str | None,
        kind: str,
        args: Mapping[str, object],
        issued_at: datetime,
        expires_at: datetime,
    ) -> int:
        """Record a new command (state ``sent``) and return its sequence number: one more than
        the gateway's highest, allocated by the database (safe with several hub processes)."""

    @abc.abstractmethod
    def record_command_result(
        self,
        *,
        cmd_id: str,
        gateway_id: str,
        state: str,
        detail: str | None,
        data: Mapping[str, object],
        result_at: datetime,
    ) -> bool:
        """Record the gateway's result of a command once; False when it had one already (a
        redelivery) or no such command of that gateway exists."""

    @abc.abstractmethod
    def commands(
        self, gateway_id: str | None = None, province: str | None = None, limit: int = 50
    ) -> list[CommandRecord]:
        """The ledger, newest first (of one gateway and/or province when given), at most ``limit``."""

    @abc.abstractmethod
    def command(self, cmd_id: str) -> CommandRecord | None: ...

    @abc.abstractmethod
    def command_data(self, cmd_id: str) -> dict[str, object] | None:
        """The kind-specific data of a command's result (a diagnostics bundle); None before a result."""

    @abc.abstractmethod
    def last_commands(self, province: str | None = None) -> dict[str, CommandRecord]:
        """Each gateway's latest command (highest seq), by gateway id."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def is_postgres_url(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and error messages)."""
    return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)


def open_store(spec: str | Path, *, create: bool = True) -> HubStore:
    """Open (and migrate) the store that ``spec`` names.

    ``spec`` is a directory (the SQLite file ``<dir>/hub.sqlite3``, WAL, ``synchronous=FULL``;
    the directory is made, mode 0700, when ``create``) or a ``postgresql://`` URL. Raises
    :class:`StoreOperatorError` when only an operator can fix it (not a directory, unreadable,
    schema newer than this code, ``create`` off and nothing there) and :class:`StoreError` when
    retrying may help (database server down).
    """
    text = str(spec)
    if is_postgres_url(text):
        from hub.store_postgres import PostgresStore

        return PostgresStore.open(text)
    from hub.store_sqlite import SqliteStore

    return SqliteStore.open(Path(text), create=create)
