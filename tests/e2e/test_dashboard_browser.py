"""The nurse's dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium) against a real ``edge-agent run`` process with simulated devices on pseudo-terminals:
log in, live readings, a visit, the nurse's values completing the score, an alert when the
simulated patient desaturates, its acknowledgement, the language switch; a second browser for the
memory figure. Screenshots of each state go to ``<tmp_path>/screens``. Budget figures (RSS,
first-load bytes, commit-to-page latency) are printed, never asserted."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from tests.fixtures.browser import chromium, needs_chromium, served, wait_for  # noqa: E402
from tests.fixtures.web import free_port  # noqa: E402

AGENT = [sys.executable, "-m", "edge_agent.cli"]
PIN = "246810"
# how long the latency sample is collected (the commit window adapts to load: about one page
# update per second at this station's pace); DASHBOARD_LATENCY_S=120 for the closing note's p99
LATENCY_S = float(os.environ.get("DASHBOARD_LATENCY_S", "20"))
CCCD = "001099012345"

pytestmark = needs_chromium


def write_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
version = 1
[gateway]
id = "gw-browser"
province = "test"
state_dir = "state"
station_name = "Trạm Y tế xã Thử Nghiệm"
[scheduler]
status_interval_s = 1
[dashboard]
port = {port}
session_ttl_s = 3600
[[devices]]
id = "oximeter"
format = "masimo-ascii"
transport = "simulated"
scenario = "desaturation"
speed = 4
[[devices]]
id = "monitor"
format = "hl7v2"
transport = "simulated"
scenario = "normal"
speed = 4
"""
    )
    return path


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    config = write_config(tmp_path, port)
    done = subprocess.run(
        [*AGENT, "set-pin", "--config", str(config)], input=PIN + "\n", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert PIN not in (tmp_path / "state" / "dashboard-pin").read_text()
    url = f"http://127.0.0.1:{port}/"
    with served([*AGENT, "run", "--config", str(config)], url, tmp_path / "agent.log") as proc:
        yield url, proc
    assert CCCD not in (tmp_path / "agent.log").read_text(), "a patient identifier reached the log"


def browser(profile: Path) -> webdriver.Chrome:
    return chromium(profile, extra=["--autoplay-policy=no-user-gesture-required"])


def click(driver: webdriver.Chrome, css: str, screens: Path) -> None:
    """Click the element now matching ``css`` (the page re-renders cards on every reading)."""

    def attempt() -> bool:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_for(driver, f"click {css}", attempt, screens)


def login(driver: webdriver.Chrome, url: str, name: str, screens: Path) -> None:
    driver.get(url)
    driver.find_element(By.ID, "who").send_keys(name)
    driver.find_element(By.ID, "pin").send_keys(PIN)
    driver.find_element(By.ID, "login").click()
    wait_for(driver, "the dashboard", lambda: driver.find_elements(By.ID, "visits"), screens)


def page_bytes(driver: webdriver.Chrome) -> dict[str, int]:
    entries = driver.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map(e => [e.name, e.transferSize, e.encodedBodySize, e.decodedBodySize])"
    )
    # bytes on the wire (headers included) of the page and each asset; a 304 counts its headers only
    return {str(name).rsplit("/", 1)[-1] or "/": int(size) for name, size, _, _ in entries if "/events" not in name}


