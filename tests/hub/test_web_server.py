"""The fleet page over real HTTP (aiohttp on a free port, aiohttp's client) on a real SQLite hub
store, with a pinned, movable clock: login (wrong password, rate limit, expiry), CSRF and
same-origin checks on every POST, the language switch, the province filter, the JSON API, the
alerts, the sampler writing fleet_samples, and ``edge-hub web-user``."""

from __future__ import annotations

import asyncio
import io
import re
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.cli import main
from hub.fleet import Thresholds
from hub.store import HubStore, open_store
from hub.web.accounts import read_accounts, set_password
from hub.web.server import FleetWeb, WebSettings
from tests.fixtures.web import Clock, cookie_jar, csrf_of, free_port, origin, post_login
from tests.hub.helpers import T0
from tests.hub.test_fleet import beat
from webui import httpd as web

PASSWORD = "mật-khẩu-đủ-dài"
DAY = timedelta(days=1)
S = timedelta(seconds=1)


@dataclass
class Running:
    url: str
    clock: Clock
    store: HubStore
    web: FleetWeb

    def origin(self) -> dict[str, str]:
        return origin(self.url)


def seed(store: HubStore) -> None:
    """Three gateways of two provinces: one silent for an hour (offline by its last will), one
    with a backlog 7 h old, one fine; a command per gateway of p01."""
    store.record_status("gw-quiet", beat(sent_at=T0 - timedelta(hours=1)), province="p01", now=T0 - timedelta(hours=1))
    store.record_status("gw-quiet", {"v": 1, "type": "status", "online": False}, province="p01", now=T0 - 3500 * S)
    store.record_status("gw-late", beat(sent_at=T0, pending=40, oldest_s=7 * 3600.0), province="p02", now=T0)
    store.record_status("gw-fine", beat(sent_at=T0), province="p01", now=T0)
    store.allocate_command(
        cmd_id="c-1",
        gateway_id="gw-fine",
        province="p01",
        kind="set-config",
        args={"key": "scheduler.status_interval_s"},
        issued_at=T0 - 600 * S,
        expires_at=T0 + 3000 * S,
    )
    store.record_command_result(
        cmd_id="c-1", gateway_id="gw-fine", state="applied", detail=None, data={}, result_at=T0 - 590 * S
    )
    store.allocate_command(
        cmd_id="c-2",
        gateway_id="gw-late",
        province="p02",
        kind="diagnostics",
        args={},
        issued_at=T0 - 300 * S,
        expires_at=T0 - 60 * S,
    )


