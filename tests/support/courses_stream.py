"""A background producer of example course events; the replay helpers live in :mod:`chaos.verify`."""

from __future__ import annotations

import threading
import time

import psycopg

from chaos.verify import course_rows, received_ids, replay_courses, stored_courses
from pgsubscriber.publish import publish_many
from producer.courses import CoursesScenario


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


__all__ = ["StreamPublisher", "course_rows", "received_ids", "replay_courses", "stored_courses"]
