"""The handler: every received event and a ``courses`` read model, in MongoDB, without transactions.

Two collections, written in this order for each batch:

1. ``courses``, the read model. Each course document stores ``last_event_id``, the id of the newest
   event applied to it, and an update only applies when its event is newer. A deleted course stays
   as a tombstone (``deleted: true``) so that a redelivered "created" cannot bring it back.
2. ``receivedEvents``, one document per event with a unique index on ``event_id``. The position
   (``get_latest_received_id``) is the greatest ``event_id``, read from that index.

The read model is written first, so ``receivedEvents`` is never ahead of it. A crash between the two
writes leaves the read model ahead; the position did not move, so the batch comes again, the read
model skips what it already has, and ``receivedEvents`` catches up. Events are inserted in id order
(an ordered insert stops at the first failure), so stored ids are always a prefix of the batch: all
ids up to the greatest one are present, and a retry inserts exactly the ids after it.

``crash_point`` marks the points between the writes; tests pass
``pgsubscriber.testing.HandlerRun.crash_point`` there, so ``check_handler`` can crash the store at
each of them (tests/integration/test_webconsumer.py). In production it does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import bson
from bson.codec_options import CodecOptions, TypeRegistry
from bson.errors import InvalidDocument
from pymongo import ASCENDING, DESCENDING, InsertOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from pgsubscriber import Event

logger = logging.getLogger(__name__)

COURSES_TOPIC = "courses"
RECEIVED_EVENTS = "receivedEvents"
COURSES = "courses"

Document = dict[str, Any]


def _no_crash(where: str) -> None:
    """Production: nothing happens between the writes."""


def _decimal_to_bson(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


#: Exact numbers arrive as Decimal (pgsubscriber never rounds): stored as their exact text, which
#: every MongoDB-protocol server keeps (nx-27017 has no Decimal128).
_CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(
    type_registry=TypeRegistry(fallback_encoder=_decimal_to_bson), tz_aware=True
)


_MONGO_MAX_DEPTH = 100


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (iterative: payloads may nest deeply)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def storable_payload(event: Event) -> tuple[Any, str | None]:
    """The payload as MongoDB can store it, or ``(None, why)`` when BSON cannot hold it (integers
    beyond 64 bits, nesting deeper than MongoDB's 100 levels, a payload that could not be decoded).
    The event is recorded either way: one odd payload must not stop the consumer."""
    if event.raw_payload is not None:
        return None, "the payload could not be decoded"
    if _deeper_than(event.payload, _MONGO_MAX_DEPTH - 2):  # the document and "payload" add two
        return None, f"nested deeper than MongoDB's {_MONGO_MAX_DEPTH} levels"
    try:
        bson.encode({"payload": event.payload}, codec_options=_CODEC_OPTIONS)
    except (InvalidDocument, OverflowError, RecursionError) as exc:
        return None, f"BSON cannot hold this payload: {type(exc).__name__}"
    return event.payload, None


@dataclass
class CourseChange:
    """What one batch does to one course: the fields to set, and the newest event among them."""

    last_event_id: int
    fields: dict[str, Any] = field(default_factory=dict)


def fold_course_events(events: Iterable[Event]) -> dict[str, CourseChange]:
    """Fold a batch's course events into one change per course (later events win field by field).

    Applying the folded fields to a course document that is anywhere between the batch's first and
    last event for that course gives the same result as applying the events one by one.
    """
    changes: dict[str, CourseChange] = {}
    for event in events:
        if event.topic != COURSES_TOPIC:
            continue
        kind = event.payload.get("type")
        course_id = event.payload.get("course_id")
        if not isinstance(course_id, str):
            logger.warning("event %d (%s) has no course_id; read model unchanged", event.id, kind)
            continue
        if kind == "course.created":
            update: dict[str, Any] = {
                "title": event.payload.get("title"),
                "deleted": False,
                "created_event_id": event.id,
                "created_at": event.created_at,
            }
        elif kind == "course.renamed":
            update = {"title": event.payload.get("title")}
        elif kind == "course.deleted":
            update = {"deleted": True}
        else:
            logger.warning("event %d has unknown type %r; read model unchanged", event.id, kind)
            continue
        change = changes.setdefault(course_id, CourseChange(event.id))
        change.last_event_id = event.id
        change.fields.update(update, updated_at=event.created_at)
    return changes


@dataclass
class HandlerHealth:
    """The outcome of the handler's last MongoDB attempt, for ``/health``."""

    last_error: str | None = None
    failing_since: datetime | None = None
    last_success_at: datetime | None = None


class MongoEventStore:
    """An :class:`~pgsubscriber.ApplicationEventHandler` that keeps events and courses in MongoDB.

    Its methods are plain ``def`` (pymongo is blocking): the subscriber runs them in a thread. One
    writer per database, or per partition: run several web consumers as a consumer group.

    With ``partition`` (a group of ``partitions`` > 1) it is the handler of that partition: each
    received event also records its partition, the position is the greatest ``event_id`` of the
    partition, and ids already stored (under another partition count) are skipped. Courses need no
    change: a course's events share its partition key, so one partition writes each course.
    """

    def __init__(
        self,
        database: Database[Document],
        partition: int | None = None,
        partitions: int | None = None,
        health: HandlerHealth | None = None,
        crash_point: Callable[[str], None] = _no_crash,
    ) -> None:
        self.database = database
        self.partition = partition
        self.partitions = partitions
        self.crash_point = crash_point
        self.received: Collection[Document] = database.get_collection(
            RECEIVED_EVENTS, codec_options=_CODEC_OPTIONS
        )
        self.courses: Collection[Document] = database.get_collection(COURSES, codec_options=_CODEC_OPTIONS)
        self.health = health if health is not None else HandlerHealth()
        self._indexes_ready = False
        self._lock = threading.Lock()  # shared health: the lock guards only this store's writes to it

    # -- ApplicationEventHandler ------------------------------------------------------------

    def on_notification(self, events: list[Event]) -> None:
        """Apply the batch to the read model, then record its events. Idempotent."""
        with self._attempt():
            self.ensure_indexes()
            self.apply_to_read_model(events)
            self.crash_point("after the read model")
            self.record_received(events)
            self.crash_point("after receivedEvents")

    def get_latest_received_id(self) -> int:
        """The greatest stored ``event_id`` (one step down the unique index), or 0."""
        with self._attempt():
            self.ensure_indexes()
            return self._latest_received_id()

    # -- the two writes ---------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Create the indexes once (idempotent on the server too)."""
        if self._indexes_ready:
            return
        self.received.create_index([("event_id", ASCENDING)], unique=True, name="event_id_unique")
        # For GET /courses: live courses in course_id order (nx-27017 cannot index "_id" in a compound).
        self.courses.create_index([("deleted", ASCENDING), ("course_id", ASCENDING)], name="live_courses")
        if self.partition is not None:
            self.received.create_index(
                [("partitions", ASCENDING), ("partition", ASCENDING), ("event_id", ASCENDING)],
                name="partition_position",
            )
        self._indexes_ready = True

    def apply_to_read_model(self, events: list[Event]) -> None:
        """Bring each course of the batch up to its newest event; skip courses already there."""
        changes = fold_course_events(events)
        if not changes:
            return
        known = {
            doc["_id"]: int(doc.get("last_event_id", 0))
            for doc in self.courses.find({"_id": {"$in": list(changes)}}, {"last_event_id": 1})
        }
        writes: list[InsertOne[Document] | UpdateOne] = []
        for course_id, change in changes.items():
            if course_id not in known:
                document = {"title": None, "deleted": False, **change.fields}
                writes.append(
                    InsertOne(
                        {
                            **document,
                            "_id": course_id,
                            "course_id": course_id,
                            "last_event_id": change.last_event_id,
                        }
                    )
                )
            elif known[course_id] < change.last_event_id:
                writes.append(
                    UpdateOne(
                        {"_id": course_id, "last_event_id": {"$lt": change.last_event_id}},
                        {"$set": {**change.fields, "last_event_id": change.last_event_id}},
                    )
                )
        if writes:
            self.courses.bulk_write(writes, ordered=False)

    def record_received(self, events: list[Event]) -> None:
        """Insert, in id order, the events after the greatest stored id."""
        latest = self._latest_received_id()
        now = datetime.now(UTC)
        documents = []
        stored: set[int] = set()
        if self.partition is not None:
            stored = {
                int(doc["event_id"])
                for doc in self.received.find(
                    {"event_id": {"$in": [e.id for e in events if e.id > latest]}}, {"event_id": 1, "_id": 0}
                )
            }
        for event in events:
            if event.id <= latest or event.id in stored:
                continue
            payload, unstorable = storable_payload(event)
            document = {
                "event_id": event.id,
                "topic": event.topic,
                "payload": payload,
                "key": event.key,
                "created_at": event.created_at,
                "received_at": now,
            }
            if self.partition is not None:
                document["partition"] = self.partition
                document["partitions"] = self.partitions
            if unstorable:
                logger.warning("event %d: payload not stored: %s", event.id, unstorable)
                document["payload_not_stored"] = unstorable
            documents.append(document)
        if documents:
            self.received.insert_many(documents, ordered=True)

    def _latest_received_id(self) -> int:
        where: Document = {}
        if self.partition is not None:
            where = {"partitions": self.partitions, "partition": self.partition}
        newest = self.received.find_one(where, {"event_id": 1, "_id": 0}, sort=[("event_id", DESCENDING)])
        return int(newest["event_id"]) if newest else 0

    # -- health -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _attempt(self) -> Iterator[None]:
        """Record whether a handler call reached MongoDB, for ``/health``; re-raise any failure."""
        try:
            yield
        except Exception as exc:
            with self._lock:
                if self.health.failing_since is None:
                    self.health.failing_since = datetime.now(UTC)
                self.health.last_error = f"{type(exc).__name__}: {exc}"
            raise
        with self._lock:
            self.health.last_error = None
            self.health.failing_since = None
            self.health.last_success_at = datetime.now(UTC)
