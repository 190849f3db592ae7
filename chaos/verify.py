"""Did the web consumer receive every "courses" event exactly once, and does its read model match?

PostgreSQL is the truth: the events produced are the rows of ``events`` on the topic. MongoDB holds
what the consumer received (``receivedEvents``, field ``event_id``) and its ``courses`` read model,
which must equal a replay of the events in id order.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pymongo import DESCENDING, MongoClient
from pymongo.errors import PyMongoError

logger = logging.getLogger(__name__)

TOPIC = "courses"

Rows = list[tuple[int, dict[str, Any]]]


def course_rows(conn: psycopg.Connection[Any]) -> Rows:
    """Every "courses" event in PostgreSQL, in id order."""
    return conn.execute("SELECT id, payload FROM events WHERE topic = 'courses' ORDER BY id").fetchall()


def replay_courses(rows: Rows) -> dict[str, dict[str, Any]]:
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


@dataclass(frozen=True)
class Verification:
    """The outcome of one check; ``ok`` when nothing is missing, doubled, unexpected or different."""

    produced: int
    received: int
    duplicates: int
    missing: list[int] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)
    read_model_differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected or self.read_model_differences)

    def problems(self) -> list[str]:
        """One line per kind of problem, with the first ids concerned."""
        lines = []
        if self.missing:
            lines.append(f"{len(self.missing)} event(s) never received: {_first(self.missing)}")
        if self.duplicates:
            lines.append(f"{self.duplicates} duplicate(s) in receivedEvents")
        if self.unexpected:
            lines.append(
                f"{len(self.unexpected)} received id(s) not in PostgreSQL: {_first(self.unexpected)}"
            )
        if self.read_model_differences:
            lines.append(
                f"read model differs for {len(self.read_model_differences)} course(s): "
                + "; ".join(self.read_model_differences[:3])
            )
        return lines


def _first(ids: list[int], count: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:count])
    return shown + (", ..." if len(ids) > count else "")


def verify(events_dsn: str, mongo_url: str, mongo_database: str = "consumer") -> Verification:
    """Compare PostgreSQL's "courses" events with what the consumer stored."""
    with psycopg.connect(events_dsn, connect_timeout=10) as conn:
        rows = course_rows(conn)
    client: MongoClient[dict[str, Any]]
    with MongoClient(mongo_url, serverSelectionTimeoutMS=10_000) as client:
        database: Any = client[mongo_database]
        ids = received_ids(database)
        stored = stored_courses(database)
    produced = [event_id for event_id, _ in rows]
    counts = Counter(ids)
    received_set = set(counts)
    produced_set = set(produced)
    expected = replay_courses(rows)
    differences = [
        f"{course_id}: expected {expected.get(course_id)}, stored {stored.get(course_id)}"
        for course_id in sorted(expected.keys() | stored.keys())
        if expected.get(course_id) != stored.get(course_id)
    ]
    return Verification(
        produced=len(produced),
        received=len(received_set),
        duplicates=len(ids) - len(received_set),
        missing=sorted(produced_set - received_set),
        unexpected=sorted(received_set - produced_set),
        read_model_differences=differences,
    )


def latest_produced_id(events_dsn: str, timeout: float = 60.0) -> int:
    """The greatest "courses" id in PostgreSQL (0 if none); retried while the server is unreachable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(events_dsn, connect_timeout=5) as conn:
                row = conn.execute("SELECT coalesce(max(id), 0) FROM events WHERE topic = %s", (TOPIC,))
                found = row.fetchone()
                return int(found[0]) if found else 0
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            logger.debug("PostgreSQL not reachable yet: %s", exc)
            time.sleep(0.2)


def latest_received_id(client: MongoClient[dict[str, Any]], mongo_database: str = "consumer") -> int:
    """The greatest ``event_id`` in ``receivedEvents`` (0 if none): the consumer's position."""
    doc = client[mongo_database]["receivedEvents"].find_one(
        {}, {"event_id": 1}, sort=[("event_id", DESCENDING)]
    )
    return int(doc["event_id"]) if doc else 0


def wait_until_received(
    mongo_url: str, mongo_database: str, target_id: int, timeout: float, interval: float = 0.1
) -> float:
    """Block until the consumer's position reaches ``target_id``; return the seconds it took.

    Raises :class:`TimeoutError` with the position reached when ``timeout`` passes first.
    """
    started = time.monotonic()
    deadline = started + timeout
    position = 0
    client: MongoClient[dict[str, Any]]
    with MongoClient(mongo_url, serverSelectionTimeoutMS=2000) as client:
        while True:
            try:
                position = latest_received_id(client, mongo_database)
            except PyMongoError as exc:  # briefly unreachable: keep waiting until the deadline
                logger.debug("MongoDB not reachable: %s", exc)
            if position >= target_id:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the consumer reached event {position}, not {target_id}, within {timeout:.0f}s"
                )
            time.sleep(interval)
