"""The dashboard's HTTP surface (no browser): the page, its files, the status, the latest events;
and the web consumer's index and its /dashboard."""

from __future__ import annotations

import httpx
import pytest

from pgsubscriber.dashboard import create_app
from tests.support.dashboard_server import serving
from tests.support.handlers import RecordingHandler
from tests.support.producers import produce
from tests.support.running import running_subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_the_page_its_files_the_status_and_the_latest_events(db):
    ids = produce(db, 4)
    handler = RecordingHandler()
    app = create_app(db.role_dsn("events_consumer"), interval=0.2)
    with running_subscriber(handler, db.settings(name="billing", registry_interval=0.2)), serving(app) as url:
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and 'src="static/dashboard.js"' in page.text
        assert "http" not in page.text.replace("http://www.w3.org", "")  # nothing from elsewhere
        for name, kind in [("dashboard.js", "javascript"), ("dashboard.css", "css")]:
            served = httpx.get(f"{url}/static/{name}", timeout=10)
            assert served.status_code == 200 and kind in served.headers["content-type"]
        assert httpx.get(url + "/static/../app.py", timeout=10).status_code == 404

        def subscriber_state() -> object:
            latest = httpx.get(url + "/api/status", timeout=10).json()["latest"]
            subs = latest["status"]["subscribers"] if latest and "status" in latest else []
            return [(s["name"], s["state"], s["lag_events"]) for s in subs]

        wait_until(lambda: subscriber_state() == [("billing", "listening", 0)], message="the subscriber")
        events = httpx.get(url + "/api/events", params={"topic": "courses", "limit": 3}, timeout=10).json()
        assert [e["id"] for e in events] == ids[::-1][:3] and events[0]["payload"] == '{"n": 3}'
        with httpx.stream("GET", url + "/api/stream", timeout=10) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: history" and next(lines).startswith("data: [")


def test_the_web_consumer_links_its_pages_and_serves_the_dashboard(db, mongo):
    from fastapi.testclient import TestClient

    from tests.integration.test_webconsumer import web_settings
    from webconsumer.app import create_app as create_webconsumer

    app = create_webconsumer(web_settings(mongo.url, mongo.name), db.settings())
    with TestClient(app) as http:
        index = http.get("/")
        assert index.status_code == 200
        for path in ["/courses", "/health", "/metrics", "/dashboard/", "/docs"]:
            assert f'href="{path}"' in index.text
        page = http.get("/dashboard", follow_redirects=True)
        assert page.status_code == 200 and "pgsubscriber dashboard" in page.text
        assert http.get("/dashboard/static/dashboard.js").status_code == 200
