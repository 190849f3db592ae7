"""A subscriber behind the purger never skips purged events silently; one ahead of it sees nothing."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import psycopg
import pytest

from pgsubscriber import Event, EventsPurgedError
from pgsubscriber.publish import NewEvent, publish_many
from purger import RetentionPolicy, purge_once
from tests.support.handlers import RecordingHandler
from tests.support.running import SubscriberThread, running_subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
RETENTION = RetentionPolicy(default=HOUR)


class BlockingHandler(RecordingHandler):
    """Holds its first batch until ``release`` is set: a consumer that falls behind."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.release = threading.Event()

    def on_notification(self, events: list[Event]) -> None:
        if not self.holding.is_set():
            self.holding.set()
            assert self.release.wait(30)
        super().on_notification(events)


def produce(db, topic: str, count: int) -> list[int]:
    with psycopg.connect(db.role_dsn("events_producer"), autocommit=True) as conn:
        return publish_many(conn, [NewEvent(topic, {"n": i}) for i in range(count)])


def test_a_subscriber_behind_the_purger_raises_naming_the_lost_range(db, purger_dsn, aged_events, server_now):
    old = aged_events("courses", [server_now - 2 * HOUR] * 10)
    young = aged_events("courses", [server_now] * 2)
    handler = BlockingHandler()
    thread = SubscriberThread(handler, db.settings(batch_size=4)).start()
    try:
        wait_until(handler.holding.is_set, message="the first batch")
        assert purge_once(purger_dsn, RETENTION).deleted == 10  # while the handler holds old[:4]
        handler.release.set()
        wait_until(lambda: not thread.alive, message="the subscriber to stop on the loss")
    finally:
        handler.release.set()
        thread.stop()

    error = thread.error
    assert isinstance(error, EventsPurgedError)
    # Delivered: old[:4] and, when the next batch had already been read before the purge, old[4:8].
    received = handler.ids
    assert received in (old[:4], old[:8])
    first_lost = old[len(received)]
    assert (error.first_missing_id, error.last_missing_id, error.topics) == (first_lost, old[-1], ["courses"])
    assert f"{first_lost}..{old[-1]}" in str(error) and "on_purged" in str(error)
    assert young[0] not in received  # nothing after the loss was delivered: no silent skip to young


def test_opting_in_logs_the_loss_loudly_and_continues_from_the_oldest_event_left(
    db, purger_dsn, aged_events, server_now, caplog
):
    old = aged_events("courses", [server_now - 2 * HOUR] * 10)
    young = aged_events("courses", [server_now] * 2)
    handler = RecordingHandler(start_after=old[2])  # it had received old[:3], then stopped
    purge_once(purger_dsn, RETENTION)

    with (
        caplog.at_level(logging.ERROR, logger="pgsubscriber"),
        running_subscriber(handler, db.settings(on_purged="continue")) as thread,
    ):
        wait_until(lambda: handler.ids == young, message="the events left")
        later = produce(db, "courses", 3)
        wait_until(lambda: handler.ids == young + later, message="new events")

    assert thread.subscriber.status.purged_ranges == [(old[3], old[-1])]
    lost = [r for r in caplog.records if r.levelno == logging.ERROR and "purged" in r.getMessage()]
    assert len(lost) == 1, caplog.text
    assert f"{old[3]}..{old[-1]}" in lost[0].getMessage()
    assert (lost[0].first_missing_id, lost[0].last_missing_id) == (old[3], old[-1])


def test_subscribers_that_lost_nothing_are_unaffected(db, purger_dsn, aged_events, server_now):
    old_courses = aged_events("courses", [server_now - 2 * HOUR] * 5)
    enrollments = aged_events("enrollments", [server_now] * 3)
    up_to_date = RecordingHandler(start_after=old_courses[-1])
    other_topic = RecordingHandler()
    purge_once(purger_dsn, RETENTION)

    with (
        running_subscriber(up_to_date, db.settings()),
        running_subscriber(other_topic, db.settings(topics=["enrollments"])),
    ):
        later = produce(db, "courses", 4)
        wait_until(lambda: up_to_date.ids == later and other_topic.ids == enrollments)
