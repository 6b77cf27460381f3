"""The dashboard over real HTTP, served by a real agent (store, scorer, pipeline) on the test's
event loop with a pinned, movable clock: refusals (wrong PIN, rate limit, expired session,
cross-site POST, no session, no CSRF token), visits opened, observed and closed through the API,
kept sealed in the store and re-opened after a restart, and no patient identifier on the login
page, in a URL, in the log or in clear on disk."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig, parse_config
from edge_agent.dashboard.auth import hash_pin, write_pin_hash
from tests.fixtures.web import Clock, cookie_jar, csrf_of, free_port, origin, post_login

PIN = "135790"
CCCD = "079203004567"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def make_config(tmp_path: Path) -> AgentConfig:
    return parse_config(
        {
            "version": 1,
            "gateway": {"id": "gw-dash", "province": "test", "state_dir": str(tmp_path / "state")},
            "devices": [{"id": "ox", "format": "masimo-ascii", "transport": "serial", "port": str(tmp_path / "none")}],
            "dashboard": {"port": free_port(), "session_ttl_s": 600},
        },
        base_dir=tmp_path,
    )


class Running:
    def __init__(self, agent: Agent, url: str, clock: Clock, task: asyncio.Task[Any], stop: asyncio.Event) -> None:
        self.agent, self.url, self.clock, self.task, self.stop = agent, url, clock, task, stop

    def origin(self) -> dict[str, str]:
        return origin(self.url)


async def start(config: AgentConfig, clock: Clock) -> Running:
    stop = asyncio.Event()
    agent = Agent(config, clock=clock)
    task = asyncio.get_running_loop().create_task(agent.run(stop))
    assert config.dashboard is not None
    url = f"http://127.0.0.1:{config.dashboard.port}/"
    for _ in range(200):
        if agent.dashboard is not None and agent.dashboard.report()["dashboard"]["listening"]:  # type: ignore[index]
            break
        await asyncio.sleep(0.05)
    return Running(agent, url, clock, task, stop)


async def finish(r: Running) -> None:
    r.stop.set()
    await r.task


def run(coro_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test on a fresh loop (no pytest-asyncio here)."""
    import functools
    import inspect

    @functools.wraps(coro_fn)
    def wrapper(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        async def main() -> None:
            config = make_config(tmp_path)
            write_pin_hash(config.pin_path, hash_pin(PIN))
            r = await start(config, Clock(T0))
            try:
                params = inspect.signature(coro_fn).parameters
                kwargs = {
                    k: v for k, v in {"tmp_path": tmp_path, "caplog": caplog, "config": config}.items() if k in params
                }
                await coro_fn(r, **kwargs)
            finally:
                await finish(r)

        caplog.set_level(logging.INFO)
        asyncio.run(main())

    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("tmp_path", "caplog")]
    )
    return wrapper


async def login(http: aiohttp.ClientSession, r: Running, pin: str = PIN, who: str = "Lan") -> aiohttp.ClientResponse:
    return await post_login(http, r.url, {"who": who, "pin": pin})


@run
async def test_wrong_pin_is_refused_and_logins_are_rate_limited(r: Running) -> None:
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        res = await login(http, r, pin="000000")
        assert res.status == 401
        assert "Sai mã PIN" in await res.text()
        async with http.get(r.url + "api/state") as state:
            assert state.status == 401
        for _ in range(4):
            assert (await login(http, r, pin="999999")).status == 401
        limited = await login(http, r)  # the right PIN, but after five failures: wait
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
        r.clock.now += timedelta(minutes=6)
        assert (await login(http, r)).status == 303


