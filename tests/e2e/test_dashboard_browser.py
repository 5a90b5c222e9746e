"""The dashboard in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromium-driver (``scripts/setup.sh --browser`` installs both), against a real server
with an admin token.

It keeps a screenshot of the page at the end, pass or fail, in ``test-artifacts/`` at the root
of the repository (ignored by git; CI keeps it from there).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.e2e.conftest import MEMORY_ONLY, Peers
from tests.e2e.harness import DEFAULT_WAIT, ServerProcess, eventually

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SWITCHBOARD_CHROMEDRIVER", "/usr/bin/chromedriver")
ADMIN_TOKEN = "browser-s3cret"
KEY = "switchboard.adminToken"  # where the page keeps the token (sessionStorage)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            pytest.fail(f"{binary} is missing: run scripts/setup.sh --browser")
    # Selenium must not try to fetch a browser or a driver of its own (there is no network).
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1300",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


async def in_browser(call: Callable[[], Any]) -> Any:
    """Selenium blocks: run it off the loop, so the fake node's heartbeats go on meanwhile."""
    return await asyncio.to_thread(call)


async def until(
    driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], bool], what: str
) -> None:
    async def probe() -> bool:
        try:
            return bool(await in_browser(lambda: check(driver)))
        except WebDriverException:  # an element replaced between find and read
            return False

    await eventually(probe, what, within=3 * DEFAULT_WAIT, interval=0.1)


def cell(driver: webdriver.Chrome, node_id: str, css: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f"tr[data-node-id='{node_id}'] {css}")


def node_listed(node_id: str) -> Callable[[webdriver.Chrome], bool]:
    return lambda d: bool(d.find_elements(By.CSS_SELECTOR, f"tr[data-node-id='{node_id}']"))


def status_is(node_id: str, status: str) -> Callable[[webdriver.Chrome], bool]:
    return lambda d: bool(cell(d, node_id, ".status").text == status)


def card_is(label: str, value: str) -> Callable[[webdriver.Chrome], bool]:
    return lambda d: bool(d.find_element(By.CSS_SELECTOR, f"[data-card='{label}'] b").text == value)


def chart(driver: webdriver.Chrome) -> tuple[int, str]:
    """The latency chart: how many seconds have a p99 point, and its p99 line."""
    svg = driver.find_element(By.ID, "chart-latency")
    line = driver.find_element(By.ID, "chart-latency-p99_ms")
    return int(svg.get_attribute("data-points") or 0), line.get_attribute("d") or ""


@MEMORY_ONLY
@pytest.mark.server(admin_token=ADMIN_TOKEN)
async def test_dashboard_in_a_browser(
    server: ServerProcess, peers: Peers, browser: webdriver.Chrome
) -> None:
    """Open the page, give the admin token at its prompt, see a node appear with its
    telemetry, see the latency chart move after real traffic, drain the node with its button
    and see it draining, undrain it and see it ready; keep a screenshot."""
    try:
        await in_browser(lambda: browser.get(server.url + "/dashboard"))
        await until(browser, lambda d: d.find_element(By.ID, "login").is_displayed(), "prompt")

        def give_token(d: webdriver.Chrome) -> None:
            d.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
            d.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

        await in_browser(lambda: give_token(browser))
        await until(browser, lambda d: "live" in d.find_element(By.ID, "status").text, "live")
        assert (await in_browser(lambda: chart(browser)))[0] == 0  # no dispatch yet
        token_kept = await in_browser(
            lambda: browser.execute_script("return sessionStorage.getItem(arguments[0])", KEY)
        )
        assert token_kept == ADMIN_TOKEN
        assert ADMIN_TOKEN not in await in_browser(lambda: browser.current_url)

        node = await peers.node(server, node_id="gpu-1")  # heartbeats cpu 12.5 %, gpu 30 %
        await until(browser, node_listed("gpu-1"), "node gpu-1 on the page")
        await until(browser, status_is("gpu-1", "ready"), "gpu-1 ready")
        row = await in_browser(lambda: cell(browser, "gpu-1", "").text)
        assert "12.5 %" in row and "30.0 %" in row, row

        session = await peers.session(server)
        for index in range(20):
            await session.utter(index)
        await session.wait_answers(20)
        await until(browser, lambda d: chart(d)[0] >= 1, "a p99 point on the latency chart")
        _, line = await in_browser(lambda: chart(browser))
        assert line.startswith("M")
        # The chart scrolls: each second moves the points left.
        await until(browser, lambda d: chart(d)[1] not in ("", line), "the latency chart moving")

        await in_browser(lambda: cell(browser, "gpu-1", "button.drain").click())
        await until(browser, status_is("gpu-1", "draining"), "gpu-1 draining on the page")
        assert (await server.nodes())["gpu-1"]["status"] == "draining"
        await until(browser, card_is("draining", "1"), "the overview counting it draining")
        await until(browser, lambda d: bool(cell(d, "gpu-1", "button.undrain")), "undrain")
        await in_browser(lambda: cell(browser, "gpu-1", "button.undrain").click())
        await until(browser, status_is("gpu-1", "ready"), "gpu-1 ready again on the page")
        assert (await server.nodes())["gpu-1"]["status"] == "ready"
        await node.heartbeat()
        await until(browser, card_is("draining", "0"), "the overview counting none draining")
        await until(browser, card_is("ready", "1"), "the overview counting it ready")
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        await in_browser(lambda: browser.save_screenshot(str(ARTIFACTS / "dashboard.png")))
