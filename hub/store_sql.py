"""What the two SQL engines share, written once: the read queries, the reading rows an ingest
writes, and the alert / gateway upsert statements.

An engine subclasses :class:`SqlStore` and says how it talks to its database: its parameter
``placeholder`` (``?`` or ``%s``), how it runs a query (:meth:`SqlStore._query`), and how it keeps
times, booleans and JSON (``_time_param``, ``_bool_param``, ``_to_time``, ``_from_json``).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from device_drivers.records import Reading
from hub.store import (
    PAGE_SIZE,
    READING_COLUMN_LIST,
    GatewayRecord,
    HubStore,
    StoredAlert,
    StoredReading,
    parse_time,
    stored_reading_from_row,
)


def dump_json(value: object) -> str:
    """Canonical JSON text (compact, sorted keys, no NaN)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


def upsert_alert_sql(p: str) -> str:
    """The alert upsert with placeholder ``p``: the higher revision wins, never across gateways."""
    return (
        "INSERT INTO alerts (alert_id, gateway_id, rev, kind, level, state, payload, batch_id, ingested_at) "
        f"VALUES ({', '.join([p] * 9)}) "
        "ON CONFLICT (alert_id) DO UPDATE SET rev = excluded.rev, kind = excluded.kind, level = excluded.level, "
        "state = excluded.state, payload = excluded.payload, batch_id = excluded.batch_id, "
        "ingested_at = excluded.ingested_at "
        "WHERE excluded.rev > alerts.rev AND excluded.gateway_id = alerts.gateway_id"
    )


def upsert_gateway_sql(p: str) -> str:
    """The fleet registry upsert with placeholder ``p``; parameters: gateway_id, province, online,
    last_seen, status, state_since, sent_at (None for a last will), then ``replay`` (a retained or
    redelivered copy). A missing province keeps the stored one; a last will keeps the stored
    heartbeat and last_seen; a replayed heartbeat sent before the stored one changes nothing (a
    live one always counts: a gateway's clock may step back); ``state_since`` moves only when
    ``online`` changes."""
    return (
        "INSERT INTO gateways (gateway_id, province, online, last_seen, status, state_since, sent_at) "
        f"VALUES ({', '.join([p] * 7)}) "
        "ON CONFLICT (gateway_id) DO UPDATE SET province = coalesce(excluded.province, gateways.province), "
        "online = excluded.online, "
        "state_since = CASE WHEN gateways.online = excluded.online AND gateways.state_since IS NOT NULL "
        "THEN gateways.state_since ELSE excluded.state_since END, "
        "last_seen = CASE WHEN excluded.sent_at IS NULL THEN gateways.last_seen ELSE excluded.last_seen END, "
        "status = CASE WHEN excluded.sent_at IS NULL THEN gateways.status ELSE excluded.status END, "
        "sent_at = coalesce(excluded.sent_at, gateways.sent_at) "
        f"WHERE excluded.sent_at IS NULL OR gateways.sent_at IS NULL OR NOT {p} "
        "OR excluded.sent_at >= gateways.sent_at"
    )


