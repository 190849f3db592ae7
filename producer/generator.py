"""The generator loop: publish example events at a steady rate, through database outages."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
from tenacity import Retrying, retry_if_exception_type, stop_never, wait_exponential, wait_random

from pgsubscriber.publish import NewEvent, publish_many
from producer.courses import CoursesScenario
from producer.settings import ProducerSettings

logger = logging.getLogger(__name__)


class Generator:
    """Publishes ``settings.count`` events (or forever) until :meth:`stop`.

    A batch is retried until its transaction commits. Its keys make a retry after an unknown
    outcome (the connection died during COMMIT) store nothing twice.
    """

    def __init__(self, settings: ProducerSettings) -> None:
        self.settings = settings
        self.scenario = CoursesScenario(settings.producer_id, seed=settings.seed)
        self.published = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            # Through a transaction-pooling PgBouncer each transaction may run on another server
            # connection, where a statement psycopg prepared ("_pg3_0") is unknown or another
            # client's: by default nothing is prepared (prepare_threshold=None).
            prepare: dict[str, Any] = {} if self.settings.prepared_statements else {"prepare_threshold": None}
            self._conn = psycopg.connect(self.settings.dsn, connect_timeout=5, **prepare)
        return self._conn

    def _publish(self, batch: list[NewEvent]) -> None:
        try:
            conn = self._connection()
            with conn.transaction():
                publish_many(conn, batch)
        except psycopg.OperationalError:
            if self._conn is not None:
                self._conn.close()
            raise

    def run(self) -> int:
        s = self.settings
        retrying = Retrying(
            retry=retry_if_exception_type(psycopg.OperationalError),
            wait=wait_exponential(multiplier=0.1, max=s.retry_max_delay) + wait_random(0, 0.1),
            stop=stop_never,
            sleep=self._stop.wait,
            before_sleep=lambda state: logger.warning(
                "publish failed (attempt %d), retrying: %s",
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        period = s.batch_size / s.rate
        next_at = time.monotonic()
        try:
            while not self._stop.is_set() and (s.count == 0 or self.published < s.count):
                size = s.batch_size if s.count == 0 else min(s.batch_size, s.count - self.published)
                batch = [self.scenario.next_event() for _ in range(size)]
                for attempt in retrying:
                    with attempt:
                        if self._stop.is_set() and attempt.retry_state.attempt_number > 1:
                            logger.warning("stopping with %d unpublished event(s)", len(batch))
                            return self.published
                        self._publish(batch)
                self.published += size
                if self.published % 1000 < size:
                    logger.info("published %d events", self.published)
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()
        finally:
            if self._conn is not None:
                self._conn.close()
        logger.info("done: published %d events", self.published)
        return self.published
