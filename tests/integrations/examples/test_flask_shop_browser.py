"""The Flask example shop in headless Chromium against a real collector on 127.0.0.1.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/system-deps`` installs them); the test
fails when they are missing, unless ``JOURNEYKIT_SKIP_BROWSER=1`` opts out.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import PSEUDONYM_KEY, WRITE_KEY, RunningCollector, running_collector
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
)

if os.environ.get("JOURNEYKIT_SKIP_BROWSER") == "1":
    pytest.skip("JOURNEYKIT_SKIP_BROWSER=1", allow_module_level=True)

from selenium import webdriver  # noqa: E402  (only once the browser is wanted)
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@contextmanager
def browser(profile: Path) -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.fail(
                f"{path} is missing: apt-get install chromium chromium-driver "
                "(or set JOURNEYKIT_SKIP_BROWSER=1 to skip the browser tests)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


@contextmanager
def shop(collector: RunningCollector) -> Iterator[tuple[str, Any]]:
    from flask_shop.app import create_app

    from journeykit.sdk.integrations.flask import client_of

    app = create_app(
        {
            "JOURNEYKIT": {
                "write_key": WRITE_KEY,
                "host": collector.url,
                "client_options": {"pseudonym_key": PSEUDONYM_KEY, "flush_interval": 0.1},
            }
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = client_of(app)
    try:
        yield f"http://127.0.0.1:{server.server_port}", client
    finally:
        server.shutdown()
        thread.join(10)
        client.shutdown(timeout=10)


def stored_events(collector: RunningCollector, client: Any) -> list[str]:
    assert client.flush(timeout=10)  # delivered and acknowledged, so on disk
    return [e.get("event") or e["type"] for e in collector.events]


def click_and_load(driver: webdriver.Chrome, element: WebElement) -> None:
    """Click, and wait until the page the click leads to has replaced this one.

    A click returns once the browser has taken it, not when the next page is there: reading the
    page at once may read the old one.
    """
    driver.execute_script("window.journeykitOldPage = true")
    element.click()

    def next_page_loaded(d: webdriver.Chrome) -> bool:
        return bool(
            d.execute_script(
                "return window.journeykitOldPage === undefined"
                " && document.readyState === 'complete'"
            )
        )

    # While the page is being replaced chromedriver may answer with a transient error.
    WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(next_page_loaded)


def shop_session(driver: webdriver.Chrome, url: str, choice: str) -> None:
    driver.get(url + "/")
    click_and_load(driver, driver.find_element(By.ID, f"consent-{choice}"))
    assert not driver.find_elements(By.ID, "consent-banner")  # the choice is remembered
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, "a.product"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sencha green tea"
    click_and_load(driver, driver.find_element(By.ID, "add-to-cart"))
    assert "Sencha green tea" in driver.find_element(By.ID, "cart-lines").text


def test_accepting_the_banner_sends_the_journey(tmp_path: Path) -> None:
    with (
        running_collector(tmp_path / "data", consent_regime="opt_in") as collector,
        shop(collector) as (url, client),
        browser(tmp_path / "profile") as driver,
    ):
        shop_session(driver, url, "accept")
        assert "jk_aid" in {c["name"] for c in driver.get_cookies()}
        events = stored_events(collector, client)
        # Personalization granted: the collector's decision shows on the next page.
        driver.get(url + "/")
        # (The SDK reuses a decision for decision_ttl, so the stage may be the first page's.)
        block = driver.find_element(By.ID, "personalized")
        assert "Your journey:" in block.text
    assert events[0] == "Consent Updated"
    for name in ("page", "Product Viewed", "Product Added", "Cart Viewed"):
        assert name in events, events
    assert collector.rejected == []


def test_declining_the_banner_sends_no_analytics(tmp_path: Path) -> None:
    with (
        running_collector(tmp_path / "data", consent_regime="opt_in") as collector,
        shop(collector) as (url, client),
        browser(tmp_path / "profile") as driver,
    ):
        shop_session(driver, url, "reject")
        assert "jk_aid" not in {c["name"] for c in driver.get_cookies()}
        events = stored_events(collector, client)
    assert events == ["Consent Updated"]  # the refusal itself, nothing else
    assert client.stats().dropped.get("denied:analytics", 0) >= 3