def test_dashboard_in_a_real_browser(agent: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, proc = agent
    screens = tmp_path / "screens"
    screens.mkdir()
    rss_idle = rss_kb(proc.pid)
    first = browser(tmp_path / "profile-1")

    def wait(what: str, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        return wait_for(first, what, fn, screens, timeout)

    second: webdriver.Chrome | None = None
    try:
        # -- the login page: Vietnamese, no patient data, wrong PIN refused ----------------------
        first.get(url)
        assert first.find_element(By.TAG_NAME, "html").get_attribute("lang") == "vi"
        assert "Đăng nhập" in first.page_source and "Mã PIN của trạm" in first.page_source
        first.find_element(By.ID, "who").send_keys("Điều dưỡng Lan")
        first.find_element(By.ID, "pin").send_keys("000000")
        first.find_element(By.ID, "login").click()
        wait("the wrong-PIN message", lambda: "Sai mã PIN" in first.find_element(By.ID, "login-error").text)
        first.save_screenshot(str(screens / "01-login-wrong-pin.png"))

        # -- log in; live readings --------------------------------------------------------------
        login(first, url, "Điều dưỡng Lan", screens)
        wait(
            "live SpO2 on the oximeter",
            lambda: first.find_elements(By.CSS_SELECTOR, '[data-device="oximeter"] [data-vital="spo2"]'),
        )
        wait(
            "the monitor's blood pressure",
            lambda: first.find_elements(By.CSS_SELECTOR, '[data-device="monitor"] [data-vital="bp_systolic"]'),
        )
        first.save_screenshot(str(screens / "02-live-devices.png"))

        # -- open a visit: a wrong CCCD is refused, a right one opens it ---------------------------
        click(first, "#open-visit", screens)
        first.find_element(By.ID, "identifier").send_keys("12345")
        first.find_element(By.ID, "visit-submit").click()
        wait("the CCCD error", lambda: "12 chữ số" in first.find_element(By.ID, "visit-error").text)
        first.save_screenshot(str(screens / "03-visit-form-error.png"))
        ident = first.find_element(By.ID, "identifier")
        ident.clear()
        ident.send_keys(CCCD)
        first.find_element(By.CSS_SELECTOR, '#age_band option[value="16y+"]').click()
        for dev in ("oximeter", "monitor"):
            first.find_element(By.CSS_SELECTOR, f'#visit-devices input[value="{dev}"]').click()
        first.find_element(By.ID, "visit-submit").click()
        wait("the visit card", lambda: first.find_elements(By.CSS_SELECTOR, "[data-visit]"))
        assert CCCD not in first.page_source  # masked on screen
        wait("a partial score", lambda: first.find_elements(By.CSS_SELECTOR, '[data-visit] [data-score="partial"]'))
        partial_text = first.find_element(By.CSS_SELECTOR, "[data-visit] .score").text
        assert "chưa đủ" in partial_text and "ý thức" in partial_text, partial_text
        first.save_screenshot(str(screens / "04-visit-partial-score.png"))

        # -- the nurse's values complete the score --------------------------------------------------
        click(first, "[data-observe]", screens)
        first.find_element(By.ID, "resp_rate").send_keys("18")
        first.find_element(By.CSS_SELECTOR, 'input[name="consciousness"][value="A"]').click()
        first.find_element(By.CSS_SELECTOR, 'input[name="on_oxygen"][value="false"]').click()
        first.save_screenshot(str(screens / "05-observations-form.png"))
        first.find_element(By.ID, "obs-submit").click()
        wait("a complete score", lambda: first.find_elements(By.CSS_SELECTOR, '[data-visit] [data-score="complete"]'))
        first.save_screenshot(str(screens / "06-score-complete.png"))

        # -- the simulated patient desaturates: an alert; one tap acknowledges it --------------------
        wait("an alert to acknowledge", lambda: first.find_elements(By.CSS_SELECTOR, "#alerts button.ack"), 60)
        first.save_screenshot(str(screens / "07-alert.png"))
        click(first, "#alerts button.ack", screens)
        wait(
            "the acknowledgement with who",
            lambda: "Điều dưỡng Lan" in first.find_element(By.CSS_SELECTOR, "#alerts .alert.acked").text,
        )
        first.save_screenshot(str(screens / "08-alert-acknowledged.png"))

        # -- a second browser (memory with two pages open, first-load bytes) -------------------------
        second = browser(tmp_path / "profile-2")
        second.get(url)
        login_bytes = page_bytes(second)
        login(second, url, "Bác sĩ Minh", screens)
        wait("the visit in the second browser", lambda: second.find_elements(By.CSS_SELECTOR, "[data-visit]"))
        loaded = page_bytes(second)
        end = time.monotonic() + LATENCY_S
        while time.monotonic() < end:
            time.sleep(0.5)
        rss_two = rss_kb(proc.pid)

        # -- commit-to-page latency, as the page measured it ------------------------------------------
        latency = first.execute_script("return window.__dashboard.latency")
        assert latency, "the page received no readings"

        # -- English ------------------------------------------------------------------------------
        click(first, "#lang", screens)
        wait("the English page", lambda: first.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
        wait("English text", lambda: "Patients" in first.page_source and "Devices" in first.page_source)
        wait("the visit after the switch", lambda: first.find_elements(By.CSS_SELECTOR, "[data-visit] .score"))
        first.save_screenshot(str(screens / "09-english.png"))
        click(first, "#lang", screens)
        wait("Vietnamese again", lambda: first.find_element(By.TAG_NAME, "html").get_attribute("lang") == "vi")
    finally:
        first.quit()
        if second is not None:
            second.quit()

    lat = sorted(float(x) for x in latency)
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
    figures = {
        "agent_rss_mb_before_pages": round(rss_idle / 1024, 1),
        "agent_rss_mb_two_browsers": round(rss_two / 1024, 1),
        "login_page_bytes": login_bytes,
        "dashboard_page_bytes": loaded,
        "first_load_bytes_total": sum(login_bytes.values()) + sum(loaded.values()),
        "commit_to_page_ms_median": round(statistics.median(lat), 1),
        "commit_to_page_ms_p99": round(p99, 1),
        "latency_samples": len(lat),
        "screenshots": str(screens),
    }
    print("dashboard budget: " + json.dumps(figures, ensure_ascii=False))
    (tmp_path / "budget.json").write_text(json.dumps(figures, indent=2))
    if os.environ.get("DASHBOARD_SCREENS"):  # keep the screenshots somewhere to look at
        import shutil

        shutil.copytree(screens, os.environ["DASHBOARD_SCREENS"], dirs_exist_ok=True)
