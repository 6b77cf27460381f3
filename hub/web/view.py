"""The fleet page's view, pure: from fleet records, alerts, samples and commands at ``now``, the
page's parts as HTML fragments (escaped here, put in place by the page's script) and the API's
JSON. Every time is shown in the page's timezone; every text in the page's language."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from hub.commands import CommandRecord
from hub.fleet import FleetRecord, FleetSummary, summarise
from hub.fleet_alerts import FleetAlert
from hub.fleet_history import series
from hub.store import FleetSample
from hub.web.plot import fleet_plot
from webui.i18n import Catalog

__all__ = ["PageData", "api_json", "fmt_duration", "fmt_time", "fragments", "summary_text"]

PLOT_WINDOW = timedelta(hours=24)
RECENT_COMMANDS = 20


@dataclass(frozen=True, slots=True)
class PageData:
    """What one view of the page shows (``province``: the filter, None for all)."""

    now: datetime
    province: str | None
    provinces: tuple[str, ...]  # every province of the fleet (for the filter)
    records: Sequence[FleetRecord]  # of the filter, by urgency
    alerts: Sequence[FleetAlert]  # of the filter
    samples: Sequence[FleetSample]  # of the plot window
    commands: Sequence[CommandRecord]  # recent, newest first
    last_commands: Mapping[str, CommandRecord]  # gateway -> its latest command


def fmt_time(at: datetime | None, tz: tzinfo, lang: str) -> str:
    """``at`` in the page's timezone: ``31/12 23:59`` (Vietnamese) or ``31 Dec 23:59``."""
    if at is None:
        return "–"
    local = at.astimezone(tz)
    return local.strftime("%d/%m %H:%M") if lang == "vi" else local.strftime("%d %b %H:%M")