def run(fn: Callable[..., Awaitable[None]]) -> Callable[[Path], None]:
    import functools

    @functools.wraps(fn)
    def wrapper(tmp_path: Path) -> None:
        async def go() -> None:
            clock = Clock(T0)
            store = open_store(tmp_path / "hub")
            seed(store)
            accounts = tmp_path / "operators"
            set_password(accounts, "lan", PASSWORD)
            settings = WebSettings(accounts=accounts, session_ttl_s=600, sample_every_s=60)
            fleet = FleetWeb(store, settings, clock)
            runner = web.AppRunner(fleet.app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                await fn(Running(f"http://127.0.0.1:{port}/", clock, store, fleet))
            finally:
                await runner.cleanup()
                store.close()

        asyncio.run(go())

    wrapper.__signature__ = __import__("inspect").Signature(  # type: ignore[attr-defined]
        [__import__("inspect").Parameter("tmp_path", __import__("inspect").Parameter.POSITIONAL_OR_KEYWORD)]
    )
    return wrapper


async def login(
    http: aiohttp.ClientSession, r: Running, password: str = PASSWORD, name: str = "lan"
) -> aiohttp.ClientResponse:
    return await post_login(http, r.url, {"name": name, "password": password})


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as res:
        assert res.status == 200, await res.text()
        return await res.json()


@run
async def test_login_refusals_rate_limit_and_expiry(r: Running) -> None:
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        async with http.get(r.url + "api/fleet") as res:
            assert res.status == 401
        page = await (await http.get(r.url)).text()
        assert 'action="/login"' in page and "gw-" not in page  # nothing of the fleet before login
        res = await login(http, r, password="wrong password!")
        assert res.status == 401 and "Sai tên hoặc mật khẩu" in await res.text()
        assert (await login(http, r, name="nobody")).status == 401  # unknown name: the same answer
        for _ in range(3):
            assert (await login(http, r, password="still wrong!")).status == 401
        limited = await login(http, r)  # the right password after five failures: wait
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
        r.clock.now += timedelta(minutes=6)
        res = await login(http, r)
        assert res.status == 303
        cookie = res.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=600" in cookie
        assert (await get_json(http, r.url + "api/fleet"))["summary"]["gateways"] == 3
        r.clock.now += timedelta(seconds=601)  # the session lasts 600 s
        async with http.get(r.url + "api/fleet") as res:
            assert res.status == 401
    assert r.web.logins == 1 and r.web.failed_logins == 5


@run
async def test_posts_need_the_same_origin_and_the_csrf_token(r: Running) -> None:
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        # a login form posted from another site, or without the form's token, is refused
        async with http.post(r.url + "login", data={"name": "lan", "password": PASSWORD}, headers=r.origin()) as res:
            assert res.status == 403
        evil = {"Origin": "http://evil.example"}
        async with http.post(r.url + "login", data={"name": "lan"}, headers=evil, allow_redirects=False) as res:
            assert res.status == 403
        assert (await login(http, r)).status == 303
        csrf = await csrf_of(http, r.url)
        async with http.post(r.url + "logout", data={"csrf": csrf}, headers=evil) as res:
            assert res.status == 403
        cross = {**r.origin(), "Sec-Fetch-Site": "cross-site"}
        async with http.post(r.url + "logout", data={"csrf": csrf}, headers=cross) as res:
            assert res.status == 403
        async with http.post(r.url + "logout", data={"csrf": "forged"}, headers=r.origin()) as res:
            assert res.status == 403
        async with http.post(r.url + "lang", data={"lang": "en"}, headers=r.origin()) as res:
            assert res.status == 403  # no token
        assert (await get_json(http, r.url + "api/fleet"))["summary"]["gateways"] == 3  # still logged in
        async with http.post(r.url + "logout", data={"csrf": csrf}, headers=r.origin(), allow_redirects=False) as res:
            assert res.status == 303
        async with http.get(r.url + "api/fleet") as res:
            assert res.status == 401
        async with http.get(r.url + "static/fleet.js") as res:  # assets need no session, and are local
            assert res.status == 200 and res.headers["Content-Type"].startswith("text/javascript")
            assert "default-src 'none'" in res.headers["Content-Security-Policy"]
        async with http.get(r.url + "static/../server.py") as res:
            assert res.status == 404


@run
async def test_a_store_that_fails_answers_503_not_a_crash(r: Running) -> None:
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        assert (await login(http, r)).status == 303
        r.store.close()  # every read now raises StoreError
        for path in ("", "api/fleet", "api/fragments"):
            async with http.get(r.url + path) as res:
                assert res.status == 503, path
                assert (await res.json())["error"] == "the hub store is not answering; try again"
                assert "default-src 'none'" in res.headers["Content-Security-Policy"]
        async with http.get(r.url + "static/fleet.css") as res:  # what needs no store still works
            assert res.status == 200


@run
async def test_page_language_province_filter_and_api(r: Running) -> None:
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        assert (await login(http, r)).status == 303
        page = await (await http.get(r.url)).text()
        assert 'lang="vi"' in page and "Mạng lưới trạm" in page
        # the table in urgency order: silent first, then data at risk, then the rest
        order = re.findall(r'<tr class="urgency-\d" data-gateway="([^"]+)"', page)
        assert order == ["gw-quiet", "gw-late", "gw-fine"]
        assert "không có tín hiệu trong 60 phút" in page  # the silent alert, in Vietnamese
        assert "từ 23/11 14:05" in page  # since when, in Asia/Ho_Chi_Minh (T0 is 08:00 UTC)
        assert "đã áp dụng" in page  # gw-fine's last command
        csrf = await csrf_of(http, r.url)
        async with http.post(
            r.url + "lang",
            data={"lang": "en", "csrf": csrf, "province": "p02"},
            headers=r.origin(),
            allow_redirects=False,
        ) as res:
            assert res.status == 303 and res.headers["Location"] == "/?province=p02"
        page = await (await http.get(r.url + "?province=p02")).text()
        assert 'lang="en"' in page and "Fleet of stations" in page
        assert re.findall(r'data-gateway="([^"]+)" data-province', page) == ["gw-late"]
        assert '<option value="p02" selected>' in page
        assert "1 gateways: 1 online, 0 stale, 0 offline; 1 with data at risk" in page
        frag = await get_json(http, r.url + "api/fragments?province=p01")
        assert frag["province"] == "p01" and "gw-late" not in frag["html"]["fleet"]
        assert "gw-quiet" in frag["html"]["alerts"] and "no heartbeat for 60 min" in frag["html"]["alerts"]
        data = await get_json(http, r.url + "api/fleet")
        assert [g["gateway_id"] for g in data["gateways"]] == ["gw-quiet", "gw-late", "gw-fine"]
        assert data["provinces"] == ["p01", "p02"] and data["timezone"] == "Asia/Ho_Chi_Minh"
        assert data["summary"]["line"].startswith("3 gateways: 2 online, 0 stale, 1 offline;")
        kinds = {(a["kind"], a["gateway_id"]) for a in data["alerts"]}
        assert kinds == {("gateway_silent", "gw-quiet"), ("backlog_old", "gw-late")}
        silent = next(a for a in data["alerts"] if a["kind"] == "gateway_silent")
        assert silent["since"] == (T0 - timedelta(seconds=3600) + timedelta(seconds=300)).isoformat()
        assert silent["rule"] == "StationEdgeGatewaySilent"
        last = {g["gateway_id"]: (g["last_command"] or {}).get("state") for g in data["gateways"]}
        assert last == {"gw-quiet": None, "gw-late": "expired", "gw-fine": "applied"}  # sent, past expiry
        assert [c["cmd_id"] for c in data["commands"]] == ["c-2", "c-1"]  # newest first
        assert "expired" in (await get_json(http, r.url + "api/fragments"))["html"]["commands"]  # sent, past expiry
        alerts = await get_json(http, r.url + "api/alerts?province=p02")
        assert [a["kind"] for a in alerts["alerts"]] == ["backlog_old"]
        async with http.get(r.url + "api/fleet?province=p01%27%3B") as res:
            assert res.status == 400  # not a province segment
        empty = await get_json(http, r.url + "api/fleet?province=p99")
        assert empty["gateways"] == [] and empty["provinces"] == ["p01", "p02"]


@run
async def test_the_sampler_fills_the_plot(r: Running) -> None:
    # the app's sampler ran once at start (bucket of T0); move on a bucket and sample again
    for _ in range(50):
        if r.web.sampler.written:
            break
        await asyncio.sleep(0.02)
    assert r.web.sampler.written == 2  # p01 and p02
    r.clock.now += timedelta(seconds=60)
    await asyncio.get_running_loop().run_in_executor(None, r.web.sampler.sample)
    samples = r.store.fleet_samples(T0 - DAY)
    assert [(s.bucket_at, s.province, s.online, s.pending) for s in samples] == [
        (T0, "p01", 1, 0),
        (T0, "p02", 1, 40),
        (T0 + timedelta(seconds=60), "p01", 1, 0),
        (T0 + timedelta(seconds=60), "p02", 1, 40),
    ]
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        assert (await login(http, r)).status == 303
        data = await get_json(http, r.url + "api/fleet")
        assert [(h["online"], h["pending"], h["gateways"]) for h in data["history"]] == [(2, 40, 3), (2, 40, 3)]
        frag = await get_json(http, r.url + "api/fragments?province=p02")
        assert frag["html"]["plot"].count("<polyline") == 3 and "Số đo chờ gửi: 40" in frag["html"]["plot"]


def test_web_user_sets_passwords_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = tmp_path / "etc" / "operators"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["web-user", "lan", "--password-stdin", "--accounts", str(accounts)]) == 0
    assert "added" in capsys.readouterr().out
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    assert PASSWORD not in accounts.read_text()
    first = read_accounts(accounts)["lan"]
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert main(["web-user", "lan", "--password-stdin", "--accounts", str(accounts)]) == 0
    assert "password changed" in capsys.readouterr().out
    assert read_accounts(accounts)["lan"] != first
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["web-user", "minh", "--password-stdin", "--accounts", str(accounts)]) == 2
    assert "at least 10" in capsys.readouterr().err
    assert main(["web-user", "bad name", "--password-stdin", "--accounts", str(accounts)]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["web-user", "minh", "--accounts", str(accounts)]) == 2  # no terminal, no --password-stdin
    assert set(read_accounts(accounts)) == {"lan"}
    accounts.write_text("lan:plaintext\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["web-user", "minh", "--password-stdin", "--accounts", str(accounts)]) == 78
    assert "line 1" in capsys.readouterr().err


def test_web_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "hub")
    for extra, message in (
        (["--listen", "nope"], "--listen"),
        (["--timezone", "Mars/Olympus"], "--timezone"),
        (["--stale-after", "0"], "--stale-after"),
        (["--refresh", "0"], "--refresh"),
        (["--retention-days", "0"], "--retention-days"),
    ):
        assert main(["web", "--store", store, *extra]) == 2, extra
        assert message in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()  # refused before touching the store
    assert main(["web", "--store", store, "--accounts", str(tmp_path / "operators")]) == 78  # no store there


def test_unreadable_accounts_answer_503_not_a_crash(tmp_path: Path) -> None:
    async def go() -> None:
        store = open_store(tmp_path / "hub")
        (tmp_path / "operators").write_text("garbage\n")
        fleet = FleetWeb(store, WebSettings(accounts=tmp_path / "operators", thresholds=Thresholds()), Clock(T0))
        runner = web.AppRunner(fleet.app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        r = Running(f"http://127.0.0.1:{port}/", Clock(T0), store, fleet)
        try:
            async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
                res = await login(http, r)
                assert res.status == 503 and "nhật ký" in await res.text()
                page = await (await http.get(r.url)).text()
                assert 'action="/login"' in page
        finally:
            await runner.cleanup()
            store.close()

    asyncio.run(go())
