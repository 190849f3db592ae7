"""The FastAPI application: the subscriber runs for the app's lifespan; HTTP shows what it received."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from pgsubscriber import GroupMember, Subscriber, SubscriberSettings
from pgsubscriber.dashboard import create_app as create_dashboard
from webconsumer.metrics import metrics_registry
from webconsumer.settings import WebConsumerSettings
from webconsumer.store import Document, MongoEventStore

logger = logging.getLogger(__name__)

HEALTH_PING_TIMEOUT_MS = 1000


class Course(BaseModel):
    course_id: str
    title: str | None
    last_event_id: int
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CoursePage(BaseModel):
    courses: list[Course]
    next_after: str | None
    """Pass as ``after`` to get the next page; None on the last page."""


@dataclass
class Consumer:
    """What the app holds while it runs."""

    store: MongoEventStore
    subscriber: Subscriber | GroupMember
    task: asyncio.Task[None]
    mongo: MongoClient[Document]
    health_mongo: MongoClient[Document]
    registry: CollectorRegistry


def _mongo_client(url: str, timeout_ms: int) -> MongoClient[Document]:
    return MongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms, 30_000),
        tz_aware=True,
    )


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the subscriber stopped with an error: %r", task.exception(), exc_info=task.exception())


def create_app(settings: WebConsumerSettings, subscriber_settings: SubscriberSettings) -> FastAPI:
    """The web consumer: ``/courses``, ``/courses/{id}``, ``/health``, ``/metrics``, and the
    stream's live view at ``/dashboard`` (with the subscriber's own connection string).

    The subscriber starts with the app's lifespan (as an asyncio task) and stops with it; MongoDB
    is not needed to start (the handler's calls fail and are retried until it answers).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = _mongo_client(settings.mongo_url, int(settings.mongo_timeout * 1000))
        health_mongo = _mongo_client(settings.mongo_url, HEALTH_PING_TIMEOUT_MS)
        store = MongoEventStore(mongo[settings.mongo_database])
        subscriber: Subscriber | GroupMember
        if subscriber_settings.group is None:
            subscriber = Subscriber(store, subscriber_settings)
        elif subscriber_settings.partitions == 1:
            subscriber = GroupMember(store, subscriber_settings)  # active or standby
        else:
            partitions = subscriber_settings.partitions

            def partition_store(partition: int) -> MongoEventStore:
                return MongoEventStore(mongo[settings.mongo_database], partition, partitions, store.health)

            subscriber = GroupMember(partition_store, subscriber_settings)
        task = asyncio.create_task(subscriber.run(), name="pgsubscriber")
        task.add_done_callback(_log_end)
        registry = metrics_registry(lambda: subscriber.status)
        app.state.consumer = Consumer(store, subscriber, task, mongo, health_mongo, registry)
        logger.info(
            "web consumer started: topics %s, MongoDB database %r, %s",
            subscriber_settings.topics,
            settings.mongo_database,
            f"group {subscriber_settings.group!r} of {subscriber_settings.partitions} partition(s)"
            if subscriber_settings.group
            else "no group",
        )
        try:
            yield
        finally:
            subscriber.stop()
            done, _ = await asyncio.wait({task}, timeout=settings.shutdown_timeout)
            if not done:
                logger.error(
                    "the subscriber did not stop within %.0fs; cancelling", settings.shutdown_timeout
                )
                task.cancel()
            mongo.close()
            health_mongo.close()
            logger.info("web consumer stopped")

    app = FastAPI(title="pgsubscriber web consumer", lifespan=lifespan)

    def consumer(request: Request) -> Consumer:
        state: Consumer = request.app.state.consumer
        return state

    @app.get("/courses")
    def list_courses(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        after: Annotated[str | None, Query(description="Last course_id of the previous page.")] = None,
    ) -> CoursePage:
        """Courses that exist (not deleted), by course_id, one page at a time."""
        query: dict[str, Any] = {"deleted": False}
        if after is not None:
            query["course_id"] = {"$gt": after}
        try:
            docs = list(consumer(request).store.courses.find(query).sort("course_id", 1).limit(limit + 1))
        except PyMongoError as exc:
            raise HTTPException(503, f"MongoDB unavailable: {exc}") from exc
        page = [Course.model_validate(doc) for doc in docs[:limit]]
        return CoursePage(courses=page, next_after=page[-1].course_id if len(docs) > limit else None)

    @app.get("/courses/{course_id}")
    def get_course(request: Request, course_id: str) -> Course:
        """One course; 404 when unknown or deleted."""
        try:
            doc = consumer(request).store.courses.find_one({"_id": course_id, "deleted": False})
        except PyMongoError as exc:
            raise HTTPException(503, f"MongoDB unavailable: {exc}") from exc
        if doc is None:
            raise HTTPException(404, f"no course {course_id!r}")
        return Course.model_validate(doc)

    @app.get("/health")
    def health(request: Request) -> JSONResponse:
        """Liveness and the subscriber's state; 503 with the reasons when not healthy."""
        c = consumer(request)
        body = health_report(c)
        return JSONResponse(body, status_code=200 if body["healthy"] else 503)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(consumer(request).registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        """Links to what this service serves."""
        links = "".join(
            f'<li><a href="{path}">{path}</a> {what}</li>'
            for path, what in [
                ("/courses", "the courses received"),
                ("/health", "the subscriber's health"),
                ("/metrics", "Prometheus metrics"),
                ("/dashboard/", "the stream's live view: topics, subscribers and their lag"),
                ("/docs", "the API"),
            ]
        )
        return f"<!doctype html><title>pgsubscriber web consumer</title><h1>Web consumer</h1><ul>{links}</ul>"

    app.mount("/dashboard", create_dashboard(subscriber_settings.dsn))
    return app


def health_report(c: Consumer) -> dict[str, Any]:
    """The ``/health`` body: ``healthy``, ``reasons`` and the details behind them."""
    st = c.subscriber.status
    reasons: list[str] = []
    if c.task.done():
        error = None if c.task.cancelled() else c.task.exception()
        reasons.append(f"subscriber stopped: {error!r}" if error else "subscriber stopped")
    elif not st.connected:
        reasons.append(f"not connected to PostgreSQL: {st.last_error or 'connecting'}")
    mongo_error: str | None = None
    try:
        c.health_mongo.admin.command("ping")
    except PyMongoError as exc:
        mongo_error = f"{type(exc).__name__}: {exc}"
        reasons.append(f"MongoDB unreachable: {mongo_error}")
    handler = c.store.health
    if handler.last_error is not None:
        reasons.append(f"last handler attempt failed: {handler.last_error}")
    return {
        "healthy": not reasons,
        "reasons": reasons,
        "subscriber": {
            "running": st.running,
            "connected": st.connected,
            "mode": st.mode,
            "position": st.position,
            "last_drawn_id": st.last_drawn_id,
            "lag": st.lag,
            "reconnects": st.reconnects,
            "last_error": st.last_error,
            "events_delivered": st.events_delivered,
            "batches": st.batches_delivered,
            "handler_failures": st.handler_failures,
            "writers": st.writers,
            "blocked_by_pid": st.blocked_by_pid,
            "notify_queue_usage": st.notify_queue_usage,
            "caught_up_at": st.caught_up_at.isoformat() if st.caught_up_at else None,
        },
        "group": None
        if st.group is None
        else {
            "name": st.group,
            "role": st.role,
            "partitions_owned": st.partitions_owned,
            "partitions": st.partitions,
            "members": st.group_members,
            "takeovers": st.takeovers,
        },
        "mongo": {"reachable": mongo_error is None, "error": mongo_error},
        "handler": {
            "last_error": handler.last_error,
            "failing_since": handler.failing_since.isoformat() if handler.failing_since else None,
            "last_success_at": handler.last_success_at.isoformat() if handler.last_success_at else None,
        },
    }


def serve(settings: WebConsumerSettings, subscriber_settings: SubscriberSettings) -> None:
    """Serve the app with uvicorn until SIGTERM/SIGINT (uvicorn then runs the lifespan's shutdown)."""
    uvicorn.run(
        create_app(settings, subscriber_settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # logging is configured once, by the entry point
        access_log=False,  # /health and /metrics are polled; one line per request is noise
        lifespan="on",
    )