def fmt_duration(seconds: float | None, cat: Catalog) -> str:
    if seconds is None:
        return "–"
    s = int(abs(seconds))
    if s < 120:
        return cat.gettext("{n} s").format(n=s)
    if s < 7200:
        return cat.gettext("{n} min").format(n=s // 60)
    if s < 2 * 86400:
        return cat.gettext("{h} h {m} min").format(h=s // 3600, m=f"{(s % 3600) // 60:02d}")
    return cat.gettext("{d} d {h} h").format(d=s // 86400, h=f"{(s % 86400) // 3600:02d}")


def summary_text(s: FleetSummary, cat: Catalog) -> str:
    """The summary line (in English, exactly :meth:`FleetSummary.line`)."""
    return cat.gettext(
        "{gateways} gateways: {online} online, {stale} stale, {offline} offline; "
        "{risk} with data at risk, {cert} with a certificate expiring; "
        "{pending} readings pending, {alerts} open alerts"
    ).format(
        gateways=s.gateways,
        online=s.online,
        stale=s.stale,
        offline=s.offline,
        risk=s.data_at_risk,
        cert=s.cert_expiring,
        pending=s.pending,
        alerts=s.open_alerts,
    )


STATE_TEXT = {"online": "online", "stale": "stale", "offline": "offline"}
REASON_TEXT = {
    "offline": "offline",
    "stale": "stale",
    "data_at_risk": "data at risk",
    "store_full": "store full",
    "cert_expiring": "certificate expiring",
    "cert_expired": "certificate expired",
}
COMMAND_STATE_TEXT = {
    "sent": "sent, no answer yet",
    "applied": "applied",
    "rolled_back": "rolled back",
    "refused": "refused",
    "failed": "failed",
    "expired": "expired",
}
COMMAND_KIND_TEXT = {
    "set-config": "set configuration",
    "push-model": "push a model",
    "diagnostics": "diagnostics",
    "rotate-keys": "rotate keys",
}


def _e(text: object) -> str:
    return html.escape(str(text))


def _command_state(c: CommandRecord, now: datetime, cat: Catalog) -> tuple[str, str]:
    """(css class, text) of a command's state; a command sent and past its expiry without an
    answer shows as expired."""
    state = c.state_at(now)
    return f"cmd-{state}", cat.gettext(COMMAND_STATE_TEXT.get(state, state))


def alert_text(a: FleetAlert, cat: Catalog) -> str:
    d = fmt_duration(a.value_s, cat)
    if a.kind == "gateway_silent":
        return cat.gettext("Gateway {gateway}: no heartbeat for {duration}").format(gateway=a.gateway_id, duration=d)
    if a.kind == "backlog_old":
        return cat.gettext("Gateway {gateway}: oldest pending reading is {duration} old").format(
            gateway=a.gateway_id, duration=d
        )
    if a.value_s <= 0:
        return cat.gettext("Gateway {gateway}: certificate expired {duration} ago").format(
            gateway=a.gateway_id, duration=d
        )
    return cat.gettext("Gateway {gateway}: certificate expires in {duration}").format(gateway=a.gateway_id, duration=d)


def _alerts_html(page: PageData, cat: Catalog, tz: tzinfo) -> str:
    if not page.alerts:
        return f'<p class="no-alerts">{_e(cat.gettext("No hub alert"))}</p>'
    items = []
    for a in page.alerts:
        since = cat.gettext("since {time}").format(time=fmt_time(a.since, tz, cat.lang))
        province = f' <span class="province">{_e(a.province)}</span>' if a.province else ""
        items.append(
            f'<li class="alert alert-{_e(a.severity)}" data-kind="{_e(a.kind)}" data-gateway="{_e(a.gateway_id)}">'
            f'<span class="alert-text">{_e(alert_text(a, cat))}</span>{province} '
            f'<span class="since">{_e(since)}</span></li>'
        )
    title = cat.gettext("Hub alerts ({n})").format(n=len(page.alerts))
    return f'<h2>{_e(title)}</h2><ul class="alert-list">{"".join(items)}</ul>'


def _table_html(page: PageData, cat: Catalog, tz: tzinfo) -> str:
    heads = (
        "Gateway",
        "Province",
        "State",
        "For",
        "Last heard",
        "Pending",
        "Oldest pending",
        "Last sync",
        "Certificate",
        "Station alerts",
        "Issues",
        "Last command",
    )
    head = "".join(f'<th scope="col">{_e(cat.gettext(h))}</th>' for h in heads)
    if not page.records:
        none = _e(cat.gettext("No gateway has been heard from"))
        body = f'<tr><td colspan="{len(heads)}" class="empty">{none}</td></tr>'
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    rows = []
    for r in page.records:
        cert = "–"
        if r.cert_days_left is not None:
            cert = cat.gettext("{n} days").format(n=f"{r.cert_days_left:.0f}")
        issues = ", ".join(cat.gettext(REASON_TEXT.get(x, x)) for x in r.reasons) or "–"
        last = page.last_commands.get(r.gateway_id)
        if last is None:
            command = "–"
        else:
            cls, text = _command_state(last, page.now, cat)
            kind = cat.gettext(COMMAND_KIND_TEXT.get(last.kind, last.kind))
            command = f'<span class="{cls}">{_e(kind)}: {_e(text)}</span>'
        cells = (
            f'<th scope="row" class="gw">{_e(r.gateway_id)}</th>',
            f"<td>{_e(r.province or '–')}</td>",
            f'<td><span class="state state-{_e(r.state)}">{_e(cat.gettext(STATE_TEXT[r.state]))}</span></td>',
            f'<td title="{_e(fmt_time(r.since, tz, cat.lang))}">'
            f"{_e(fmt_duration(None if r.since is None else (page.now - r.since).total_seconds(), cat))}</td>",
            f"<td>{_e(fmt_time(r.last_seen, tz, cat.lang))}</td>",
            f'<td class="num">{_e("–" if r.backlog_pending is None else r.backlog_pending)}</td>',
            f'<td class="num">{_e(fmt_duration(r.oldest_pending_age_s, cat))}</td>',
            f"<td>{_e(fmt_time(r.last_sync_at, tz, cat.lang))}</td>",
            f'<td class="num">{_e(cert)}</td>',
            f'<td class="num">{_e("–" if r.open_alerts is None else r.open_alerts)}</td>',
            f'<td class="wrap">{_e(issues)}</td>',
            f'<td class="wrap">{command}</td>',
        )
        rows.append(
            f'<tr class="urgency-{r.urgency}" data-gateway="{_e(r.gateway_id)}" data-province="{_e(r.province or "")}">'
            f"{''.join(cells)}</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _commands_html(page: PageData, cat: Catalog, tz: tzinfo) -> str:
    title = f"<h2>{_e(cat.gettext('Recent commands'))}</h2>"
    if not page.commands:
        return title + f'<p class="empty">{_e(cat.gettext("No command sent yet"))}</p>'
    heads = ("Issued", "Gateway", "Command", "Seq", "State", "Detail", "Answered")
    head = "".join(f'<th scope="col">{_e(cat.gettext(h))}</th>' for h in heads)
    rows = []
    for c in page.commands[:RECENT_COMMANDS]:
        cls, text = _command_state(c, page.now, cat)
        rows.append(
            f'<tr data-cmd="{_e(c.cmd_id)}"><td>{_e(fmt_time(c.issued_at, tz, cat.lang))}</td>'
            f"<td>{_e(c.gateway_id)}</td><td>{_e(cat.gettext(COMMAND_KIND_TEXT.get(c.kind, c.kind)))}</td>"
            f'<td class="num">{c.seq}</td><td><span class="{cls}">{_e(text)}</span></td>'
            f"<td>{_e(c.detail or '–')}</td><td>{_e(fmt_time(c.result_at, tz, cat.lang))}</td></tr>"
        )
    return title + f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _plot_html(page: PageData, cat: Catalog, tz: tzinfo) -> str:
    points = series(page.samples, page.province)
    return fleet_plot(
        points,
        start=page.now - PLOT_WINDOW,
        end=page.now,
        tz=tz,
        labels={
            "title": cat.gettext("Gateways online and readings pending, last 24 hours"),
            "online": cat.gettext("Gateways online"),
            "gateways": cat.gettext("Gateways"),
            "pending": cat.gettext("Readings pending"),
            "empty": cat.gettext("No history yet"),
        },
    )


def fragments(page: PageData, cat: Catalog, tz: tzinfo) -> dict[str, str]:
    """The page's live parts as HTML, by element id (every value escaped)."""
    return {
        "summary": _e(summary_text(summarise(page.records), cat)),
        "updated": _e(cat.gettext("Updated {time}").format(time=fmt_time(page.now, tz, cat.lang))),
        "alerts": _alerts_html(page, cat, tz),
        "fleet": _table_html(page, cat, tz),
        "plot": _plot_html(page, cat, tz),
        "commands": _commands_html(page, cat, tz),
    }


def api_json(page: PageData, tz_name: str) -> dict[str, Any]:
    """The page's data for scripts (``GET /api/fleet``): times ISO 8601 UTC."""
    summary = summarise(page.records)
    return {
        "now": page.now.isoformat(),
        "timezone": tz_name,
        "province": page.province,
        "provinces": list(page.provinces),
        "summary": {
            "line": summary.line(),
            "gateways": summary.gateways,
            "online": summary.online,
            "stale": summary.stale,
            "offline": summary.offline,
            "data_at_risk": summary.data_at_risk,
            "cert_expiring": summary.cert_expiring,
            "pending": summary.pending,
            "open_alerts": summary.open_alerts,
        },
        "gateways": [r.to_json() for r in page.records],  # as edge-hub fleet --json, with last_command
        "alerts": [a.to_json() for a in page.alerts],
        "history": [
            {"at": p.at.isoformat(), "gateways": p.gateways, "online": p.online, "pending": p.pending}
            for p in series(page.samples, page.province)
        ],
        "commands": [c.as_dict(page.now) for c in page.commands],
    }
