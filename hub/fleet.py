"""The fleet view, pure: a gateway's registry row (its last heartbeat, when it came, since when
it is online or offline) as a typed :class:`FleetRecord` at a given ``now``, the urgency order an
operator reads it in, the summary line, the table and the JSON. No I/O, no wall clock: the
caller passes ``now``.

Urgency (most urgent first):

1. **silent**: offline (a last will or a clean stop) or stale (says online, but no heartbeat for
   :attr:`Thresholds.stale_after_s`): the longest silent first;
2. **data at risk**: readings waiting longer than :attr:`Thresholds.backlog_age_s` (the oldest
   pending age, projected to ``now``), or the store full: the oldest backlog first;
3. **certificate expiring** within :attr:`Thresholds.cert_days` (or expired): the soonest first;
4. everything else, by gateway id.

What a heartbeat holds is described in ``edge_agent/sync/heartbeat.py`` (an allow-list: counts,
states, versions, times, sizes; never a patient value).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from hub.store import CommandRecord, GatewayRecord, parse_time

__all__ = [
    "DeviceView",
    "FleetRecord",
    "FleetSummary",
    "ModelView",
    "Thresholds",
    "build_record",
    "by_urgency",
    "fleet_json",
    "fleet_records",
    "parse_time",
    "render_table",
    "seen_at",
    "summarise",
]

URGENCY_SILENT = 0
URGENCY_DATA_AT_RISK = 1
URGENCY_CERTIFICATE = 2
URGENCY_NONE = 3
FULL_SPACE_LEVELS = frozenset({"full", "critical"})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a gateway needs an operator's eye (``edge-hub fleet --stale-after``, ``--backlog-age``,
    ``--cert-days``). Defaults: stale after 5 silent minutes (the heartbeat comes every 60 s), a
    backlog older than an hour, a certificate with 14 days or fewer."""

    stale_after_s: float = 300.0
    backlog_age_s: float = 3600.0
    cert_days: float = 14.0


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: str
    state: str | None
    last_data_at: datetime | None


@dataclass(frozen=True, slots=True)
class ModelView:
    id: str
    version: str | None


@dataclass(frozen=True, slots=True)
class FleetRecord:
    """One gateway as the fleet view shows it at ``now``. ``None``: the heartbeat did not say."""

    gateway_id: str
    province: str | None
    state: str  # "online" | "stale" | "offline"
    online: bool  # what the gateway (or its last will) last said
    since: datetime | None  # when ``online`` last changed (as the hub saw it)
    last_seen: datetime  # when the last heartbeat came
    silent_s: float  # now - last_seen
    backlog_pending: int | None
    oldest_pending_age_s: float | None  # projected to now
    dead_letter: int | None
    last_sync_at: datetime | None  # the last acknowledged batch
    sync_state: str | None
    rejected_batches: int | None
    store_bytes: int | None
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    space_level: str | None
    clock_ntp: str | None
    clock_offset_s: float | None  # the gateway's NTP offset estimate
    hub_offset_s: float | None  # the hub's ack time minus the gateway's clock
    agent_version: str | None
    models: tuple[ModelView, ...]
    devices: tuple[DeviceView, ...]
    open_alerts: int | None
    dropped: int  # readings the gateway dropped (all reasons, since its start)
    cert_not_after: datetime | None
    cert_days_left: float | None  # from now
    urgency: int
    reasons: tuple[str, ...]  # why it is urgent: offline, stale, data_at_risk, store_full, cert_*
    last_command: dict[str, Any] | None = None  # the latest remote command (hub.commands) and its state

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


@dataclass(frozen=True, slots=True)
class FleetSummary:
    gateways: int
    online: int
    stale: int
    offline: int
    data_at_risk: int
    cert_expiring: int
    pending: int
    open_alerts: int
    provinces: tuple[str, ...] = field(default=())

    def line(self) -> str:
        return (
            f"{self.gateways} gateways: {self.online} online, {self.stale} stale, {self.offline} offline; "
            f"{self.data_at_risk} with data at risk, {self.cert_expiring} with a certificate expiring; "
            f"{self.pending} readings pending, {self.open_alerts} open alerts"
        )


# -- parsing a heartbeat (defensive: a document from the field, of any agent version) ----------


