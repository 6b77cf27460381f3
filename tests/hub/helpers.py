"""Test helpers for the hub: reading factories and throwaway PostgreSQL databases."""

from __future__ import annotations

import contextlib
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from device_drivers.records import UNITS, Quality, Reading, Vital

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PG_ADMIN_URL = os.environ.get("STATION_EDGE_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def reading(
    gateway_id: str,
    seq: int,
    *,
    vital: Vital = Vital.SPO2,
    value: float = 97.0,
    at: datetime | None = None,
    device_id: str = "oximeter-1",
    patient_id: str | None = "079085001234",
    flags: frozenset[Quality] = frozenset(),
    extra: tuple[tuple[str, str | int | float | bool], ...] = (),
    clock_from_device: bool = True,
) -> Reading:
    measured = at or T0 + timedelta(seconds=seq)
    return Reading(
        uid=f"{gateway_id}:{seq}",
        seq=seq,
        vital=vital,
        value=value,
        unit=UNITS[vital],
        measured_at=measured,
        received_at=measured + timedelta(milliseconds=250),
        device_id=device_id,
        source_format="masimo-ascii",
        clock_from_device=clock_from_device,
        patient_id=patient_id,
        flags=flags,
        extra=extra,
    )


def readings(gateway_id: str, seqs: range | list[int]) -> list[Reading]:
    return [reading(gateway_id, s, value=90.0 + s % 10) for s in seqs]


def pg_available() -> str | None:
    """None when the PostgreSQL server answers at PG_ADMIN_URL, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"no PostgreSQL at {PG_ADMIN_URL}: {type(exc).__name__}"
    return None


def with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose sessions resolve unqualified names in ``schema`` (a fresh namespace per test)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query.append(("options", f"-csearch_path={schema}"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A new database ``hub_test_<random>`` on the server, dropped afterwards; yields its URL."""
    import psycopg

    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield with_database(PG_ADMIN_URL, name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def new_schema(database_url: str) -> str:
    """Create a fresh schema in the database; returns a URL whose search_path is that schema."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    return with_search_path(database_url, schema)


def sealed_readings(
    pki: Any,
    gateway_id: str,
    rs: list[Reading],
    *,
    batch_id: str | None = None,
    identity: Any = None,
    lane: str = "readings",
    inner_batch_id: str | None = None,
    inner_gateway_id: str | None = None,
    hub_public: Any = None,
) -> tuple[str, bytes]:
    """(batch id, envelope) of a reading batch sealed to the hub and signed by the gateway, as a
    gateway would publish it. The keyword arguments make the bad variants."""
    from wire import envelope, messages

    batch_id = batch_id or f"b-{uuid.uuid4().hex[:16]}"
    plaintext = messages.encode_readings(
        messages.ReadingBatch(
            batch_id=inner_batch_id or batch_id,
            gateway_id=inner_gateway_id or gateway_id,
            sent_at=datetime.now(UTC),
            readings=tuple(rs),
        )
    )
    data = envelope.seal(
        plaintext,
        lane=lane,
        gateway_id=gateway_id,
        batch_id=batch_id,
        hub_sealing_public=(hub_public or pki.hub_public).sealing,
        gateway=identity or pki.gateway(gateway_id),
    )
    return batch_id, data


def sealed_alerts(pki: Any, gateway_id: str, alerts: list[Any], *, batch_id: str | None = None) -> tuple[str, bytes]:
    from wire import envelope, messages

    batch_id = batch_id or f"a-{uuid.uuid4().hex[:16]}"
    plaintext = messages.encode_alerts(
        messages.AlertBatch(batch_id=batch_id, gateway_id=gateway_id, sent_at=datetime.now(UTC), alerts=tuple(alerts))
    )
    data = envelope.seal(
        plaintext,
        lane="alerts",
        gateway_id=gateway_id,
        batch_id=batch_id,
        hub_sealing_public=pki.hub_public.sealing,
        gateway=pki.gateway(gateway_id),
    )
    return batch_id, data
