"""The dashboard in a real browser: Debian's headless chromium driven by Playwright.

It publishes events and sees them on the page; stops a subscriber and sees it gone with its lag
rising, restarts it and sees the lag fall back to 0; holds a producer transaction open and sees it
holding delivery back. A screenshot is saved in the test's tmp_path (dashboard.png).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import psycopg
import pytest

from pgsubscriber.dashboard import create_app
from tests.support.dashboard_server import serving
from tests.support.handlers import RecordingHandler
from tests.support.running import SubscriberThread
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("PGSUBSCRIBER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def produce(db, count: int) -> list[int]:
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
        return [
            conn.execute(
                "INSERT INTO events (topic, payload) VALUES ('courses', %s) RETURNING id", (f'{{"n": {i}}}',)
            ).fetchone()[0]
            for i in range(count)
        ]


def test_the_page_shows_events_lag_rising_and_falling_and_a_held_back_transaction(db, page, tmp_path):
    settings = db.settings(name="billing", registry_interval=0.2)
    handler = RecordingHandler()
    subscriber = SubscriberThread(handler, settings).start()
    row = "tr[data-subscriber='billing']"

    def lag() -> str:
        return page.locator(f"{row} td.lag-events").inner_text()

    try:
        with serving(create_app(db.role_dsn("events_consumer"), interval=0.3)) as url:
            page.goto(url + "/")
            ids = produce(db, 5)
            wait_until(lambda: len(handler.ids) == 5)
            # The latest events of the topic, the subscriber listening and caught up.
            page.locator(f"#events tr[data-event='{ids[-1]}']").wait_for()
            page.wait_for_function(
                "document.querySelector(\"tr[data-subscriber='billing'] td.lag-events\")?.textContent === '0'"
            )
            assert page.locator(f"{row} td.state").inner_text() == "listening"
            assert page.locator("#topics tr[data-topic='courses'] td").nth(1).inner_text() == "5"

            # Stopped: gone, and its lag rises with every event published meanwhile.
            subscriber.stop()
            page.wait_for_function(
                "document.querySelector(\"tr[data-subscriber='billing']\")?.dataset.state === 'gone'"
            )
            produce(db, 3)
            wait_until(lambda: lag() == "3", message="lag 3 on the page")
            produce(db, 4)
            wait_until(lambda: lag() == "7", message="lag 7 on the page")
            assert "problem" in page.locator("#verdict").inner_text()

            # Restarted (the handler keeps its position): it catches up, its lag falls to 0.
            subscriber = SubscriberThread(handler, settings).start()
            wait_until(lambda: len(handler.ids) == 12)
            page.wait_for_function(
                "(() => { const r = document.querySelector(\"tr[data-subscriber='billing']\");"
                " return r && r.dataset.state === 'listening'"
                " && r.querySelector('td.lag-events').textContent === '0'; })()"
            )
            assert page.locator(row).count() == 1  # the new record replaced the gone one
            series = f"billing@{socket.gethostname()}"
            assert page.locator(f"#lag-chart polyline[data-series='{series}']").count() == 1
            assert page.locator("#rate-chart polyline[data-series='courses']").count() == 1

            # A producer transaction open after an id: the ids after it are held back.
            with psycopg.connect(db.role_dsn("events_producer")) as slow:
                slow.execute("SET application_name = 'slow-importer'")
                slow.execute("INSERT INTO events (topic, payload) VALUES ('courses', '{}')")
                produce(db, 2)
                writer = page.locator(f"#writers tr[data-writer='{slow.info.backend_pid}']")
                writer.wait_for()
                assert "slow-importer" in writer.inner_text() and "held-back" in (
                    writer.get_attribute("class") or ""
                )
                page.wait_for_timeout(1500)  # a few more points on the charts
                shot = tmp_path / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
                slow_pid = slow.info.backend_pid
                slow.rollback()
            page.locator(f"#writers tr[data-writer='{slow_pid}']").wait_for(state="detached")
            page.goto("about:blank")  # ends the page's event stream before the server stops
    finally:
        subscriber.stop()