def _section(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, Mapping) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _dropped(store: Mapping[str, Any]) -> int:
    counts = store.get("dropped")
    if not isinstance(counts, Mapping):
        return 0
    return sum(v for v in counts.values() if isinstance(v, int) and not isinstance(v, bool) and v > 0)


def seen_at(doc: Mapping[str, Any], now: datetime, *, retained: bool) -> datetime:
    """When the gateway was last heard from, for a heartbeat the hub receives at ``now``.

    A live heartbeat was just sent: ``now``. A retained copy the broker replays (a hub that
    subscribes anew) may be old: its ``sent_at``, moved by the gateway's own estimate of its
    offset to the hub's clock, and never later than ``now``."""
    if not retained:
        return now
    sent = parse_time(doc.get("sent_at"))
    if sent is None:
        return now
    offset = _num(_section(doc, "clock").get("hub_offset_s"))
    if offset is not None:
        sent += timedelta(seconds=offset)
    return min(sent, now)


# -- the record -------------------------------------------------------------------------------


def build_record(g: GatewayRecord, now: datetime, thresholds: Thresholds = Thresholds()) -> FleetRecord:
    doc: Mapping[str, Any] = g.status
    backlog = _section(doc, "backlog")
    store = _section(doc, "store")
    disk = _section(doc, "disk")
    sync = _section(doc, "sync")
    clock = _section(doc, "clock")
    scoring = _section(doc, "scoring")
    cert = _section(doc, "certificate")
    silent_s = max(0.0, (now - g.last_seen).total_seconds())
    if not g.online:
        state = "offline"
    elif silent_s > thresholds.stale_after_s:
        state = "stale"
    else:
        state = "online"
    pending = _int(backlog.get("pending"))
    age = _num(backlog.get("oldest_pending_age_s"))
    if age is not None and pending:
        age += silent_s  # the backlog has aged since the heartbeat said so
    elif pending == 0:
        age = None
    not_after = parse_time(cert.get("not_after"))
    days_left = None if not_after is None else round((not_after - now).total_seconds() / 86400, 2)
    space_level = _text(store.get("space_level"))
    reasons: list[str] = []
    if state != "online":
        reasons.append(state)
    if age is not None and age > thresholds.backlog_age_s:
        reasons.append("data_at_risk")
    if space_level in FULL_SPACE_LEVELS or store.get("disk_full") is True:
        reasons.append("store_full")
    if days_left is not None and days_left <= 0:
        reasons.append("cert_expired")
    elif days_left is not None and days_left <= thresholds.cert_days:
        reasons.append("cert_expiring")
    if state != "online":
        urgency = URGENCY_SILENT
    elif "data_at_risk" in reasons or "store_full" in reasons:
        urgency = URGENCY_DATA_AT_RISK
    elif "cert_expired" in reasons or "cert_expiring" in reasons:
        urgency = URGENCY_CERTIFICATE
    else:
        urgency = URGENCY_NONE
    models = tuple(
        ModelView(str(m["id"]), _text(m.get("version")))
        for m in (scoring.get("models") or [])
        if isinstance(m, Mapping) and isinstance(m.get("id"), str)
    )
    devices = tuple(
        DeviceView(str(d["id"]), _text(d.get("state")), parse_time(d.get("last_data_at")))
        for d in (doc.get("devices") or [])
        if isinstance(d, Mapping) and isinstance(d.get("id"), str)
    )
    return FleetRecord(
        gateway_id=g.gateway_id,
        province=g.province,
        state=state,
        online=g.online,
        since=g.since,
        last_seen=g.last_seen,
        silent_s=round(silent_s, 3),
        backlog_pending=pending,
        oldest_pending_age_s=None if age is None else round(age, 3),
        dead_letter=_int(backlog.get("dead_letter")),
        last_sync_at=parse_time(sync.get("last_ack_at")),
        sync_state=_text(sync.get("state")),
        rejected_batches=_int(sync.get("rejected_batches")),
        store_bytes=_int(store.get("bytes_on_disk")),
        disk_free_bytes=_int(disk.get("free_bytes")),
        disk_total_bytes=_int(disk.get("total_bytes")),
        space_level=space_level,
        clock_ntp=_text(clock.get("ntp")),
        clock_offset_s=_num(clock.get("offset_s")),
        hub_offset_s=_num(clock.get("hub_offset_s")),
        agent_version=_text(doc.get("agent_version")),
        models=models,
        devices=devices,
        open_alerts=_int(scoring.get("open_alerts")),
        dropped=_dropped(store),
        cert_not_after=not_after,
        cert_days_left=days_left,
        urgency=urgency,
        reasons=tuple(reasons),
    )


