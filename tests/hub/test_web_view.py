"""The fleet page's view model (hub/web/view.py, hub/web/plot.py), pure: times in the page's
timezone, durations and texts in both languages, the English summary line identical to
``edge-hub fleet``'s, the table in urgency order with the same flags, everything escaped, the
plot's SVG, and every message of the page translated into Vietnamese."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from hub.commands import CommandRecord
from hub.fleet import fleet_records, summarise
from hub.fleet_alerts import fleet_alerts
from hub.fleet_history import Point
from hub.store import FleetSample, GatewayRecord
from hub.web.plot import fleet_plot
from hub.web.server import LOCALE_DIR, catalogs
from hub.web.view import PageData, api_json, fmt_duration, fmt_time, fragments, summary_text
from tests.hub.helpers import T0
from tests.hub.test_fleet import beat, row

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
CATS = catalogs()
VI, EN = CATS["vi"], CATS["en"]
S = timedelta(seconds=1)
WEB = Path(__file__).parents[2] / "hub" / "web"


def page(
    rows: list[GatewayRecord], *, province: str | None = None, commands: tuple[CommandRecord, ...] = ()
) -> PageData:
    last = {c.gateway_id: c for c in reversed(commands)}
    records = fleet_records(rows, T0, province=province, commands=last)
    return PageData(
        T0,
        province,
        tuple(sorted({r.province for r in rows if r.province})),
        records,
        fleet_alerts(records, T0),
        [FleetSample(T0 - 60 * S, "p01", 2, 1, 0, 1, 5, 0), FleetSample(T0, "p01", 2, 2, 0, 0, 9, 0)],
        commands,
        last,
    )


def test_times_are_shown_in_the_page_timezone() -> None:
    assert fmt_time(T0, HCM, "vi") == "23/11 15:00"  # 08:00 UTC
    assert fmt_time(T0, HCM, "en") == "23 Nov 15:00"
    assert fmt_time(T0, ZoneInfo("Europe/Paris"), "vi") == "23/11 09:00"
    assert fmt_time(None, HCM, "vi") == "–"


def test_durations_in_both_languages() -> None:
    assert [fmt_duration(s, VI) for s in (5, 300, 7260, 3 * 86400 + 7200)] == [
        "5 giây",
        "5 phút",
        "2 giờ 01 phút",
        "3 ngày 02 giờ",
    ]
    assert fmt_duration(-7260, EN) == "2 h 01 min" and fmt_duration(None, EN) == "–"


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.floats(0, 20000)), max_size=6))
def test_the_english_summary_is_the_fleet_commands_line(specs: list[tuple[bool, int, float]]) -> None:
    rows = [row(f"gw-{i}", beat(online=on, pending=p, oldest_s=age), online=on) for i, (on, p, age) in enumerate(specs)]
    s = summarise(fleet_records(rows, T0))
    assert summary_text(s, EN) == s.line()
    assert summary_text(s, VI).startswith(f"{s.gateways} gateway: {s.online} trực tuyến")


def test_the_table_follows_the_fleet_order_and_flags() -> None:
    rows = [
        row("gw-ok", beat()),
        row("gw-cert", beat(cert_left=timedelta(days=3))),
        row("gw-risk", beat(pending=4, oldest_s=8000.0)),
        row("gw-off", beat(online=False), online=False, last_seen=T0 - 900 * S),
    ]
    html = fragments(page(rows), VI, HCM)["fleet"]
    assert re.findall(r'<tr class="urgency-(\d)" data-gateway="([^"]+)"', html) == [
        ("0", "gw-off"),
        ("1", "gw-risk"),
        ("2", "gw-cert"),
        ("3", "gw-ok"),
    ]
    assert "chứng chỉ sắp hết hạn" in html and "dữ liệu có nguy cơ mất" in html and "ngoại tuyến" in html
    en = fragments(page(rows), EN, HCM)
    assert "certificate expiring" in en["fleet"] and "3 days" in en["fleet"]
    assert en["summary"] == summarise(fleet_records(rows, T0)).line()
    assert en["updated"] == "Updated 23 Nov 15:00"


def test_hostile_text_is_escaped() -> None:
    doc = beat(online=False)
    evil = row('<img src=x onerror="alert(1)">', doc, online=False, province="<b>p</b>", last_seen=T0 - 9000 * S)
    cmd = CommandRecord(
        "c1", evil.gateway_id, "<b>p</b>", "<script>", 1, T0, T0 + 60 * S, "failed", "<i>bad</i>", T0 + S
    )
    parts = fragments(page([evil], commands=(cmd,)), EN, HCM)
    joined = "".join(parts.values())
    assert "<img" not in joined and "<script>" not in joined and "<i>" not in joined and "<b>p" not in joined
    assert "&lt;img src=x" in parts["fleet"] and "&lt;img src=x" in parts["alerts"]
    assert "&lt;i&gt;bad&lt;/i&gt;" in parts["commands"]


def test_commands_and_their_states() -> None:
    sent = CommandRecord("c2", "gw-ok", "p01", "push-model", 2, T0 - 60 * S, T0 + 60 * S, "sent", None, None)
    late = CommandRecord("c3", "gw-2", "p01", "rotate-keys", 1, T0 - 600 * S, T0 - S, "sent", None, None)
    done = CommandRecord("c1", "gw-ok", "p01", "set-config", 1, T0 - 900 * S, T0, "rolled_back", "bad value", T0)
    p = page([row("gw-ok", beat()), row("gw-2", beat())], commands=(sent, late, done))
    vi = fragments(p, VI, HCM)
    assert "gửi mô hình: đã gửi, chưa có trả lời" in vi["fleet"]  # gw-ok's last command
    assert "đổi khóa: hết hạn" in vi["fleet"]  # sent, never answered, past its expiry
    assert re.findall(r'data-cmd="([^"]+)"', vi["commands"]) == ["c2", "c3", "c1"]
    assert "bad value" in vi["commands"] and "đã khôi phục bản trước" in vi["commands"]
    data = api_json(p, "Asia/Ho_Chi_Minh")
    assert data["gateways"][0]["last_command"]["cmd_id"] in {"c2", "c3"}
    assert fragments(page([row("gw-ok", beat())]), EN, HCM)["commands"].endswith("No command sent yet</p>")


def test_the_plot() -> None:
    points = [Point(T0 - 3600 * S, 4, 3, 10), Point(T0 - 1800 * S, 4, 4, 0), Point(T0, 4, 2, 120)]
    labels = {"title": "t", "online": "Online", "gateways": "G", "pending": "Pending", "empty": "none"}
    svg = fleet_plot(points, start=T0 - 7200 * S, end=T0, tz=HCM, labels=labels)
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "style=" not in svg
    online = re.search(r'<polyline points="([^"]+)" class="plot-online"', svg)
    assert online is not None
    xs = [float(p.split(",")[0]) for p in online.group(1).split()]
    assert xs == sorted(xs) and len(xs) == 3
    assert "Online: 2 / 4" in svg and "Pending: 120" in svg
    assert ">23/11 13:00<" in svg and ">15:00<" in svg  # Ho Chi Minh time, the date once
    assert "none" in fleet_plot([], start=T0 - 7200 * S, end=T0, tz=HCM, labels=labels)
    one = fleet_plot(points[-1:], start=T0 - 7200 * S, end=T0, tz=HCM, labels=labels)
    assert one.count("<circle") == 3


def test_every_message_of_the_page_is_translated() -> None:
    """Every msgid of the templates and of the Python side has a Vietnamese translation."""
    used: set[str] = set()
    webui = WEB.parents[1] / "webui"  # the login page and its texts, shared with the station's page
    for path in [*(WEB / "templates").glob("*.html"), *(webui / "templates").glob("*.html")]:
        used |= set(re.findall(r'\{\{ _\("((?:[^"\\]|\\.)*)"\) \}\}', path.read_text()))
    for path in (WEB / "view.py", WEB / "server.py", webui / "session_routes.py"):
        text = path.read_text()
        for literals in re.findall(r'gettext\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)', text):
            used.add("".join(re.findall(r'"((?:[^"\\]|\\.)*)"', literals)))
    assert any(m.startswith("{gateways} gateways:") for m in used)  # the multi-line one was found
    from hub.web import view

    used |= set(view.STATE_TEXT.values()) | set(view.REASON_TEXT.values())
    used |= set(view.COMMAND_STATE_TEXT.values()) | set(view.COMMAND_KIND_TEXT.values())
    missing = sorted(m for m in used if m not in VI.messages)
    assert not missing, missing
    assert (LOCALE_DIR / "vi.po").exists()


def test_assets_are_local() -> None:
    for path in [*(WEB / "templates").glob("*.html"), *(WEB / "static").glob("*")]:
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "@import" not in text and "@font-face" not in text and "fonts.googleapis" not in text, path
