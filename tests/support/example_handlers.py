"""Handlers for the test kit's own tests: one correct, and three with the bugs the check must catch.

Each keeps its store in memory, in a dict shared by the handler instances of one check attack
(``stores[run.store]``), so a new instance after a crash or a restart sees what the previous one
wrote, as it would with a database. The observable state is the effects, without the position.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pgsubscriber import Event
from pgsubscriber.testing import HandlerRun

#: A few courses events: created, renamed, deleted.
COURSE_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("courses", {"type": "course.created", "course_id": "c1", "title": "Algebra"}),
    ("courses", {"type": "course.created", "course_id": "c2", "title": "Biology"}),
    ("courses", {"type": "course.renamed", "course_id": "c1", "title": "Algebra II"}),
    ("courses", {"type": "course.created", "course_id": "c3", "title": "Chemistry"}),
    ("courses", {"type": "course.deleted", "course_id": "c2"}),
    ("courses", {"type": "course.renamed", "course_id": "c3", "title": "Organic Chemistry"}),
    ("courses", {"type": "course.created", "course_id": "c4", "title": "Databases"}),
    ("courses", {"type": "course.renamed", "course_id": "c4", "title": "Distributed Databases"}),
    ("courses", {"type": "course.created", "course_id": "c5", "title": "Economics"}),
]


@dataclass
class Store:
    """What a database would hold: effects and a position, each written on its own."""

    titles: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    position: int = 0


def apply_course(titles: dict[str, str], event: Event) -> None:
    """The read model: the title of each live course (idempotent on its own: it sets, never adds)."""
    course = event.payload["course_id"]
    if event.payload["type"] == "course.deleted":
        titles.pop(course, None)
    else:
        titles[course] = event.payload["title"]


class _Base:
    def __init__(self, stores: dict[str, Store], run: HandlerRun) -> None:
        self.store = stores.setdefault(run.store, Store())
        self.run = run

    def get_latest_received_id(self) -> int:
        return self.store.position


def observe(handler: _Base) -> dict[str, Any]:
    return {"titles": dict(handler.store.titles), "counts": dict(handler.store.counts)}


class CorrectHandler(_Base):
    """Effects and position in one write (one transaction): whatever the crash, both or neither."""

    def on_notification(self, events: list[Event]) -> None:
        titles, position = dict(self.store.titles), self.store.position
        for event in events:
            if event.id > position:
                apply_course(titles, event)
        self.run.crash_point("before commit")
        self.store.titles, self.store.position = titles, max(position, events[-1].id)
        self.run.crash_point("after commit")


class AsyncCorrectHandler(CorrectHandler):
    """The same with ``async def`` methods."""

    async def on_notification(self, events: list[Event]) -> None:  # type: ignore[override]
        CorrectHandler.on_notification(self, events)

    async def get_latest_received_id(self) -> int:  # type: ignore[override]
        return CorrectHandler.get_latest_received_id(self)


class PositionFirstHandler(_Base):
    """BROKEN: stores the position, then the effects. A crash in between loses the batch."""

    def on_notification(self, events: list[Event]) -> None:
        self.store.position = events[-1].id
        self.run.crash_point("after position")
        for event in events:
            apply_course(self.store.titles, event)
        self.run.crash_point("after effects")


class CountingHandler(_Base):
    """BROKEN: counts events per course; a redelivered batch is counted twice."""

    def on_notification(self, events: list[Event]) -> None:
        for event in events:
            self.store.counts[event.payload["course_id"]] += 1
        self.run.crash_point("after effects")
        self.store.position = events[-1].id
        self.run.crash_point("after position")


class BatchSkippingHandler(_Base):
    """BROKEN: takes a batch whose first event it already has for a batch seen before, skips it
    and moves its position to the batch's end, so the new events of an overlapping batch are lost."""

    def on_notification(self, events: list[Event]) -> None:
        if events[0].id <= self.store.position:
            self.store.position = max(self.store.position, events[-1].id)
            return
        for event in events:
            apply_course(self.store.titles, event)
        self.run.crash_point("after effects")
        self.store.position = events[-1].id
        self.run.crash_point("after position")


class SharedStoreHandler(CorrectHandler):
    """BROKEN as the check uses it: every instance writes to one store, whatever ``run.store``."""

    shared = Store()

    def __init__(self, stores: dict[str, Store], run: HandlerRun) -> None:
        self.store = self.shared
        self.run = run


class FirstOfBatchHandler(_Base):
    """BROKEN: folds a batch keeping each course's first event instead of its last, so the result
    depends on where the batches are cut."""

    def on_notification(self, events: list[Event]) -> None:
        titles, position = dict(self.store.titles), self.store.position
        firsts: dict[str, Event] = {}
        for event in events:
            if event.id > position:
                firsts.setdefault(event.payload["course_id"], event)
        for event in firsts.values():
            apply_course(titles, event)
        self.run.crash_point("before commit")
        self.store.titles, self.store.position = titles, max(position, events[-1].id)


class DuplicateRefusingHandler(_Base):
    """Inserts each event's effect as a new row and raises on a duplicate (an INSERT without ON
    CONFLICT): a batch that comes again fails for ever, and the subscriber retries it for ever."""

    def on_notification(self, events: list[Event]) -> None:
        titles = dict(self.store.titles)
        for event in events:
            key = f"{event.payload['course_id']}@{event.id}"
            if key in titles:
                raise KeyError(f"duplicate key {key}")
            titles[key] = event.payload.get("title", "")
        self.run.crash_point("before commit")
        self.store.titles, self.store.position = titles, events[-1].id