@run
async def test_requests_without_a_session_or_from_another_site_are_refused(r: Running) -> None:
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        for path in ("api/state", "events"):
            async with http.get(r.url + path) as res:
                assert res.status == 401, path
        async with http.post(r.url + "api/visits", json={}, headers=r.origin()) as res:
            assert res.status == 401
        assert (await login(http, r)).status == 303
        csrf = await csrf_of(http, r.url)
        body = {"kind": "cccd", "identifier": CCCD, "age_band": "16y+", "devices": ["ox"]}
        evil = {"Origin": "http://evil.example", "X-CSRF-Token": csrf}
        async with http.post(r.url + "api/visits", json=body, headers=evil) as res:
            assert res.status == 403  # the session cookie alone is not enough
        cross = {**r.origin(), "X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
        async with http.post(r.url + "api/visits", json=body, headers=cross) as res:
            assert res.status == 403
        async with http.post(r.url + "api/visits", json=body, headers={"X-CSRF-Token": csrf}) as res:
            assert res.status == 403  # neither Origin nor Referer
        async with http.post(r.url + "api/visits", json=body, headers=r.origin()) as res:
            assert res.status == 403  # no CSRF token
        async with http.post(r.url + "api/visits", data=body, headers={**r.origin(), "X-CSRF-Token": csrf}) as res:
            assert res.status == 415  # a form post (what another site could send) is not JSON
        assert not r.agent.dashboard.book.open_visits()  # type: ignore[union-attr]
        async with http.post(r.url + "api/visits", json=body, headers={**r.origin(), "X-CSRF-Token": csrf}) as res:
            assert res.status == 200


@run
async def test_sessions_expire(r: Running) -> None:
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        assert (await login(http, r)).status == 303
        async with http.get(r.url + "api/state") as res:
            assert res.status == 200
        r.clock.now += timedelta(seconds=599)
        async with http.get(r.url + "api/state") as res:
            assert res.status == 200
        r.clock.now += timedelta(seconds=2)  # ttl 600 s
        async with http.get(r.url + "api/state") as res:
            assert res.status == 401
        async with http.get(r.url) as res:
            assert 'action="/login"' in await res.text()


@run
async def test_visit_lifecycle_through_the_api(
    r: Running, caplog: pytest.LogCaptureFixture, config: AgentConfig
) -> None:
    part = r.agent.dashboard
    assert part is not None
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        assert (await login(http, r)).status == 303
        csrf = await csrf_of(http, r.url)
        headers = {**r.origin(), "X-CSRF-Token": csrf}
        bad = {"kind": "cccd", "identifier": "1234", "devices": ["ox"]}
        async with http.post(r.url + "api/visits", json=bad, headers=headers) as res:
            assert res.status == 422
            assert (await res.json())["error"] == "Số CCCD gồm 12 chữ số"
        scanned = f"{CCCD}|123456789|Nguyễn Văn A|15062015|Nam|Hà Nội|01012021"  # a CCCD QR code
        body = {"kind": "cccd", "identifier": scanned, "pregnant": False, "devices": ["ox"]}
        async with http.post(r.url + "api/visits", json=body, headers=headers) as res:
            assert res.status == 200, await res.text()
            vid = (await res.json())["visit_id"]
        visit = part.book.get(vid)
        assert visit.patient_id == f"cccd:{CCCD}" and str(visit.age_band) == "5-12y"  # born 2015, seen 2026
        assert r.agent.pipeline._visits == {"ox": f"cccd:{CCCD}"}
        async with http.get(r.url + "api/state") as res:
            state = await res.text()
        assert CCCD not in state and "…4567" in state and "Nguyễn" not in state
        obs = {"resp_rate": "22", "consciousness": "v"}
        async with http.post(r.url + f"api/visits/{vid}/observations", json=obs, headers=headers) as res:
            assert res.status == 200, await res.text()
        assert dict(part.book.get(vid).observations) == {"resp_rate": 22, "consciousness": "V"}
        async with http.post(
            r.url + f"api/visits/{vid}/observations", json={"resp_rate": "200"}, headers=headers
        ) as res:
            assert res.status == 422
        # the login page of a fresh browser shows nothing of it
        async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as stranger, stranger.get(r.url) as res:
            text = await res.text()
        assert CCCD not in text and "4567" not in text and vid not in text
        # sealed in the store: the identifier is nowhere in clear on disk
        await asyncio.get_running_loop().run_in_executor(None, r.agent.store.flush)
    await finish(r)
    for f in config.state_dir.iterdir():
        if f.is_file():
            assert CCCD.encode() not in f.read_bytes(), f
    assert CCCD not in caplog.text and vid not in caplog.text
    # a restart re-opens the visit (devices attached again), without the nurse's old values
    r2 = await start(config, Clock(T0))
    try:
        part2 = r2.agent.dashboard
        assert part2 is not None
        again = part2.book.get(vid)
        assert again.patient_id == f"cccd:{CCCD}" and r2.agent.pipeline._visits == {"ox": f"cccd:{CCCD}"}
        async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
            assert (await login(http, r2)).status == 303
            csrf = await csrf_of(http, r2.url)
            headers = {**r2.origin(), "X-CSRF-Token": csrf}
            async with http.post(r2.url + f"api/visits/{vid}/close", json={}, headers=headers) as res:
                assert res.status == 200
        assert not part2.book.open_visits() and r2.agent.pipeline._visits == {}
        assert r2.agent.store.load_visits(open_only=True) == []
        closed = r2.agent.store.load_visits(open_only=False)
        assert len(closed) == 1 and closed[0]["closed_at"] is not None
    finally:
        r.task = r2.task
        r.stop = r2.stop


@run
async def test_earlier_readings_are_assigned_to_a_visit(r: Running, config: AgentConfig) -> None:
    from device_drivers.records import Measurement, Vital

    part = r.agent.dashboard
    assert part is not None
    stored = r.agent.pipeline.submit("ox", [Measurement(Vital.SPO2, 85.0, "%", "masimo-ascii")], r.clock.now)
    assert stored is not None and await stored == 1  # taken before any visit: no patient
    r.clock.now += timedelta(minutes=5)
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        assert (await login(http, r)).status == 303
        headers = {**r.origin(), "X-CSRF-Token": await csrf_of(http, r.url)}
        body = {"kind": "local", "identifier": "tyt-7", "age_band": "16y+", "devices": []}
        async with http.post(r.url + "api/visits", json=body, headers=headers) as res:
            vid = (await res.json())["visit_id"]
        for bad in ({"device": "ox", "minutes": 7}, {"device": "nope", "minutes": 30}):
            async with http.post(r.url + f"api/visits/{vid}/assign", json=bad, headers=headers) as res:
                assert res.status == 422
        async with http.post(
            r.url + f"api/visits/{vid}/assign", json={"device": "ox", "minutes": 2}, headers=headers
        ) as res:
            assert res.status == 422  # choose 15, 30, 60 or 120
        async with http.post(
            r.url + f"api/visits/{vid}/assign", json={"device": "ox", "minutes": 15}, headers=headers
        ) as res:
            assert res.status == 200, await res.text()
            assert (await res.json())["assigned"] == 1
    assert part.view.latest[vid]["spo2"]["value"] == 85.0
    score = part.view.scores[vid]
    assert score["partial"] is True and score["total"] is not None  # scored for the patient, as a lower bound
    await finish(r)
    r2 = await start(config, Clock(T0))  # the assignment is kept with the visit
    try:
        assert r2.agent.dashboard is not None
        assert r2.agent.dashboard.view.latest[vid]["spo2"]["value"] == 85.0
    finally:
        r.task, r.stop = r2.task, r2.stop


@run
async def test_child_visit_takes_the_pews_oxygen_entries(r: Running) -> None:
    """A child's oxygen flow and high-flow entries reach the PEWS score (o2_support no longer
    missing), and the form offers them in Vietnamese."""
    part = r.agent.dashboard
    assert part is not None
    async with aiohttp.ClientSession(cookie_jar=cookie_jar()) as http:
        assert (await login(http, r)).status == 303
        async with http.get(r.url) as page:
            html = await page.text()
        assert 'name="o2_flow"' in html and 'name="o2_high_flow"' in html
        assert "Lưu lượng oxy (trẻ em)" in html and "Oxy lưu lượng cao, CPAP hoặc BiPAP" in html
        headers = {**r.origin(), "X-CSRF-Token": await csrf_of(http, r.url)}
        body = {"kind": "local", "identifier": "tre-1", "age_band": "1-4y", "devices": ["ox"]}
        async with http.post(r.url + "api/visits", json=body, headers=headers) as res:
            vid = (await res.json())["visit_id"]
        url = r.url + f"api/visits/{vid}/observations"
        async with http.post(url, json={"resp_rate": "30", "resp_distress": "1", "cap_refill": "2"}, headers=headers):
            pass
        first = part.view.scores[vid]
        assert first["name"] == "PEWS" and "o2_support" in first["missing"]  # type: ignore[operator]
        async with http.post(url, json={"o2_flow": "70"}, headers=headers) as res:
            assert res.status == 422 and (await res.json())["error"] == "Lưu lượng oxy phải từ 0 đến 60 lít/phút"
        async with http.post(url, json={"o2_flow": "2", "o2_high_flow": "false"}, headers=headers) as res:
            assert res.status == 200, await res.text()
        obs = dict(part.book.get(vid).observations)
        assert (obs["o2_flow"], obs["o2_high_flow"]) == (2, False)
        assert "o2_support" not in part.view.scores[vid]["missing"]  # type: ignore[operator]
        async with http.post(url, json={"o2_high_flow": "true"}, headers=headers) as res:
            assert res.status == 200
        assert dict(part.book.get(vid).observations)["o2_high_flow"] is True