class SqlStore(HubStore):
    """The read side of :class:`HubStore` over an engine's ``_query``."""

    placeholder: ClassVar[str]  # the engine's query parameter marker

    @abc.abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of ``sql``; the engine's errors become :class:`StoreError`."""

    @abc.abstractmethod
    def _time_param(self, dt: datetime) -> Any:
        """``dt`` as the engine stores a time (a query parameter)."""

    @abc.abstractmethod
    def _bool_param(self, value: bool) -> Any:
        """``value`` as the engine stores a boolean (a query parameter)."""

    @abc.abstractmethod
    def _to_time(self, value: Any) -> datetime:
        """A stored time as an aware UTC datetime."""

    @abc.abstractmethod
    def _from_json(self, value: Any) -> Any:
        """A stored JSON column as Python values."""

    def _reading_rows(
        self, gateway_id: str, batch_id: str, readings: Sequence[Reading], now: datetime
    ) -> list[tuple[Any, ...]]:
        """The readings as rows in READING_COLUMNS order, ingested at ``now``."""
        at = self._time_param(now)
        return [
            (
                r.uid,
                gateway_id,
                r.seq,
                str(r.vital),
                r.value,
                r.unit,
                self._time_param(r.measured_at),
                self._time_param(r.received_at),
                r.device_id,
                r.source_format,
                r.patient_id,
                dump_json(sorted(str(f) for f in r.flags)),
                dump_json(dict(r.extra)),
                self._bool_param(r.clock_from_device),
                batch_id,
                at,
            )
            for r in readings
        ]

    def _stored_reading(self, row: tuple[Any, ...]) -> StoredReading:
        return stored_reading_from_row(row, to_time=self._to_time, from_json=self._from_json)

    def _gateway_params(
        self,
        gateway_id: str,
        doc: Mapping[str, object],
        province: str | None,
        now: datetime,
        seen: datetime | None,
        replay: bool,
    ) -> tuple[Any, ...]:
        """The parameters of :func:`upsert_gateway_sql` for one status document."""
        sent = parse_time(doc.get("sent_at"))
        return (
            gateway_id,
            province,
            self._bool_param(bool(doc.get("online"))),
            self._time_param(seen or now),
            self._json_param(doc),
            self._time_param(now),
            None if sent is None else self._time_param(sent),
            self._bool_param(replay),
        )

    @abc.abstractmethod
    def _json_param(self, doc: Mapping[str, object]) -> Any:
        """``doc`` as the engine stores a JSON column (a query parameter)."""

    def gateways(self, province: str | None = None) -> list[GatewayRecord]:
        sql = "SELECT gateway_id, province, online, last_seen, status, state_since FROM gateways"
        rows = (
            self._query(sql + " ORDER BY gateway_id")
            if province is None
            else self._query(sql + f" WHERE province = {self.placeholder} ORDER BY gateway_id", (province,))
        )
        return [
            GatewayRecord(
                g, p, bool(o), self._to_time(s), dict(self._from_json(d)), None if ss is None else self._to_time(ss)
            )
            for g, p, o, s, d, ss in rows
        ]

    def count_readings(self, gateway_id: str | None = None) -> int:
        if gateway_id is None:
            return int(self._query("SELECT count(*) FROM readings")[0][0])
        sql = f"SELECT count(*) FROM readings WHERE gateway_id = {self.placeholder}"
        return int(self._query(sql, (gateway_id,))[0][0])

    def uids(self, gateway_id: str | None = None) -> set[str]:
        if gateway_id is None:
            return {r[0] for r in self._query("SELECT uid FROM readings")}
        sql = f"SELECT uid FROM readings WHERE gateway_id = {self.placeholder}"
        return {r[0] for r in self._query(sql, (gateway_id,))}

    def iter_readings(self, since: datetime | None = None) -> Iterator[StoredReading]:
        p = self.placeholder
        where = "" if since is None else f"AND ingested_at >= {p}"
        extra_params: tuple[Any, ...] = () if since is None else (self._time_param(since),)
        key: tuple[str, int, str] = ("", -(2**63), "")
        while True:
            rows = self._query(
                f"SELECT {READING_COLUMN_LIST} FROM readings WHERE (gateway_id, seq, uid) > ({p}, {p}, {p}) {where} "
                f"ORDER BY gateway_id, seq, uid LIMIT {PAGE_SIZE}",
                (*key, *extra_params),
            )
            for row in rows:
                yield self._stored_reading(row)
            if len(rows) < PAGE_SIZE:
                return
            last = rows[-1]
            key = (last[1], last[2], last[0])

    def alerts(self, gateway_id: str | None = None) -> list[StoredAlert]:
        sql = "SELECT alert_id, gateway_id, rev, payload, batch_id, ingested_at FROM alerts"
        rows = (
            self._query(sql + " ORDER BY alert_id")
            if gateway_id is None
            else self._query(sql + f" WHERE gateway_id = {self.placeholder} ORDER BY alert_id", (gateway_id,))
        )
        return [StoredAlert(a, g, int(r), dict(self._from_json(p)), b, self._to_time(t)) for a, g, r, p, b, t in rows]

    def iter_alerts(self, since: datetime | None = None, kinds: Sequence[str] | None = None) -> Iterator[StoredAlert]:
        p = self.placeholder
        where = ""
        extra_params: list[Any] = []
        if since is not None:
            where += f" AND ingested_at >= {p}"
            extra_params.append(self._time_param(since))
        if kinds is not None:
            if not kinds:
                return
            where += f" AND kind IN ({', '.join([p] * len(kinds))})"
            extra_params.extend(kinds)
        key = ""
        while True:
            rows = self._query(
                "SELECT alert_id, gateway_id, rev, payload, batch_id, ingested_at FROM alerts "
                f"WHERE alert_id > {p}{where} ORDER BY alert_id LIMIT {PAGE_SIZE}",
                (key, *extra_params),
            )
            for a, g, r, pl, b, t in rows:
                yield StoredAlert(a, g, int(r), dict(self._from_json(pl)), b, self._to_time(t))
            if len(rows) < PAGE_SIZE:
                return
            key = rows[-1][0]