def _urgency_key(r: FleetRecord) -> tuple[int, float, str]:
    if r.urgency == URGENCY_SILENT:
        return (r.urgency, -r.silent_s, r.gateway_id)
    if r.urgency == URGENCY_DATA_AT_RISK:
        return (r.urgency, -(r.oldest_pending_age_s or 0.0), r.gateway_id)
    if r.urgency == URGENCY_CERTIFICATE:
        return (r.urgency, r.cert_days_left if r.cert_days_left is not None else 0.0, r.gateway_id)
    return (r.urgency, 0.0, r.gateway_id)


def by_urgency(records: Iterable[FleetRecord]) -> list[FleetRecord]:
    """Most urgent first (see the module doc); ties by gateway id, so the order is total."""
    return sorted(records, key=_urgency_key)


def fleet_records(
    gateways: Iterable[GatewayRecord],
    now: datetime,
    *,
    province: str | None = None,
    thresholds: Thresholds = Thresholds(),
    commands: Mapping[str, CommandRecord] | None = None,
) -> list[FleetRecord]:
    """The registry as fleet records, of one province when given, most urgent first; with
    ``commands`` (``HubStore.last_commands``) each record carries its gateway's last command
    (its state at ``now``: never answered and past its expiry shows ``expired``)."""
    records = (build_record(g, now, thresholds) for g in gateways if province is None or g.province == province)
    if commands:
        records = (
            replace(r, last_command=commands[r.gateway_id].as_dict(now)) if r.gateway_id in commands else r
            for r in records
        )
    return by_urgency(records)


def summarise(records: Sequence[FleetRecord]) -> FleetSummary:
    return FleetSummary(
        gateways=len(records),
        online=sum(r.state == "online" for r in records),
        stale=sum(r.state == "stale" for r in records),
        offline=sum(r.state == "offline" for r in records),
        data_at_risk=sum("data_at_risk" in r.reasons or "store_full" in r.reasons for r in records),
        cert_expiring=sum("cert_expiring" in r.reasons or "cert_expired" in r.reasons for r in records),
        pending=sum(r.backlog_pending or 0 for r in records),
        open_alerts=sum(r.open_alerts or 0 for r in records),
        provinces=tuple(sorted({r.province for r in records if r.province})),
    )


# -- output -----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def fleet_json(records: Sequence[FleetRecord], *, compact: bool = False) -> str:
    """A JSON list of the records (times ISO 8601 UTC), for scripts; ``compact``: one line."""
    docs = [r.to_json() for r in records]
    if compact:
        return json.dumps(docs, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(docs, ensure_ascii=False, indent=1)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def _ago(now: datetime, at: datetime | None) -> str:
    return "-" if at is None else _duration(max(0.0, (now - at).total_seconds()))


COLUMNS = (
    "GATEWAY", "PROVINCE", "STATE", "FOR", "SEEN", "PENDING", "OLDEST", "SYNCED", "CERT", "ALERTS", "ISSUES", "COMMAND",
)  # fmt: skip


def _command(r: FleetRecord) -> str:
    c = r.last_command
    return "-" if not c else f"{c.get('kind')}#{c.get('seq')}:{c.get('state')}"


def render_table(records: Sequence[FleetRecord], now: datetime) -> str:
    """A plain-text table (one line per gateway, most urgent first) and the summary line."""
    rows = [
        (
            r.gateway_id,
            r.province or "-",
            r.state,
            _ago(now, r.since),
            _ago(now, r.last_seen),
            "-" if r.backlog_pending is None else str(r.backlog_pending),
            _duration(r.oldest_pending_age_s),
            _ago(now, r.last_sync_at),
            "-" if r.cert_days_left is None else f"{r.cert_days_left:.0f}d",
            "-" if r.open_alerts is None else str(r.open_alerts),
            ",".join(r.reasons) or "-",
            _command(r),
        )
        for r in records
    ]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(summarise(records).line())
    return "\n".join(lines)
