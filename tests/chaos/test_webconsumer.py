"""The web consumer under real faults: SIGKILL of ``python -m webconsumer``, MongoDB killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pymongo import MongoClient

from tests.support.courses_stream import (
    StreamPublisher,
    course_rows,
    received_ids,
    replay_courses,
    stored_courses,
)
from tests.support.waiting import wait_until
from webconsumer import WebConsumerSettings, create_app
from webconsumer.embedded_mongo import free_port

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.mongo]

ROOT = Path(__file__).resolve().parents[2]


class ConsumerProcess:
    """``python -m webconsumer`` as a real process, configured through the environment."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsumerProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "webconsumer"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.answers, timeout=30, interval=0.1, message="the web consumer to answer HTTP")
        return self

    def answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(self.url("/health"), timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def health(self) -> dict[str, object]:
        return httpx.get(self.url("/health"), timeout=5).json()

    def sigkill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def consumer_process(db, mongo, tmp_path) -> Iterator[ConsumerProcess]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WEBCONSUMER_HOST": "127.0.0.1",
        "WEBCONSUMER_PORT": str(port),
        "MONGO_URL": mongo.url,
        "WEBCONSUMER_MONGO_DATABASE": mongo.name,
        "PGSUBSCRIBER_DSN": db.role_dsn("events_consumer"),
        "PGSUBSCRIBER_BATCH_SIZE": "50",
        "PGSUBSCRIBER_HANDLER_RETRY_INITIAL_DELAY": "0.05",
        "PGSUBSCRIBER_HANDLER_RETRY_MAX_DELAY": "0.2",
    }
    env.pop("PGSUBSCRIBER_TOPICS", None)  # the default topic, "courses"
    consumer = ConsumerProcess(env, port, tmp_path / "webconsumer.log")
    try:
        yield consumer
    finally:
        consumer.cleanup()


def assert_every_course_event_received_once(db, database) -> None:
    """receivedEvents holds each "courses" event of PostgreSQL once; the read model is their replay."""
    with db.connect() as conn:
        rows = course_rows(conn)
    ids = received_ids(database)
    assert len(ids) == len(set(ids)), "duplicates in receivedEvents"
    assert ids == [row[0] for row in rows]
    assert stored_courses(database) == replay_courses(rows)


def test_sigkill_mid_stream_then_restart_receives_every_event_once(db, mongo, consumer_process):
    publisher = StreamPublisher(db.role_dsn("events_producer"), count=3000, batch=10, pause=0.01)
    publisher.start()
    with mongo.client() as client:
        database = client[mongo.name]
        count = database["receivedEvents"].count_documents
        for at_least in (200, 900):
            consumer_process.start()
            wait_until(lambda n=at_least: count({}) >= n, timeout=30, message=f"{at_least} events stored")
            assert at_least > 200 or publisher.is_alive(), "the stream ended before the first kill"
            consumer_process.sigkill()

        consumer_process.start()
        publisher.finish()
        last_id = db.scalar("SELECT max(id) FROM events WHERE topic = 'courses'")

        def caught_up() -> bool:
            health = consumer_process.health()
            return health["healthy"] is True and health["subscriber"]["position"] == last_id

        wait_until(caught_up, timeout=60, interval=0.2, message="the restarted consumer to catch up")
        assert_every_course_event_received_once(db, database)
        first_page = httpx.get(consumer_process.url("/courses"), params={"limit": 500}, timeout=5).json()
        with db.connect() as conn:
            live = sorted(k for k, v in replay_courses(course_rows(conn)).items() if not v["deleted"])
        assert [c["course_id"] for c in first_page["courses"]] == live[:500]

        started = time.monotonic()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why it ended.
        assert consumer_process.terminate() == -signal.SIGTERM
        assert time.monotonic() - started < 10
        log = consumer_process.log.read_text()
        assert "subscriber stopped" in log and "web consumer stopped" in log


def test_mongodb_killed_and_restarted_while_events_flow_loses_nothing(db, own_mongo):
    publisher = StreamPublisher(db.role_dsn("events_producer"), count=1500, batch=10, pause=0.01)
    settings = WebConsumerSettings(mongo_url=own_mongo.url, mongo_database="consumer", mongo_timeout=0.5)
    app = create_app(settings, db.settings(batch_size=50))
    with TestClient(app) as http, MongoClient(own_mongo.url, serverSelectionTimeoutMS=10_000) as client:
        database = client["consumer"]
        publisher.start()
        wait_until(lambda: database["receivedEvents"].count_documents({}) >= 200, timeout=30)
        own_mongo.kill()

        def mongo_reported_down() -> bool:
            response = http.get("/health")
            return response.status_code == 503 and "MongoDB unreachable" in " ".join(
                response.json()["reasons"]
            )

        wait_until(mongo_reported_down, timeout=20, message="/health to report MongoDB down")
        time.sleep(1.0)  # events keep coming while MongoDB is down
        own_mongo.start()
        publisher.finish()
        last_id = db.scalar("SELECT max(id) FROM events WHERE topic = 'courses'")

        def caught_up() -> bool:
            body = http.get("/health").json()
            return body["healthy"] is True and body["subscriber"]["position"] == last_id

        wait_until(
            caught_up, timeout=60, interval=0.2, message="the consumer to catch up after MongoDB is back"
        )
        assert http.get("/health").json()["subscriber"]["handler_failures"] > 0
        assert_every_course_event_received_once(db, database)
