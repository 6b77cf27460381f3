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
from hub.commands import CommandRecord
from hub.store import (
    PAGE_SIZE,
    READING_COLUMN_LIST,
    FleetSample,
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


FLEET_SAMPLE_COLUMNS = "bucket_at, province, gateways, online, stale, offline, pending, data_at_risk"


def upsert_fleet_sample_sql(p: str) -> str:
    """The fleet_samples upsert with placeholder ``p`` (FLEET_SAMPLE_COLUMNS, then sampled_at)."""
    return (
        f"INSERT INTO fleet_samples ({FLEET_SAMPLE_COLUMNS}, sampled_at) VALUES ({', '.join([p] * 9)}) "
        "ON CONFLICT (bucket_at, province) DO UPDATE SET gateways = excluded.gateways, online = excluded.online, "
        "stale = excluded.stale, offline = excluded.offline, pending = excluded.pending, "
        "data_at_risk = excluded.data_at_risk, sampled_at = excluded.sampled_at"
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


COMMAND_COLUMNS = "cmd_id, gateway_id, province, kind, seq, issued_at, expires_at, state, detail, result_at"


def allocate_command_sql(p: str) -> str:
    """Insert a ``sent`` command with the gateway's next seq; parameters: cmd_id, gateway_id,
    province, kind, issued_at, expires_at, args, then gateway_id again. RETURNING the seq."""
    return (
        "INSERT INTO commands (cmd_id, gateway_id, province, kind, seq, issued_at, expires_at, args, state) "
        f"SELECT {p}, {p}, {p}, {p}, coalesce(max(seq), 0) + 1, {p}, {p}, {p}, 'sent' "
        f"FROM commands WHERE gateway_id = {p} RETURNING seq"
    )


def record_result_sql(p: str) -> str:
    """Parameters: state, detail, result_at, result, cmd_id, gateway_id; only a first result counts."""
    return (
        f"UPDATE commands SET state = {p}, detail = {p}, result_at = {p}, result = {p} "
        f"WHERE cmd_id = {p} AND gateway_id = {p} AND result_at IS NULL"
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

    def _command_record(self, row: Sequence[Any]) -> CommandRecord:
        c, g, prov, k, seq, ia, ea, st, d, ra = row
        result_at = None if ra is None else self._to_time(ra)
        return CommandRecord(c, g, prov, k, int(seq), self._to_time(ia), self._to_time(ea), st, d, result_at)

    def commands(
        self, gateway_id: str | None = None, province: str | None = None, limit: int = 50
    ) -> list[CommandRecord]:
        p = self.placeholder
        where: list[str] = []
        params: list[Any] = []
        if gateway_id is not None:
            where.append(f"gateway_id = {p}")
            params.append(gateway_id)
        if province is not None:
            where.append(f"province = {p}")
            params.append(province)
        sql = f"SELECT {COMMAND_COLUMNS} FROM commands"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY issued_at DESC, seq DESC LIMIT {max(0, int(limit))}"
        return [self._command_record(r) for r in self._query(sql, params)]

    def command(self, cmd_id: str) -> CommandRecord | None:
        rows = self._query(f"SELECT {COMMAND_COLUMNS} FROM commands WHERE cmd_id = {self.placeholder}", (cmd_id,))
        return self._command_record(rows[0]) if rows else None

    def command_data(self, cmd_id: str) -> dict[str, object] | None:
        rows = self._query(f"SELECT result FROM commands WHERE cmd_id = {self.placeholder}", (cmd_id,))
        if not rows or rows[0][0] is None:
            return None
        return dict(self._from_json(rows[0][0]))

    def last_commands(self, province: str | None = None) -> dict[str, CommandRecord]:
        sql = (
            f"SELECT {COMMAND_COLUMNS} FROM commands c "
            "WHERE seq = (SELECT max(seq) FROM commands d WHERE d.gateway_id = c.gateway_id)"
        )
        rows = (
            self._query(sql)
            if province is None
            else self._query(sql + f" AND province = {self.placeholder}", (province,))
        )
        return {r[1]: self._command_record(r) for r in rows}

    def _fleet_sample_rows(self, samples: Sequence[FleetSample], now: datetime) -> list[tuple[Any, ...]]:
        at = self._time_param(now)
        return [
            (
                self._time_param(s.bucket_at),
                s.province,
                s.gateways,
                s.online,
                s.stale,
                s.offline,
                s.pending,
                s.data_at_risk,
                at,
            )
            for s in samples
        ]

    def fleet_samples(self, since: datetime, province: str | None = None) -> list[FleetSample]:
        p = self.placeholder
        sql = f"SELECT {FLEET_SAMPLE_COLUMNS} FROM fleet_samples WHERE bucket_at >= {p}"
        params: tuple[Any, ...] = (self._time_param(since),)
        if province is not None:
            sql += f" AND province = {p}"
            params += (province,)
        rows = self._query(sql + " ORDER BY bucket_at, province", params)
        return [
            FleetSample(self._to_time(b), pr, int(g), int(on), int(st), int(off), int(pe), int(r))
            for b, pr, g, on, st, off, pe, r in rows
        ]

    def prune_gateways(self, last_seen: Mapping[str, datetime]) -> list[str]:
        p = self.placeholder
        sql = f"DELETE FROM gateways WHERE gateway_id = {p} AND last_seen <= {p} RETURNING gateway_id"
        removed: list[str] = []
        for gateway_id in sorted(last_seen):  # one autocommitted statement each: no long lock
            rows = self._query(sql, (gateway_id, self._time_param(last_seen[gateway_id])))
            removed.extend(str(r[0]) for r in rows)
        return removed

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
