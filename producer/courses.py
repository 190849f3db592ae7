"""Example "courses" events: course created / renamed / deleted, plus enrollments on a second topic."""

from __future__ import annotations

import random
from typing import Any

from pgsubscriber.publish import NewEvent

COURSES_TOPIC = "courses"
ENROLLMENTS_TOPIC = "enrollments"

_SUBJECTS = [
    "Algebra",
    "Biology",
    "Chemistry",
    "Databases",
    "Economics",
    "French",
    "Geology",
    "History",
    "Rust",
    "Statistics",
]
_LEVELS = ["101", "201", "for Beginners", "Advanced", "in Practice"]


class CoursesScenario:
    """Makes a plausible stream: only existing courses are renamed, deleted or enrolled in.

    Keys are ``<producer_id>:<sequence>``, so re-publishing an event after a failure is harmless.
    """

    def __init__(self, producer_id: str, *, enrollment_share: float = 0.2, seed: int | None = None) -> None:
        self.producer_id = producer_id
        self.enrollment_share = enrollment_share
        self._random = random.Random(seed)
        self._sequence = 0
        self._courses: dict[str, str] = {}

    def _title(self) -> str:
        return f"{self._random.choice(_SUBJECTS)} {self._random.choice(_LEVELS)}"

    def next_event(self) -> NewEvent:
        self._sequence += 1
        key = f"{self.producer_id}:{self._sequence}"
        rnd = self._random.random()
        if self._courses and rnd < self.enrollment_share:
            course_id = self._random.choice(list(self._courses))
            payload: dict[str, Any] = {
                "type": "enrollment.created",
                "course_id": course_id,
                "student": f"student-{self._random.randrange(10_000)}",
            }
            return NewEvent(ENROLLMENTS_TOPIC, payload, key, course_id)
        action = self._random.random()
        if not self._courses or action < 0.45 or len(self._courses) < 3:
            course_id = f"{self.producer_id}-{self._sequence}"
            title = self._title()
            self._courses[course_id] = title
            payload = {"type": "course.created", "course_id": course_id, "title": title}
        elif action < 0.85:
            course_id = self._random.choice(list(self._courses))
            title = self._title()
            self._courses[course_id] = title
            payload = {"type": "course.renamed", "course_id": course_id, "title": title}
        else:
            course_id = self._random.choice(list(self._courses))
            del self._courses[course_id]
            payload = {"type": "course.deleted", "course_id": course_id}
        # The course is the partition key: a consumer group delivers each course's events in order.
        return NewEvent(COURSES_TOPIC, payload, key, course_id)
