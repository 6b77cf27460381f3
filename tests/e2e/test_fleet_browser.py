"""The hub's fleet page in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) against a real ``edge-hub web`` process on a real SQLite hub store: an operator
added with ``edge-hub web-user --password-stdin`` logs in, sees the table in Vietnamese with the
hub's alerts and the history plot, switches to English, filters a province without a reload,
and sees a gateway that reports meanwhile appear live. Screenshots go to ``<tmp_path>/screens``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from hub.fleet_history import bucket_of  # noqa: E402
from hub.store import FleetSample, open_store  # noqa: E402
from tests.fixtures.browser import chromium, needs_chromium, served, wait_for  # noqa: E402
from tests.fixtures.web import free_port  # noqa: E402
from tests.hub.test_fleet import beat  # noqa: E402

HUB = [sys.executable, "-m", "hub.cli"]
PASSWORD = "mật khẩu của Lan"
ROOT = Path(__file__).parents[2]

pytestmark = needs_chromium


def seed(store_dir: Path, now: datetime) -> None:
    """The web process reads the wall clock: the fleet is built around ``now``."""
    h = timedelta(hours=1)
    with open_store(store_dir) as s:
        s.record_status("gw-laocai-01", beat(sent_at=now - 2 * h), province="laocai", now=now - 2 * h)
        s.record_status("gw-laocai-01", {"v": 1, "type": "status", "online": False}, province="laocai", now=now - h)
        s.record_status("gw-hanoi-07", beat(sent_at=now, pending=180, oldest_s=7 * 3600.0), province="hanoi", now=now)
        for i in (1, 2):
            s.record_status(f"gw-hanoi-0{i}", beat(sent_at=now), province="hanoi", now=now)
        s.allocate_command(
            cmd_id="cmd-1",
            gateway_id="gw-hanoi-01",
            province="hanoi",
            kind="set-config",
            args={"key": "scheduler.status_interval_s", "value": 30},
            issued_at=now - timedelta(minutes=20),
            expires_at=now + h,
        )
        s.record_command_result(
            cmd_id="cmd-1",
            gateway_id="gw-hanoi-01",
            state="applied",
            detail=None,
            data={},
            result_at=now - timedelta(minutes=19),
        )
        samples = []
        start = bucket_of(now - 12 * h, 600)
        for k in range(72):  # the last 12 hours, every 10 min: a backlog that grew as laocai went quiet
            at = start + timedelta(minutes=10 * k)
            samples.append(FleetSample(at, "hanoi", 3, 3, 0, 0, 20 + 2 * k, 1 if k > 30 else 0))
            samples.append(FleetSample(at, "laocai", 1, 1 if k < 60 else 0, 0, 0 if k < 60 else 1, 0, 0))
        s.record_fleet_samples(samples, now=now, keep_after=now - 14 * 24 * h)


@pytest.fixture
def hub_web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "hub"
    accounts = tmp_path / "operators"
    seed(store, datetime.now(UTC))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [*HUB, "web-user", "lan", "--password-stdin", "--accounts", str(accounts)],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    port = free_port()
    argv = [*HUB, "web", "--store", str(store), "--listen", f"127.0.0.1:{port}", "--accounts", str(accounts)]
    url = f"http://127.0.0.1:{port}/"
    with served([*argv, "--refresh", "1", "--sample-every", "5"], url, tmp_path / "web.log", env=env, cwd=ROOT):
        yield url, store
    assert PASSWORD not in (tmp_path / "web.log").read_text()


def rows(driver: webdriver.Chrome) -> list[str]:
    return [str(e.get_attribute("data-gateway")) for e in driver.find_elements(By.CSS_SELECTOR, "#fleet tbody tr")]


def test_fleet_page_in_a_real_browser(hub_web: tuple[str, Path], tmp_path: Path) -> None:
    url, store_dir = hub_web
    screens = tmp_path / "screens"
    screens.mkdir()
    driver = chromium(tmp_path / "profile", window="1400,1100")
    try:
        # -- login: Vietnamese first; a wrong password refused ------------------------------------
        driver.get(url)
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "vi"
        driver.find_element(By.ID, "name").send_keys("lan")
        driver.find_element(By.ID, "password").send_keys("not the password")
        driver.find_element(By.ID, "login").click()
        wait_for(
            driver,
            "the wrong-password message",
            lambda: "Sai tên hoặc mật khẩu" in driver.find_element(By.ID, "login-error").text,
            screens,
        )
        driver.save_screenshot(str(screens / "01-login-refused.png"))
        driver.find_element(By.ID, "name").send_keys("lan")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()

        # -- the table in Vietnamese, by urgency, with the hub's alerts and the plot ---------------
        wait_for(driver, "the fleet table", lambda: rows(driver), screens)
        assert rows(driver) == ["gw-laocai-01", "gw-hanoi-07", "gw-hanoi-01", "gw-hanoi-02"]
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Mạng lưới trạm" in body and "ngoại tuyến" in body and "dữ liệu có nguy cơ mất" in body
        alerts = driver.find_element(By.ID, "alerts").text
        assert "Gateway gw-laocai-01: không có tín hiệu trong" in alerts
        assert "Gateway gw-hanoi-07: số đo chờ gửi lâu nhất đã 7 giờ" in alerts and "từ " in alerts
        assert driver.find_elements(By.CSS_SELECTOR, "#plot svg polyline.plot-pending")
        assert "đặt cấu hình: đã áp dụng" in driver.find_element(By.ID, "fleet").text
        assert "4 gateway: 3 trực tuyến, 0 im lặng, 1 ngoại tuyến" in driver.find_element(By.ID, "summary").text
        driver.save_screenshot(str(screens / "02-fleet-vi.png"))

        # -- English ------------------------------------------------------------------------------
        driver.find_element(By.ID, "lang").click()
        wait_for(
            driver, "English", lambda: driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en", screens
        )
        assert "Fleet of stations" in driver.find_element(By.TAG_NAME, "body").text
        assert "4 gateways: 3 online, 0 stale, 1 offline" in driver.find_element(By.ID, "summary").text
        driver.save_screenshot(str(screens / "03-fleet-en.png"))

        # -- the province filter, without a reload -------------------------------------------------
        driver.execute_script("window.__noReload = 'still here'")
        Select(driver.find_element(By.ID, "province")).select_by_value("laocai")
        wait_for(driver, "the laocai view", lambda: rows(driver) == ["gw-laocai-01"], screens)
        assert driver.execute_script("return window.__noReload") == "still here"
        assert driver.current_url.endswith("/?province=laocai")
        alerts = driver.find_element(By.ID, "alerts").text
        assert "Gateway gw-laocai-01: no heartbeat for" in alerts and "gw-hanoi-07" not in alerts
        assert "1 gateways: 0 online, 0 stale, 1 offline" in driver.find_element(By.ID, "summary").text
        driver.save_screenshot(str(screens / "04-laocai-en.png"))

        # -- live: a gateway that reports now appears without a reload -----------------------------
        Select(driver.find_element(By.ID, "province")).select_by_value("")
        wait_for(driver, "all provinces again", lambda: len(rows(driver)) == 4, screens)
        with open_store(store_dir) as s:
            s.record_status("gw-hanoi-03", beat(sent_at=datetime.now(UTC)), province="hanoi", now=datetime.now(UTC))
        wait_for(driver, "the new gateway", lambda: "gw-hanoi-03" in rows(driver), screens)
        assert driver.execute_script("return window.__noReload") == "still here"
        driver.save_screenshot(str(screens / "05-live-en.png"))
    finally:
        driver.quit()
