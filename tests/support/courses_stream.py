"""A background producer of example course events, and the read model a replay of them gives."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from producer.courses import CoursesScenario
from producer.publish import publish_many


class StreamPublisher(threading.Thread):
    """Publishes ``count`` example events (courses and enrollments) in small transactions."""

    def __init__(self, dsn: str, count: int, batch: int = 10, pause: float = 0.005, seed: int = 7) -> None:
        super().__init__(name="stream-publisher", daemon=True)
        self.dsn, self.count, self.batch, self.pause = dsn, count, batch, pause
        self.scenario = CoursesScenario("p", seed=seed)
        self.published = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while self.published < self.count:
                    size = min(self.batch, self.count - self.published)
                    publish_many(conn, [self.scenario.next_event() for _ in range(size)])
                    self.published += size
                    time.sleep(self.pause)
        except BaseException as exc:
            self.error = exc
            raise

    def finish(self, timeout: float = 60.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the publisher did not finish"
        assert self.error is None, self.error


def course_rows(conn: psycopg.Connection[Any]) -> list[tuple[int, dict[str, Any]]]:
    """Every "courses" event in PostgreSQL, in id order."""
    return conn.execute("SELECT id, payload FROM events WHERE topic = 'courses' ORDER BY id").fetchall()


def replay_courses(rows: list[tuple[int, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The read model, computed from scratch: course_id -> title, deleted, last_event_id."""
    courses: dict[str, dict[str, Any]] = {}
    for event_id, payload in rows:
        course = courses.setdefault(payload["course_id"], {"title": None, "deleted": False})
        if payload["type"] == "course.created":
            course.update(title=payload["title"], deleted=False)
        elif payload["type"] == "course.renamed":
            course["title"] = payload["title"]
        elif payload["type"] == "course.deleted":
            course["deleted"] = True
        course["last_event_id"] = event_id
    return courses


def stored_courses(database: Any) -> dict[str, dict[str, Any]]:
    """The read model as stored in MongoDB, in the shape of :func:`replay_courses`."""
    return {
        doc["_id"]: {
            "title": doc["title"],
            "deleted": bool(doc["deleted"]),
            "last_event_id": doc["last_event_id"],
        }
        for doc in database["courses"].find()
    }


def received_ids(database: Any) -> list[int]:
    """The event ids in ``receivedEvents``, in id order (duplicates kept)."""
    return sorted(doc["event_id"] for doc in database["receivedEvents"].find({}, {"event_id": 1}))
