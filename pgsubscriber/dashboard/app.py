"""The live web view of a stream: a small ASGI app (Starlette, from the ``web`` extra).

``GET /`` is the page (HTML, CSS and JS served from this package: no CDN, no build step, works
offline); ``GET /api/stream`` pushes the status every ``interval`` seconds as server-sent events,
the history of the last minutes first; ``GET /api/status`` is the same once, as JSON;
``GET /api/events?topic=...`` the latest events of a topic. Every URL is relative, so the app can
be mounted under a prefix (the web consumer serves it at ``/dashboard``).

One sampler per app reads :func:`pgsubscriber.monitor.read_status` (in a thread, on its own
connection) while someone watches, and keeps the history that the charts draw: events/s per topic
and lag per subscriber (by name and host, so a restarted subscriber continues its line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from pgsubscriber import monitor
from pgsubscriber._queries import query

logger = logging.getLogger(__name__)

#: Minutes of history the charts show.
HISTORY_SECONDS = 600.0

#: The sampler stops this long after the last request and the last stream ended.
IDLE_AFTER = 30.0

_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def _dumps(value: object) -> str:
    return json.dumps(value, default=monitor._json_default)


class Sampler:
    """Reads the status every ``interval`` seconds while it is watched, and keeps its history."""

    def __init__(self, dsn: str, interval: float, thresholds: monitor.Thresholds) -> None:
        self.dsn = dsn
        self.interval = interval
        self.thresholds = thresholds
        self.history: deque[dict[str, Any]] = deque(maxlen=int(HISTORY_SECONDS / interval) + 1)
        self.latest: dict[str, Any] | None = None
        self.streams = 0
        self._last_request = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._counts: dict[str, tuple[float, int]] = {}
        self._changed = asyncio.Condition()

    def touch(self) -> None:
        """A request came: run (again) if stopped."""
        self._last_request = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while self.streams > 0 or time.monotonic() - self._last_request < IDLE_AFTER:
                started = time.monotonic()
                sample = await asyncio.to_thread(self._read)
                self.latest = sample
                if "status" in sample:
                    self.history.append(sample["point"])
                async with self._changed:
                    self._changed.notify_all()
                # The counts cost the database time proportional to the events stored: on a large
                # stream, read less often, so that reading keeps the server busy at most a quarter
                # of the time.
                took = time.monotonic() - started
                await asyncio.sleep(max(self.interval - took, 3 * took))
        finally:
            await asyncio.to_thread(self._close)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _read(self) -> dict[str, Any]:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = monitor.connect(self.dsn)
            status = monitor.read_status(self._conn, self.thresholds)
        except Exception as exc:  # shown on the page; the next tick reconnects
            self._close()
            return {
                "error": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                "at": time.time(),
            }
        # JSON-ready (times as ISO text): served as is by /api/status and /api/stream.
        return {"status": json.loads(status.to_json()), "point": self._point(status), "at": time.time()}

    def _point(self, status: monitor.StreamStatus) -> dict[str, Any]:
        """One point of the charts: events/s per topic since the last sample, lag per subscriber."""
        now = time.time()
        rates: dict[str, float] = {}
        for topic in status.topics:
            before = self._counts.get(topic.topic)
            if before is not None and now > before[0]:
                rates[topic.topic] = max(0.0, (topic.events - before[1]) / (now - before[0]))
            self._counts[topic.topic] = (now, topic.events)
        lags: dict[str, float] = {}
        for sub in status.subscribers:
            key = f"{sub.name}@{sub.host}"
            if sub.lag_events is not None:
                lags[key] = max(lags.get(key, 0.0), float(sub.lag_events))
        return {"t": now, "rates": rates, "lags": lags}

    async def wait_for_next(self, timeout: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)


def create_app(dsn: str, *, interval: float = 1.0, thresholds: monitor.Thresholds | None = None) -> Starlette:
    """The dashboard of the stream at ``dsn`` (a member of events_consumer is enough)."""
    sampler = Sampler(dsn, interval, thresholds or monitor.Thresholds())

    async def page(request: Request) -> Response:
        if not request.url.path.endswith("/"):  # relative URLs need the trailing slash
            return RedirectResponse(request.url.replace(path=request.url.path + "/"), status_code=307)
        sampler.touch()
        html = resources.files(__package__).joinpath("static", "index.html").read_bytes()
        return Response(html, media_type="text/html; charset=utf-8")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    async def status(request: Request) -> Response:
        sampler.touch()
        if sampler.latest is None:
            await sampler.wait_for_next(10.0)
        return JSONResponse({"latest": sampler.latest, "history": list(sampler.history)})

    async def stream(request: Request) -> Response:
        sampler.touch()

        async def events() -> AsyncIterator[str]:
            sampler.streams += 1
            try:
                yield f"event: history\ndata: {_dumps(list(sampler.history))}\n\n"
                if sampler.latest is not None:
                    yield f"data: {_dumps(sampler.latest)}\n\n"
                while not await request.is_disconnected():
                    sampler.touch()
                    await sampler.wait_for_next(max(5.0, 3 * interval))
                    if sampler.latest is not None:
                        yield f"data: {_dumps(sampler.latest)}\n\n"
                    else:
                        yield ": waiting\n\n"
            finally:
                sampler.streams -= 1

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def latest_events(request: Request) -> Response:
        topic = request.query_params.get("topic", "")
        try:
            limit = max(1, min(int(request.query_params.get("limit", "20")), 200))
        except ValueError:
            limit = 20
        if not topic:
            return JSONResponse([])
        rows = await asyncio.to_thread(_latest_events, dsn, topic, limit)
        return JSONResponse(
            [
                {"id": r[0], "topic": r[1], "payload": r[2], "created_at": r[3].isoformat(), "key": r[4]}
                for r in rows
            ]
        )

    return Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/api/status", status),
            Route("/api/stream", stream),
            Route("/api/events", latest_events),
        ]
    )


def _latest_events(dsn: str, topic: str, limit: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, prepare_threshold=None, connect_timeout=5, autocommit=True) as conn:
        return conn.execute(query("dashboard_latest_events"), {"topic": topic, "limit": limit}).fetchall()
