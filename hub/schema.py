"""The hub store's versioned schema, one list of forward migrations written for both engines.

Each migration runs once, in one transaction, in order; applied versions are recorded in
``schema_migrations`` (sqlite-utils' way). Never edit a released step: add a new one.

Version history:

1. ``readings`` (one row per reading uid: the dedupe key), ``alerts`` (one row per alert id, the
   highest revision kept), ``gateways`` (the fleet registry: last status document, last seen,
   online).
2. ``gateways.state_since`` (when ``online`` last changed, as the hub saw it) and
   ``gateways.sent_at`` (the gateway's ``sent_at`` of the stored heartbeat: an older copy is
   ignored), an index on ``gateways.province`` (the fleet view's filter).
3. ``commands``: the ledger of signed remote commands (hub.commands) and their results, one row
   per command id; ``(gateway_id, seq)`` is unique, so the database allocates each gateway's
   next sequence number even with several hub processes.
4. ``fleet_samples``: the fleet's history for the fleet page's plot (hub.fleet_history), one row
   per (time bucket, province): gateways by state, readings pending, gateways with data at risk;
   written by every ``edge-hub web`` process with an upsert (several are harmless), kept 14 days.

Times: PostgreSQL ``timestamptz``; SQLite ISO-8601 text in UTC with microseconds
(``2024-06-01T10:12:00.000000+00:00``), fixed width, so text order is time order. ``flags`` is
a JSON array of quality flags, ``extra`` a JSON object (``jsonb`` on PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


_SQLITE_V1 = (
    """CREATE TABLE readings (
        uid TEXT PRIMARY KEY,
        gateway_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        vital TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL,
        measured_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        device_id TEXT NOT NULL,
        source_format TEXT NOT NULL,
        patient_id TEXT,
        flags TEXT NOT NULL DEFAULT '[]',
        extra TEXT NOT NULL DEFAULT '{}',
        clock_from_device INTEGER NOT NULL,
        batch_id TEXT NOT NULL,
        ingested_at TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX readings_gateway_seq ON readings (gateway_id, seq, uid)",
    "CREATE INDEX readings_ingested ON readings (ingested_at)",
    """CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        gateway_id TEXT NOT NULL,
        rev INTEGER NOT NULL,
        kind TEXT,
        level TEXT,
        state TEXT,
        payload TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        ingested_at TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX alerts_gateway ON alerts (gateway_id)",
    """CREATE TABLE gateways (
        gateway_id TEXT PRIMARY KEY,
        province TEXT,
        online INTEGER NOT NULL,
        last_seen TEXT NOT NULL,
        status TEXT NOT NULL
    ) WITHOUT ROWID""",
)

_PG_V1 = (
    """CREATE TABLE readings (
        uid text PRIMARY KEY,
        gateway_id text NOT NULL,
        seq bigint NOT NULL,
        vital text NOT NULL,
        value double precision NOT NULL,
        unit text NOT NULL,
        measured_at timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        device_id text NOT NULL,
        source_format text NOT NULL,
        patient_id text,
        flags jsonb NOT NULL DEFAULT '[]',
        extra jsonb NOT NULL DEFAULT '{}',
        clock_from_device boolean NOT NULL,
        batch_id text NOT NULL,
        ingested_at timestamptz NOT NULL
    )""",
    "CREATE INDEX readings_gateway_seq ON readings (gateway_id, seq, uid)",
    "CREATE INDEX readings_ingested ON readings (ingested_at)",
    """CREATE TABLE alerts (
        alert_id text PRIMARY KEY,
        gateway_id text NOT NULL,
        rev bigint NOT NULL,
        kind text,
        level text,
        state text,
        payload jsonb NOT NULL,
        batch_id text NOT NULL,
        ingested_at timestamptz NOT NULL
    )""",
    "CREATE INDEX alerts_gateway ON alerts (gateway_id)",
    """CREATE TABLE gateways (
        gateway_id text PRIMARY KEY,
        province text,
        online boolean NOT NULL,
        last_seen timestamptz NOT NULL,
        status jsonb NOT NULL
    )""",
)

_SQLITE_V2 = (
    "ALTER TABLE gateways ADD COLUMN state_since TEXT",
    "ALTER TABLE gateways ADD COLUMN sent_at TEXT",
    "CREATE INDEX gateways_province ON gateways (province)",
)

_PG_V2 = (
    "ALTER TABLE gateways ADD COLUMN state_since timestamptz, ADD COLUMN sent_at timestamptz",
    "CREATE INDEX gateways_province ON gateways (province)",
)

_SQLITE_V3 = (
    """CREATE TABLE commands (
        cmd_id TEXT PRIMARY KEY,
        gateway_id TEXT NOT NULL,
        province TEXT,
        kind TEXT NOT NULL,
        seq INTEGER NOT NULL,
        issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        detail TEXT,
        result_at TEXT,
        result TEXT,
        UNIQUE (gateway_id, seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX commands_issued ON commands (issued_at)",
)

_PG_V3 = (
    """CREATE TABLE commands (
        cmd_id text PRIMARY KEY,
        gateway_id text NOT NULL,
        province text,
        kind text NOT NULL,
        seq bigint NOT NULL,
        issued_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        args jsonb NOT NULL DEFAULT '{}',
        state text NOT NULL,
        detail text,
        result_at timestamptz,
        result jsonb,
        UNIQUE (gateway_id, seq)
    )""",
    "CREATE INDEX commands_issued ON commands (issued_at)",
)

_SQLITE_V4 = (
    """CREATE TABLE fleet_samples (
        bucket_at TEXT NOT NULL,
        province TEXT NOT NULL,
        gateways INTEGER NOT NULL,
        online INTEGER NOT NULL,
        stale INTEGER NOT NULL,
        offline INTEGER NOT NULL,
        pending INTEGER NOT NULL,
        data_at_risk INTEGER NOT NULL,
        sampled_at TEXT NOT NULL,
        PRIMARY KEY (bucket_at, province)
    ) WITHOUT ROWID""",
)

_PG_V4 = (
    """CREATE TABLE fleet_samples (
        bucket_at timestamptz NOT NULL,
        province text NOT NULL,
        gateways integer NOT NULL,
        online integer NOT NULL,
        stale integer NOT NULL,
        offline integer NOT NULL,
        pending bigint NOT NULL,
        data_at_risk integer NOT NULL,
        sampled_at timestamptz NOT NULL,
        PRIMARY KEY (bucket_at, province)
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "readings, alerts, gateways", _SQLITE_V1, _PG_V1),
    Migration(2, "fleet registry: gateways.state_since, gateways.sent_at", _SQLITE_V2, _PG_V2),
    Migration(3, "commands ledger", _SQLITE_V3, _PG_V3),
    Migration(4, "fleet history: fleet_samples", _SQLITE_V4, _PG_V4),
)

LATEST = MIGRATIONS[-1].version

SQLITE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
)
PG_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL)"
)
