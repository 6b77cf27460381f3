"""The fleet page's plot, pure: an inline SVG (no JS library, no inline style: the page's CSS
colours it through classes) of the gateways online (and the fleet size, dashed) and of the
readings pending on them, over a time window, times in the page's timezone."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, tzinfo

from hub.fleet_history import Point

W, H = 760, 300
LEFT, RIGHT = 56, 16
PANEL_H = 100
TOP1, TOP2 = 28, 168  # top of each panel


def _nice_max(value: int) -> int:
    """The smallest 1, 2, 5 × 10^k at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= value:
                return step * m
        step *= 10


def _x(at: datetime, start: datetime, end: datetime) -> float:
    span = (end - start).total_seconds() or 1.0
    return LEFT + (W - LEFT - RIGHT) * min(1.0, max(0.0, (at - start).total_seconds() / span))


def _y(value: float, top: int, vmax: int) -> float:
    return top + PANEL_H - PANEL_H * (value / vmax)


def _path(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _text(x: float, y: float, text: str, cls: str, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">{html.escape(text)}</text>'


def fleet_plot(
    points: Sequence[Point],
    *,
    start: datetime,
    end: datetime,
    tz: tzinfo,
    labels: dict[str, str],
) -> str:
    """The SVG of ``points`` between ``start`` and ``end``. ``labels``: the translated
    ``online``, ``gateways``, ``pending``, ``empty`` and ``title`` texts."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="plot" role="img" '
        f'aria-label="{html.escape(labels["title"])}">',
        f"<title>{html.escape(labels['title'])}</title>",
    ]
    shown = [p for p in points if start <= p.at <= end]
    gmax = _nice_max(max((p.gateways for p in shown), default=1))
    pmax = _nice_max(max((p.pending for p in shown), default=1))
    for top, vmax, name in ((TOP1, gmax, labels["online"]), (TOP2, pmax, labels["pending"])):
        parts.append(f'<rect x="{LEFT}" y="{top}" width="{W - LEFT - RIGHT}" height="{PANEL_H}" class="plot-frame"/>')
        parts.append(_text(LEFT, top - 8, name, "plot-title"))
        parts.append(_text(LEFT - 6, top + 10, str(vmax), "plot-tick", "end"))
        parts.append(_text(LEFT - 6, top + PANEL_H, "0", "plot-tick", "end"))
    span = end - start
    day = None
    for i in range(5):  # time ticks under the lower panel, local time; the date when it changes
        at = start + span * (i / 4)
        x = _x(at, start, end)
        local = at.astimezone(tz)
        label = local.strftime("%H:%M") if local.date() == day else local.strftime("%d/%m %H:%M")
        day = local.date()
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(_text(x, TOP2 + PANEL_H + 18, label, "plot-tick", anchor))
        for top in (TOP1, TOP2):
            parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + PANEL_H}" class="plot-grid"/>')
    if not shown:
        parts.append(_text(W / 2, TOP1 + PANEL_H / 2, labels["empty"], "plot-empty", "middle"))
    else:
        gateways = [(_x(p.at, start, end), _y(p.gateways, TOP1, gmax)) for p in shown]
        online = [(_x(p.at, start, end), _y(p.online, TOP1, gmax)) for p in shown]
        pending = [(_x(p.at, start, end), _y(p.pending, TOP2, pmax)) for p in shown]
        if len(shown) == 1:  # one sample: a dot each, a line needs two
            for (x, y), cls in (
                (gateways[0], "plot-gateways"),
                (online[0], "plot-online"),
                (pending[0], "plot-pending"),
            ):
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="{cls}-dot"/>')
        parts.append(f'<polyline points="{_path(gateways)}" class="plot-gateways"/>')
        parts.append(f'<polyline points="{_path(online)}" class="plot-online" data-series="online"/>')
        parts.append(f'<polyline points="{_path(pending)}" class="plot-pending" data-series="pending"/>')
        last = shown[-1]
        parts.append(
            _text(W - RIGHT, TOP1 - 8, f"{labels['online']}: {last.online} / {last.gateways}", "plot-last", "end")
        )
        parts.append(_text(W - RIGHT, TOP2 - 8, f"{labels['pending']}: {last.pending}", "plot-last", "end"))
    parts.append("</svg>")
    return "".join(parts)
